"""The measurement protocol, driven deterministically by ReplayMeter + FakeClock."""

from __future__ import annotations

import random
import socket
import statistics

import pytest

from profiling.errors import ExanteError
from profiling.measure.protocol import (
    PROTOCOL_VERSION,
    ROW_FIELDS,
    Measurement,
    environment_info,
    measure,
    measure_idle_power,
    select_consistent,
    spread_of,
)
from profiling.meters import CounterChangeMeter, EstimatedMeter, FakeClock, ReplayMeter


def workload(clock: FakeClock, dt: float):
    calls = []

    def fn():
        calls.append(clock())
        clock.advance(dt)

    fn.calls = calls
    return fn


def run(power=300.0, dt=0.01, period=0.1, seed=0, **kw):
    clock = FakeClock()
    meter = ReplayMeter(power, clock, counter_period_s=period, info=kw.pop("info", None))
    fn = workload(clock, dt)
    kw.setdefault("idle_power_w", 75.0)
    kw.setdefault("rng", random.Random(seed))
    m = measure(fn, meter, clock=clock, sleep=clock.sleep, **kw)
    return m, meter, clock, fn


# --------------------------------------------------------------------------- arithmetic


def test_constant_power_exact():
    m, meter, _, _ = run(period=0.0)
    assert isinstance(m, Measurement)
    assert m.time_s == pytest.approx(0.01)
    assert m.energy_j == pytest.approx(300.0 * 0.01)
    assert m.power_w == pytest.approx(300.0)
    assert m.spread == pytest.approx(0.0, abs=1e-9)
    assert m.remeasured == 0 and m.n_windows == 2 and len(m.windows) == 2
    assert m.meter == "replay" and m.measured is True and m.protocol_version == PROTOCOL_VERSION


def test_idle_subtraction():
    m, *_ = run(period=0.0, idle_power_w=75.0)
    assert m.idle_power_w == 75.0
    assert m.energy_dynamic_j == pytest.approx((300.0 - 75.0) * 0.01)
    m0, *_ = run(period=0.0, idle_power_w=0.0)
    assert m0.energy_dynamic_j == pytest.approx(m0.energy_j)


def test_constant_power_quantised_counter():
    m, *_ = run(period=0.1, dt=0.0137)
    assert m.energy_j == pytest.approx(300.0 * 0.0137, rel=0.07)
    assert m.time_s == pytest.approx(0.0137)


# --------------------------------------------------------------------------- window rules


@pytest.mark.parametrize("dt", [0.001, 0.0137, 0.2, 0.7])
def test_window_length_rule(dt):
    m, *_ = run(dt=dt, period=0.0)
    k = m.calls_per_window
    assert k * dt >= 1.5 - 1e-9
    assert (k - 1) * dt < 1.5  # the smallest k that fills the window
    for w in m.windows:
        assert w.calls == k and w.time_s == pytest.approx(k * dt)
        assert w.time_per_call_s == pytest.approx(dt)
    assert len(m.windows) >= 2


def test_min_window_and_n_windows_parameters():
    m, *_ = run(dt=0.01, period=0.0, min_window_s=1.0, n_windows=4)
    assert m.calls_per_window == 100 and len(m.windows) == 4 and m.n_windows == 4


def test_slow_fn_gives_one_call_per_window():
    m, *_ = run(dt=2.0, period=0.1)
    assert m.calls_per_window == 1
    assert m.time_s == pytest.approx(2.0)
    assert m.energy_j == pytest.approx(600.0, rel=0.1)


def test_warmup_and_calibration_precede_windows():
    m, meter, clock, fn = run(dt=0.01, period=0.0, warmup_s=0.2, warmup_calls=3)
    first_window_start = min(fn.calls[-(m.calls_per_window * len(m.windows)):])
    assert first_window_start >= 0.2 + 0.05  # warm-up >= 0.2 s, then calibration >= 50 ms
    n_pre = len(fn.calls) - m.calls_per_window * len(m.windows)
    assert n_pre >= 3 + 5
    assert meter.reads == 2 * len(m.windows)  # the counter is read only at window edges
    assert meter.syncs >= 2 * len(m.windows)


def test_phase_jitter_sleeps_in_range():
    m, _, clock, _ = run(period=0.0, n_windows=6, seed=3)
    assert len(clock.sleeps) == 6
    assert all(0.0 <= s <= 0.1 for s in clock.sleeps)
    assert len(set(clock.sleeps)) == 6  # random, not a constant
    assert [w.jitter_s for w in m.windows] == clock.sleeps


def test_no_jitter_means_no_sleep():
    m, _, clock, _ = run(period=0.0, jitter_s=(0.0, 0.0))
    assert clock.sleeps == []


# --------------------------------------------------------------------------- spread / re-measure


def spike_power(t0, t1, base=300.0, extra=300.0):
    return lambda t: base + (extra if t0 <= t < t1 else 0.0)


def test_transient_spike_triggers_remeasure():
    # no warm-up: calibration ends at t=0.11 s, window 0 spans [0.11..0.21, 1.61..1.71],
    # so a spike on [0.3, 1.0) s lands inside window 0 only.
    m, meter, *_ = run(power=spike_power(0.3, 1.0), dt=0.01, period=0.0, warmup_s=0.0, warmup_calls=0)
    e = [w.energy_per_call_j for w in m.windows]
    assert e[0] > 1.3 * 3.0  # the spiked window
    assert m.remeasured == 1 and len(m.windows) == 4
    assert not m.windows[0].used
    assert all(w.used for w in m.windows[1:])
    assert m.n_windows == 3
    assert m.spread <= 0.05 and m.consistent
    assert m.energy_j == pytest.approx(3.0, rel=1e-6)
    assert m.spread_all > 0.05
    assert [w.round for w in m.windows] == [0, 0, 1, 1]


def test_persistent_disagreement_stops_after_max_rounds():
    m, *_ = run(power=lambda t: 300.0 + 40.0 * t, dt=0.01, period=0.0)
    assert m.remeasured == 2 and len(m.windows) == 6
    assert m.n_windows == 2 and not m.consistent and m.spread > 0.05
    used = [w.energy_per_call_j for w in m.windows if w.used]
    assert m.spread == pytest.approx(spread_of(used))


def test_max_rounds_one_never_remeasures():
    m, *_ = run(power=spike_power(0.3, 1.0), period=0.0, warmup_s=0.0, warmup_calls=0, max_rounds=1)
    assert m.remeasured == 0 and len(m.windows) == 2 and m.n_windows == 2 and m.spread > 0.05


def test_max_total_s_cuts_remeasure():
    with pytest.warns(UserWarning, match="no time to re-measure"):
        m, *_ = run(power=spike_power(0.3, 1.0), period=0.0, warmup_s=0.0, warmup_calls=0, max_total_s=4.0)
    assert m.remeasured == 0 and len(m.windows) == 2


def test_max_total_s_too_small_for_first_round():
    with pytest.raises(ExanteError, match="max_total_s"):
        run(dt=2.0, max_total_s=5.0)


def test_select_consistent_rule():
    assert select_consistent([1.0, 1.01], 2, 0.05) == [0, 1]
    assert select_consistent([1.5, 1.0, 1.01, 1.02], 2, 0.05) == [1, 2, 3]  # largest consistent run
    assert select_consistent([1.0, 1.2, 1.5, 1.52], 2, 0.05) == [2, 3]
    assert select_consistent([1.0, 1.2, 1.5, 1.9], 2, 0.05) == [0, 1]  # none consistent: tightest pair
    assert select_consistent([2.0], 2, 0.05) == [0]
    assert spread_of([1.0, 1.1, 1.05]) == pytest.approx(0.1 / 1.05)
    assert spread_of([5.0]) == 0.0
    assert spread_of([0.0, 0.0]) == 0.0


# --------------------------------------------------------------------------- quantisation


def test_counter_quantisation_bias_is_small():
    """100 ms counter steps: each 1.5 s window is within ~7 %; with phase jitter, unbiased on average."""
    errs = []
    for seed in range(25):
        m, *_ = run(dt=0.0137, period=0.1, seed=seed, max_rounds=1)
        for w in m.windows:
            errs.append(w.energy_per_call_j / (300.0 * 0.0137) - 1.0)
        assert abs(m.energy_j / (300.0 * 0.0137) - 1.0) <= 0.07
    assert max(abs(e) for e in errs) <= 2 * 0.1 / 1.5 + 1e-9
    assert abs(statistics.mean(errs)) < 0.01


# --------------------------------------------------------------------------- guard rails


def test_counter_that_does_not_advance():
    with pytest.raises(ExanteError, match=r"did not advance.*counter period ~0.1 s"):
        run(power=0.0)


def test_fn_that_takes_no_time():
    clock = FakeClock()
    meter = ReplayMeter(300.0, clock)
    with pytest.raises(ExanteError, match="no measurable time"):
        measure(lambda: None, meter, idle_power_w=75.0, clock=clock, sleep=clock.sleep, rng=0, warmup_s=0.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"idle_power_w": -1.0},
        {"idle_power_w": float("nan")},
        {"min_window_s": 0.0},
        {"n_windows": 0},
        {"max_rounds": 0},
        {"jitter_s": (0.1, 0.0)},
        {"jitter_s": "x"},
        {"rng": "seed"},
    ],
)
def test_bad_parameters(kw):
    with pytest.raises(ExanteError):
        run(**kw)


def test_short_window_warns():
    with pytest.warns(UserWarning, match="counter period"):
        run(period=0.1, min_window_s=0.5)


def test_estimated_meter_is_labelled():
    clock = FakeClock()
    meter = EstimatedMeter(250.0, clock=clock)
    m = measure(workload(clock, 0.01), meter, idle_power_w=0.0, clock=clock, sleep=clock.sleep, rng=1)
    assert m.measured is False and m.meter == "estimated"
    assert m.power_w == pytest.approx(250.0)
    assert m.as_row()["measured"] is False


# --------------------------------------------------------------------------- row / info


def test_as_row_fields():
    m, *_ = run(period=0.0, info={"sm_clock_mhz": 1755, "temperature_c": 52})
    row = m.as_row()
    assert tuple(row) == ROW_FIELDS
    assert set(row) == {
        "time_s", "energy_j", "energy_dynamic_j", "power_w", "idle_power_w", "spread", "n_windows",
        "calls_per_window", "sm_clock_mhz", "temperature_c", "meter", "protocol_version", "remeasured", "measured",
    }
    assert row["n_windows"] == 2 and row["sm_clock_mhz"] == 1755.0 and row["temperature_c"] == 52.0
    assert all(not isinstance(v, (list, dict)) for v in row.values())


def test_measure_idle_power():
    clock = FakeClock()
    meter = ReplayMeter(75.0, clock, counter_period_s=0.1)
    p = measure_idle_power(meter, duration_s=3.0, settle_s=1.0, clock=clock, sleep=clock.sleep)
    assert p == pytest.approx(75.0, rel=0.07)
    assert clock.sleeps == [1.0, 3.0]
    # settling excludes the "active idle" right after work
    clock2 = FakeClock()
    meter2 = ReplayMeter(trace=[(0.0, 125.0), (1.0, 75.0)], clock=clock2, counter_period_s=0.0)
    assert measure_idle_power(meter2, duration_s=3.0, settle_s=1.0, clock=clock2, sleep=clock2.sleep) == pytest.approx(75.0)


def test_measure_idle_power_errors():
    clock = FakeClock()
    with pytest.raises(ExanteError, match="did not advance"):
        measure_idle_power(ReplayMeter(0.0, clock), clock=clock, sleep=clock.sleep)
    with pytest.raises(ExanteError):
        measure_idle_power(ReplayMeter(75.0, clock), duration_s=0, clock=clock, sleep=clock.sleep)


def test_environment_info():
    clock = FakeClock()
    meter = ReplayMeter(100.0, clock, info={"gpu_name": "FakeGPU", "driver": "1.2", "power_limit_w": 700.0})
    env = environment_info(meter)
    for key in ("gpu_name", "driver", "power_limit_w", "torch_version", "cuda_version", "cudnn_version",
                "python_version", "date", "protocol_version", "allow_tf32_matmul", "allow_tf32_cudnn", "meter"):
        assert key in env
    assert env["gpu_name"] == "FakeGPU" and env["power_limit_w"] == 700.0
    assert env["protocol_version"] == PROTOCOL_VERSION
    assert env["date"].endswith("+00:00")
    assert isinstance(env["allow_tf32_matmul"], bool) and isinstance(env["allow_tf32_cudnn"], bool)
    import torch

    assert env["torch_version"] == str(torch.__version__) and env["cuda_version"] == torch.version.cuda
    host = socket.gethostname()
    assert not any(isinstance(v, str) and host and host in v for v in env.values())
    est = environment_info(EstimatedMeter(300.0, clock=clock))
    assert est["estimated"] is True and est["measured"] is False and est["rated_power_w"] == 300.0


# --------------------------------------------------------------------------- counter changes, sync_every


def _changes_run(dt=0.0137, period=0.1, seed=0, **kw):
    """The protocol with a counter-change meter; fn plays the 2 ms polling thread by hand."""
    clock = FakeClock()
    inner = ReplayMeter(300.0, clock, counter_period_s=period)
    meter = CounterChangeMeter(inner, clock=clock, autostart=False)
    syncs = []

    def fn():
        end = clock() + dt
        while clock() < end - 1e-12:
            clock.advance(min(0.002, end - clock()))
            meter._poll()

    def sleep(d):  # the thread keeps polling while the protocol sleeps (phase jitter)
        end = clock() + d
        while clock() < end - 1e-12:
            clock.advance(min(0.002, end - clock()))
            meter._poll()

    inner.sync = lambda: syncs.append(clock())
    kw.setdefault("idle_power_w", 75.0)
    m = measure(fn, meter, clock=clock, sleep=sleep, rng=random.Random(seed), **kw)
    return m, syncs


def test_counter_change_energy_has_no_quantisation_error():
    for seed in range(5):
        m, _ = _changes_run(seed=seed, max_rounds=1)
        for w in m.windows:
            assert w.energy_per_call_j == pytest.approx(300.0 * 0.0137, rel=2e-3)
            assert w.n_changes >= 13 and 1.2 < w.span_s < w.time_s
    assert m.protocol_version == "2"


def test_sync_every_windows_are_time_bounded_chunks():
    m, syncs = _changes_run(dt=0.06, min_window_s=1.2, sync_every=8, warmup_s=0.3, jitter_s=(0.0, 0.0), max_rounds=1)
    assert len(m.windows) == 2
    for w in m.windows:
        assert w.calls % 8 == 0 and w.time_s >= 1.2 and w.calls == 24  # 3 chunks of 8 x 60 ms
    assert m.calls_per_window == 24 and m.time_s == pytest.approx(0.06)
    assert m.energy_j == pytest.approx(300.0 * 0.06, rel=2e-3)
    with pytest.raises(ExanteError, match="sync_every"):
        _changes_run(sync_every=0)
