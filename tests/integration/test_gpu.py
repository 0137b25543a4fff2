"""On a CUDA GPU with NVML (marked ``gpu``: skipped elsewhere, e.g. in CI): the energy counter
and the layer-aware profiler measure real work.  Short windows keep the file under a minute;
the sweeps' full protocol is exercised by experiments/device/selftest_*.py."""

import math

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.gpu

# short windows: enough for the counter to tick many times, not a measurement to keep
PK = dict(min_window_s=0.2, warmup_s=0.1, warmup_calls=2, jitter_s=(0.0, 0.0), max_rounds=2)


def test_nvml_counter_sees_a_matmul_above_idle():
    from profiling.measure.idle import measure_idle_power
    from profiling.measure.protocol import measure
    from profiling.meters import get_meter

    a = torch.randn(4096, 4096, device="cuda")
    with get_meter("nvml", device_index=torch.cuda.current_device()) as meter:
        idle_w = measure_idle_power(meter, duration_s=1.0, settle_s=0.5)
        m = measure(lambda: a @ a, meter, idle_power_w=idle_w, **PK)
    assert m.measured and m.meter.startswith("nvml")
    assert m.time_s > 0 and m.energy_j > 0
    assert math.isclose(m.power_w, m.energy_j / m.time_s, rel_tol=1e-6)
    assert 0 < idle_w < m.power_w        # a 4096² fp32 matmul loop draws more than idle
    assert m.energy_dynamic_j > 0


def test_profile_model_measures_layers_and_the_whole_model_on_cuda():
    from profiling.measure.profiler import profile_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)).cuda()
    res = profile_model(model, torch.randn(256, 1024, device="cuda"), meter="nvml",
                        execs=("eager",), protocol_kwargs=PK, progress=False,
                        idle_kwargs=dict(duration_s=1.0, settle_s=0.5))
    assert not res.unsupported
    types = {r["layer_type"] for r in res.layer_rows}
    assert {"Linear", "ReLU"} <= types
    assert all(r["energy_j"] > 0 and r["time_s"] > 0 for r in res.layer_rows)
    row = res.model_row
    assert row is not None and row["energy_j"] > 0 and row["time_s"] > 0
    assert res.additivity_ratio is not None and 0.3 < res.additivity_ratio < 3
    assert model.training                 # the profiler restores the training flag
