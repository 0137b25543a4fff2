"""Shared fixtures: one predictor artifact fitted (quick) on the SYNTHETIC fixture per test run."""

import pytest
from synthetic_fixture import SYN, SYNTH_HW


@pytest.fixture(scope="session")
def art_dir(tmp_path_factory):
    """Artifact folder holding a model for hardware ``synthtest`` fitted on synthetic MLP rows."""
    from predictor.fit.hardware_fit import fit_hardware

    d = tmp_path_factory.mktemp("exante")
    SYN.make_synthetic_dataset(d / "ds", hardware=SYNTH_HW,
                               families=("mlp_relu", "mlp_gelu_ln", "mlp_tanh"),
                               batches=(1, 32, 512), optimizers=("sgd", "adam"))
    fit_hardware(SYNTH_HW, datasets_dir=d / "ds", out_dir=d / "art", quick=True)
    return d / "art"
