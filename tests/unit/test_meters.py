"""Meters: replay/fake clock, estimated, RAPL (fake sysfs), NVML (fake pynvml), get_meter errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types

import pytest

from profiling.errors import ExanteError, MeterUnavailable
from profiling.meters import (
    CounterChangeMeter,
    EnergyMeter,
    EstimatedMeter,
    FakeClock,
    NVMLMeter,
    NVMLPowerPollingMeter,
    RAPLMeter,
    ReplayMeter,
    get_meter,
)

# --------------------------------------------------------------------------- import hygiene


def test_import_does_not_load_pynvml_or_torch():
    code = (
        "import sys; import profiling.meters, profiling.measure.protocol; "
        "assert 'pynvml' not in sys.modules, 'pynvml imported eagerly'; "
        "assert 'torch' not in sys.modules, 'torch imported eagerly'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- FakeClock / ReplayMeter


def test_fake_clock():
    c = FakeClock(10.0)
    assert c() == c.now() == 10.0
    c.advance(0.5)
    c.sleep(0.25)
    assert c() == pytest.approx(10.75)
    assert c.sleeps == [0.25]
    with pytest.raises(ValueError):
        c.advance(-1)


def test_replay_constant_exact_and_quantised():
    c = FakeClock()
    exact = ReplayMeter(300.0, c, counter_period_s=0.0)
    q = ReplayMeter(300.0, c, counter_period_s=0.1)
    assert isinstance(q, EnergyMeter) and q.name == "replay" and q.measured
    c.advance(1.25)
    assert exact.energy_j() == pytest.approx(375.0)
    assert q.energy_j() == pytest.approx(360.0)  # floor(1.25 / 0.1) * 0.1 = 1.2 s
    assert q.power_w() == 300.0
    assert q.reads == 1


def test_replay_trace_piecewise_constant():
    c = FakeClock()
    m = ReplayMeter(trace=[(0.0, 100.0), (1.0, 300.0), (2.0, 50.0)], clock=c, counter_period_s=0.0)
    c.advance(0.5)
    assert m.energy_j() == pytest.approx(50.0)
    assert m.power_w() == 100.0
    c.advance(1.0)  # t = 1.5
    assert m.energy_j() == pytest.approx(100.0 + 150.0)
    c.advance(1.5)  # t = 3.0
    assert m.energy_j() == pytest.approx(100.0 + 300.0 + 50.0)
    assert m.power_w() == 50.0


def test_replay_trace_origin_is_construction_time():
    c = FakeClock(1.0)
    m = ReplayMeter(trace=[(0.0, 100.0), (2.0, 200.0)], clock=c, counter_period_s=0.0)
    c.advance(2.0)  # t = 3: 1 s at 100 W + 1 s at 200 W
    assert m.energy_j() == pytest.approx(300.0)


def test_replay_callable_integration():
    c = FakeClock()
    m = ReplayMeter(lambda t: 100.0 + 100.0 * t, c, counter_period_s=0.0)
    c.advance(2.0)
    assert m.energy_j() == pytest.approx(200.0 + 200.0, rel=1e-9)
    c.advance(1.0)
    assert m.energy_j() == pytest.approx(300.0 + 450.0, rel=1e-9)
    assert m.integral(1.0) == pytest.approx(150.0, rel=1e-9)  # earlier than the cache


def test_replay_read_cost_and_info_override():
    c = FakeClock()
    m = ReplayMeter(200.0, c, counter_period_s=0.0, read_cost_s=0.004, info={"sm_clock_mhz": 1980.0, "temperature_c": 40.0})
    m.energy_j()
    assert c() == pytest.approx(0.004)
    info = m.info()
    assert info["sm_clock_mhz"] == 1980.0 and info["temperature_c"] == 40.0 and info["meter"] == "replay"
    m.sync()
    assert m.syncs == 1


def test_replay_needs_exactly_one_power_source():
    with pytest.raises(ExanteError):
        ReplayMeter()
    with pytest.raises(ExanteError):
        ReplayMeter(100.0, trace=[(0, 1)])


# --------------------------------------------------------------------------- EstimatedMeter


def test_estimated_meter_arithmetic_and_label():
    c = FakeClock(5.0)
    with EstimatedMeter(250.0, clock=c, source="datasheet TDP") as m:
        assert m.name == "estimated" and m.measured is False
        c.advance(2.0)
        assert m.energy_j() == pytest.approx(500.0)
        assert m.power_w() == 250.0
        info = m.info()
        assert info["estimated"] is True and info["measured"] is False
        assert info["rated_power_w"] == 250.0 and info["rated_power_source"] == "datasheet TDP"


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "abc", None])
def test_estimated_meter_rejects_bad_power(bad):
    with pytest.raises(ExanteError):
        EstimatedMeter(bad)


# --------------------------------------------------------------------------- RAPL


def _write_domain(root, name, label, energy, max_range=1_000_000):
    d = root / name
    d.mkdir()
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def test_rapl_sums_packages_and_handles_wrap(tmp_path):
    d0 = _write_domain(tmp_path, "intel-rapl:0", "package-0", 100_000)
    d1 = _write_domain(tmp_path, "intel-rapl:1", "package-1", 900_000)
    sub = _write_domain(tmp_path, "intel-rapl:0:0", "core", 5)  # sub-domain: ignored
    m = RAPLMeter(root=str(tmp_path))
    assert m.energy_j() == 0.0
    (d0 / "energy_uj").write_text("600000\n")  # +0.5 J
    (d1 / "energy_uj").write_text("200000\n")  # wrapped: +100000 + 200000 = +0.3 J
    (sub / "energy_uj").write_text("999999\n")
    assert m.energy_j() == pytest.approx(0.8)
    (d1 / "energy_uj").write_text("300000\n")  # +0.1 J
    assert m.energy_j() == pytest.approx(0.9)
    info = m.info()
    assert info["meter"] == "rapl" and info["domains"] == ["package-0", "package-1"]
    assert m.sync() is None


def test_rapl_unavailable(tmp_path, monkeypatch):
    with pytest.raises(MeterUnavailable, match="not found"):
        RAPLMeter(root=str(tmp_path / "nope"))
    with pytest.raises(MeterUnavailable, match="no package domains"):
        RAPLMeter(root=str(tmp_path))
    _write_domain(tmp_path, "intel-rapl:0", "package-0", 1)

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(RAPLMeter, "_read_int", staticmethod(denied))
    with pytest.raises(MeterUnavailable, match="permission denied.*root-only"):
        RAPLMeter(root=str(tmp_path))


# --------------------------------------------------------------------------- fake pynvml


class _State:
    def __init__(self):
        self.energy_mj = 123_456
        self.power_mw = 250_500
        self.limit_mw = 700_000
        self.energy_supported = True
        self.count = 2
        self.init_error = None
        self.shutdowns = 0
        self.uuids = ["GPU-aaaa-0000", "GPU-bbbb-1111"]


def make_fake_pynvml(state: _State) -> types.ModuleType:
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value=999):
            super().__init__(f"NVML error {value}")
            self.value = value

    class NVMLError_NotSupported(NVMLError):
        def __init__(self):
            super().__init__(3)

    class NVMLError_LibraryNotFound(NVMLError):
        def __init__(self):
            super().__init__(12)

    m.NVMLError = NVMLError
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.NVML_CLOCK_SM = 1
    m.NVML_TEMPERATURE_GPU = 0

    def nvmlInit():
        if state.init_error is not None:
            raise state.init_error

    def nvmlShutdown():
        state.shutdowns += 1

    def nvmlDeviceGetCount():
        return state.count

    def nvmlDeviceGetHandleByIndex(i):
        if not 0 <= i < state.count:
            raise NVMLError(2)
        return ("h", i)

    def nvmlDeviceGetUUID(h):
        return state.uuids[h[1]]

    def nvmlDeviceGetTotalEnergyConsumption(h):
        if not state.energy_supported:
            raise NVMLError_NotSupported()
        return state.energy_mj

    def nvmlDeviceGetPowerUsage(h):
        return state.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(h):
        return state.limit_mw

    def nvmlDeviceGetName(h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlSystemGetDriverVersion():
        return "580.159.04"

    def nvmlDeviceGetClockInfo(h, kind):
        assert kind == m.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetTemperature(h, kind):
        assert kind == m.NVML_TEMPERATURE_GPU
        return 41

    for f in list(locals().values()):
        if callable(f) and getattr(f, "__name__", "").startswith("nvml"):
            setattr(m, f.__name__, f)
    return m


@pytest.fixture
def fake_nvml(monkeypatch):
    state = _State()
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(state))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return state


def test_nvml_meter_unit_conversions(fake_nvml):
    m = NVMLMeter(0)
    assert m.name == "nvml" and m.measured and m.counter_period_s == pytest.approx(0.1)
    assert m.energy_j() == pytest.approx(123.456)  # mJ -> J
    fake_nvml.energy_mj += 1500
    assert m.energy_j() == pytest.approx(124.956)
    assert m.power_w() == pytest.approx(250.5)  # mW -> W
    info = m.info()
    assert info["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert info["driver"] == "580.159.04"
    assert info["power_limit_w"] == pytest.approx(700.0)  # mW -> W
    assert info["sm_clock_mhz"] == 1980.0 and info["temperature_c"] == 41.0
    assert info["device_index"] == 0 and info["meter"] == "nvml"
    assert "100 ms" in info["counter_note"]
    m.sync()  # no CUDA here: a no-op, not an error
    m.close()
    m.close()
    assert fake_nvml.shutdowns == 1


def test_nvml_meter_context_manager_and_get_meter(fake_nvml):
    with get_meter("nvml", device_index=1) as m:
        assert isinstance(m, NVMLMeter) and m.nvml_index == 1
    assert fake_nvml.shutdowns == 1
    m = get_meter("auto")
    assert isinstance(m, NVMLMeter)
    m.close()


def test_nvml_respects_cuda_visible_devices(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with NVMLMeter(0) as m:
        assert m.nvml_index == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    with NVMLMeter(0) as m:
        assert m.nvml_index == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterUnavailable, match="no NVIDIA GPU visible"):
        NVMLMeter(0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(MeterUnavailable, match="out of range"):
        NVMLMeter(1)


def test_nvml_missing_energy_counter(fake_nvml):
    fake_nvml.energy_supported = False
    with pytest.raises(MeterUnavailable) as ei:
        get_meter("nvml")
    msg = str(ei.value)
    assert "lacks the total-energy counter" in msg and "--meter nvml-power" in msg and "\n" not in msg
    assert fake_nvml.shutdowns == 1  # handle released on failure


def test_get_meter_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(MeterUnavailable) as ei:
        get_meter("nvml")
    assert str(ei.value) == "meter 'nvml' unavailable: pynvml not installed (pip install 'exante[gpu]')"
    with pytest.raises(MeterUnavailable, match="pynvml not installed"):
        get_meter("nvml-power")
    with pytest.raises(MeterUnavailable) as ei:
        get_meter("auto")
    msg = str(ei.value)
    assert "tried 'nvml'" in msg and "pynvml not installed" in msg and "estimated" in msg and "\n" not in msg


def test_get_meter_no_gpu(fake_nvml):
    fake_nvml.init_error = sys.modules["pynvml"].NVMLError_LibraryNotFound()
    with pytest.raises(MeterUnavailable, match="no NVIDIA GPU visible"):
        get_meter("nvml")
    with pytest.raises(MeterUnavailable, match="no NVIDIA GPU visible"):
        get_meter("auto")  # never falls back to the estimate
    fake_nvml.init_error = None
    fake_nvml.count = 0
    with pytest.raises(MeterUnavailable, match="no NVIDIA GPU visible"):
        get_meter("nvml")


def test_get_meter_names():
    with pytest.raises(ExanteError, match="unknown meter 'bogus'; accepted: auto, nvml, nvml-changes, nvml-power, rapl, estimated"):
        get_meter("bogus")
    with pytest.raises(ExanteError, match="rated"):
        get_meter("estimated")
    m = get_meter("estimated", rated_power_w=300)
    assert isinstance(m, EstimatedMeter) and not m.measured and m.rated_power_w == 300.0


def test_errors_are_exante_errors():
    assert issubclass(MeterUnavailable, ExanteError)


# --------------------------------------------------------------------------- power polling


def test_power_polling_trapezoid(fake_nvml):
    c = FakeClock()
    fake_nvml.power_mw = 100_000
    m = NVMLPowerPollingMeter(0, clock=c, autostart=False)
    assert m.name == "nvml-power" and m.measured
    c.advance(1.0)
    fake_nvml.power_mw = 300_000
    assert m.energy_j() == pytest.approx(200.0)  # (100 + 300) / 2 * 1 s
    c.advance(0.5)
    assert m.energy_j() == pytest.approx(350.0)
    assert m.power_w() == pytest.approx(300.0)
    assert m.info()["meter"] == "nvml-power"
    m.close()


def test_power_polling_thread(fake_nvml):
    fake_nvml.power_mw = 200_000
    t0 = time.monotonic()
    with NVMLPowerPollingMeter(0, poll_interval_s=0.005) as m:
        time.sleep(0.06)
        e = m.energy_j()
        dt = time.monotonic() - t0
        assert m._integ.samples >= 4  # the thread polled
    assert 0 < e <= 200.0 * dt + 1e-9
    assert e == pytest.approx(200.0 * dt, rel=0.3)
    assert m._thread is None


# --------------------------------------------------------------------------- counter changes


def _polled(meter: CounterChangeMeter, clock: FakeClock, until: float, step: float = 0.002) -> None:
    """Play the polling thread by hand: advance the fake clock and poll until ``until``."""
    while clock() < until - 1e-12:
        clock.advance(step)
        meter._poll()


def test_counter_changes_remove_edge_quantisation():
    c = FakeClock()
    inner = ReplayMeter(200.0, c, counter_period_s=0.1)
    m = CounterChangeMeter(inner, clock=c, autostart=False)
    assert m.name == "replay-changes" and m.measured and m.clock is c
    _polled(m, c, 1.2)
    # window [0.05, 1.0]: edge reads see floor steps (0.0 -> 1.0 s: 200 J, 5 % high), changes give 190 J
    assert inner.integral(1.0) - inner.integral(0.05) == pytest.approx(190.0)
    assert m.interval_energy_j(0.05, 1.0) == pytest.approx(190.0, rel=1e-6)
    n, span = m.last_interval["n_changes"], m.last_interval["span_s"]
    assert n in (9, 10) and span == pytest.approx(0.1 * (n - 1), abs=0.003)


def test_counter_changes_average_power_between_changes():
    c = FakeClock()
    inner = ReplayMeter(trace=[(0.0, 100.0), (0.5, 300.0)], clock=c, counter_period_s=0.1)
    m = CounterChangeMeter(inner, clock=c, autostart=False)
    _polled(m, c, 1.1)
    # changes at 0.1 .. 1.0: mean power over [0.1, 1.0] = (0.4 * 100 + 0.5 * 300) / 0.9
    p = (0.4 * 100 + 0.5 * 300) / 0.9
    assert m.interval_energy_j(0.0, 1.05) == pytest.approx(p * 1.05, rel=1e-3)


def test_counter_changes_too_few_in_window():
    c = FakeClock()
    m = CounterChangeMeter(ReplayMeter(200.0, c, counter_period_s=0.1), clock=c, autostart=False)
    _polled(m, c, 0.5)
    with pytest.raises(ExanteError, match="changed 1 time"):
        m.interval_energy_j(0.21, 0.33)
    with pytest.raises(ExanteError, match="empty window"):
        m.interval_energy_j(0.3, 0.3)


def test_counter_changes_thread_and_info():
    inner = ReplayMeter(150.0, time.perf_counter, counter_period_s=0.01, info={"gpu_name": "fake"})
    with CounterChangeMeter(inner, poll_s=0.001) as m:
        t0 = time.perf_counter()
        time.sleep(0.5)
        t1 = time.perf_counter()
        e = m.interval_energy_j(t0, t1)
        assert e == pytest.approx(150.0 * (t1 - t0), rel=0.05)  # a loaded CI machine delays the thread
        assert m.n_reads > 20
        info = m.info()
        assert info["meter"] == "replay-changes" and info["gpu_name"] == "fake" and info["poll_s"] == 0.001
    assert m._thread is None


def test_get_meter_nvml_changes(fake_nvml):
    m = get_meter("nvml-changes")
    try:
        assert isinstance(m, CounterChangeMeter) and isinstance(m.inner, NVMLMeter)
        assert m.name == "nvml-changes" and m.counter_period_s == pytest.approx(0.1)
        assert m.info()["gpu_name"] == "NVIDIA H100 80GB HBM3"
    finally:
        m.close()
    assert fake_nvml.shutdowns == 1
