"""predictor.artifacts and predictor.fit.hardware_fit: manifests, checksums, lookup, refusals."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
from synthetic_fixture import layer_rows

from predictor import artifacts as A
from predictor.bench.layer_regressor import LayerRegressor
from profiling.errors import ExanteError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(A.ARTIFACT_ENV, raising=False)


@pytest.fixture(scope="module")
def small_model():
    L = layer_rows(widths=(64, 512), batches=(1, 64))
    return LayerRegressor(base="rf", quick=True).fit(L, L["time_s"]), L


class _Evil:
    """Unpickling this creates a marker file: proves a tampered file is never unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_and_manifest(tmp_path, small_model):
    reg, L = small_model
    man = A.save_artifact(reg, "hwa", tmp_path, cv_scores={"time": {"mape": 5.0}},
                          training_data_digest="abc", extra={"note": "x"})
    assert (tmp_path / "hwa.joblib").is_file() and (tmp_path / "hwa.json").is_file()
    on_disk = json.loads((tmp_path / "hwa.json").read_text())
    assert on_disk == man
    assert man["sha256"] == A.file_sha256(tmp_path / "hwa.joblib")
    assert man["id"] == f"hwa-{man['sha256'][:12]}"
    for lib in ("exante", "scikit-learn", "numpy", "torch", "joblib"):
        assert lib in man["versions"]
    assert man["training_data_digest"] == "abc" and man["cv_scores"]["time"]["mape"] == 5.0
    assert man["created"] and man["note"] == "x" and man["format"] == A.MANIFEST_FORMAT
    art = A.load_artifact("hwa", tmp_path, use_cache=False)
    np.testing.assert_allclose(art.model.predict(L), reg.predict(L))
    assert art.id == man["id"]
    assert A.available_hardware(tmp_path) == ["hwa"] or "hwa" in A.available_hardware(tmp_path)


def test_checksum_mismatch_is_refused_before_unpickling(tmp_path, small_model):
    reg, _ = small_model
    A.save_artifact(reg, "hwb", tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "hwb.joblib").write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(ExanteError, match="checksum mismatch.*refusing"):
        A.load_artifact("hwb", tmp_path, use_cache=False)
    assert not marker.exists()
    # a flipped byte in a genuine file is refused too
    A.save_artifact(reg, "hwc", tmp_path)
    data = bytearray((tmp_path / "hwc.joblib").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "hwc.joblib").write_bytes(bytes(data))
    with pytest.raises(ExanteError, match="checksum mismatch"):
        A.load_artifact("hwc", tmp_path, use_cache=False)


def test_missing_hardware_lists_available(tmp_path, small_model):
    reg, _ = small_model
    A.save_artifact(reg, "hwd", tmp_path)
    with pytest.raises(ExanteError) as ei:
        A.load_artifact("nothere", tmp_path)
    msg = str(ei.value)
    assert "no fitted model for hardware 'nothere'" in msg
    assert "hwd" in msg and "exante fit --hardware nothere" in msg and "exante sweep" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExanteError, match="holds no fitted model.*available: none"):
        A.load_artifact("nothere", empty)       # a named empty folder: no silent fallback


def test_env_var_lookup_and_order(tmp_path, monkeypatch, small_model):
    reg, _ = small_model
    d1, d2 = tmp_path / "one", tmp_path / "two"
    A.save_artifact(reg, "hwe", d1, extra={"where": "one"})
    A.save_artifact(reg, "hwe", d2, extra={"where": "two"})
    monkeypatch.setenv(A.ARTIFACT_ENV, str(d2))
    assert "hwe" in A.available_hardware()
    assert A.load_artifact("hwe").manifest["where"] == "two"
    assert A.load_artifact("hwe", d1).manifest["where"] == "one"   # explicit dir first
    dirs = A.search_dirs(d1)
    assert dirs[0] == d1 and dirs[1] == d2 and dirs[-1] == A.package_artifact_dir()


def test_sklearn_version_mismatch_warns(tmp_path, small_model):
    reg, _ = small_model
    A.save_artifact(reg, "hwf", tmp_path)
    m = json.loads((tmp_path / "hwf.json").read_text())
    m["versions"]["scikit-learn"] = "0.0.1"
    (tmp_path / "hwf.json").write_text(json.dumps(m))
    with pytest.warns(A.ArtifactVersionWarning, match="scikit-learn 0.0.1"):
        art = A.load_artifact("hwf", tmp_path, use_cache=False)
    assert art.model is not None


def test_incomplete_or_bad_ids(tmp_path, small_model):
    reg, _ = small_model
    with pytest.raises(ExanteError, match="invalid hardware id"):
        A.save_artifact(reg, "../evil", tmp_path)
    with pytest.raises(ExanteError, match="invalid hardware id"):
        A.load_artifact("a/b", tmp_path)
    A.save_artifact(reg, "hwg", tmp_path)
    (tmp_path / "hwg.joblib").unlink()
    with pytest.raises(ExanteError, match="incomplete artifact"):
        A.load_artifact("hwg", tmp_path)
    m = {"hardware": "hwh", "sha256": "nope"}
    (tmp_path / "hwh.json").write_text(json.dumps(m))
    (tmp_path / "hwh.joblib").write_bytes(b"x")
    with pytest.raises(ExanteError, match="no valid sha256"):
        A.load_artifact("hwh", tmp_path)


def test_dataset_digest(tmp_path):
    a, b = tmp_path / "layers.csv", tmp_path / "models.csv"
    a.write_text("x,y\n1,2\n")
    b.write_text("m\n1\n")
    d1 = A.dataset_digest([a, b])
    assert d1 == A.dataset_digest([b, a]) and len(d1) == 64
    a.write_text("x,y\n1,3\n")
    assert A.dataset_digest([a, b]) != d1


def test_fit_hardware_says_what_it_needs(tmp_path):
    """`exante fit` fits whole-model rows; a missing folder, a folder without models.csv (per-layer
    rows alone: the removed regression engine's input) or rows without workloads are one clear
    error each, naming what to measure."""
    from predictor.fit.hardware_fit import fit_hardware
    from profiling.dataset import schema

    with pytest.raises(ExanteError, match="exante sweep") as ei:
        fit_hardware("h100", datasets_dir=tmp_path / "nothing", out_dir=tmp_path / "art")
    assert "h100" in str(ei.value) and "does not exist" in str(ei.value)
    folder = tmp_path / "ds" / "h100"
    folder.mkdir(parents=True)
    with pytest.raises(ExanteError, match="models.csv is missing in .*whole-model rows"):
        fit_hardware("h100", datasets_dir=tmp_path / "ds", out_dir=tmp_path / "art")
    (folder / schema.LAYER_FILE).write_text("x\n1\n")
    with pytest.raises(ExanteError, match=r"models.csv is missing \(only per-layer rows"):
        fit_hardware("h100", datasets_dir=tmp_path / "ds", out_dir=tmp_path / "art")
    row = schema.model_row(
        key="a|s1", model_ref="nosuchpkg_xyz:make", family="a", spec={"kind": "mlp"},
        input_shape=[8], batch=4, mode="inference", dtype="fp32", optimizer=None,
        measurement={"time_s": 1e-3, "energy_j": 0.1, "power_w": 100.0, "idle_power_w": 90.0,
                     "meter": "nvml"}, env={"session_id": "s1"}, hardware="h100",
        layer_counts={}, sweep_id="fx", task_key="a")
    schema.model_table(folder).append([row])
    with pytest.warns(UserWarning, match="cannot be rebuilt"), \
            pytest.raises(ExanteError, match="no model row has a workload"):
        fit_hardware("h100", datasets_dir=tmp_path / "ds", out_dir=tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_old_regression_artifact_is_refused_in_one_line(tmp_path):
    """An artifact of the removed per-layer regression engine: refused by its manifest's
    method before unpickling, and by its pickled class path when the manifest does not say."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Evil(str(marker)))
    man = {"format": A.MANIFEST_FORMAT, "hardware": "oldreg", "versions": {},
           "sha256": hashlib.sha256(data).hexdigest(),
           "method": "per-layer regression + model-level terms"}
    (tmp_path / "oldreg.joblib").write_bytes(data)
    (tmp_path / "oldreg.json").write_text(json.dumps(man))
    with pytest.raises(ExanteError, match="per-layer regression artifact: that engine was "
                                          "removed.*exante fit --hardware oldreg") as ei:
        A.load_artifact("oldreg", tmp_path, use_cache=False)
    assert "\n" not in str(ei.value) and not marker.exists()
    # no method in the manifest: the pickle names HardwareModel (new and pre-move paths)
    for module in ("predictor.fit.regression.hardware_model", "predictor.regression"):
        data = b"\x80\x04c" + module.encode() + b"\nHardwareModel\n)\x81."
        del man["method"]
        man["sha256"] = hashlib.sha256(data).hexdigest()
        (tmp_path / "oldreg.joblib").write_bytes(data)
        (tmp_path / "oldreg.json").write_text(json.dumps(man))
        with pytest.raises(ExanteError, match="oldreg.joblib is a per-layer regression artifact"):
            A.load_artifact("oldreg", tmp_path, use_cache=False)
        man["method"] = "x"


def test_no_shipped_artifact_is_synthetic():
    for f in A.package_artifact_dir().glob("*.json"):
        m = json.loads(f.read_text())
        assert m.get("measured", True) is True, f


def test_a_save_killed_mid_write_leaves_the_old_artifact_loading(tmp_path, small_model,
                                                                 monkeypatch):
    """A fit interrupted while writing its artifact (Ctrl-C during the write) leaves the old
    pair in place, loadable and unchanged, and no temporary file behind (issue 20)."""
    reg, L = small_model
    old = A.save_artifact(reg, "hwk", tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(A.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        A.save_artifact(reg, "hwk", tmp_path, extra={"note": "new"})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    art = A.load_artifact("hwk", tmp_path, use_cache=False)
    assert art.id == old["id"]
    np.testing.assert_allclose(art.model.predict(L), reg.predict(L))
