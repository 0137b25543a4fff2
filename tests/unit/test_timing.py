"""Flexible Start and Pause-and-Resume (predictor/timing.py) on synthetic hourly series."""

import random
from datetime import datetime, timedelta, timezone

import pytest

from predictor.carbon.timing import (
    IntensitySeries,
    flexible_start,
    load_intensity_series,
    pause_and_resume,
)
from profiling.errors import ExanteError


def dip_series():
    """48 h at 500 g/kWh with a 3-hour dip to 100 at hours 10-12 and 200 at hour 9."""
    v = [500.0] * 48
    v[9] = 200.0
    v[10] = v[11] = v[12] = 100.0
    return v


def test_flexible_start_finds_the_dip():
    r = flexible_start(dip_series(), duration_h=3, power_kw=2.0, max_delay_h=24)
    assert r["best_start"] == 10 and r["delay_h"] == 10 and r["end"] == 13
    assert r["baseline_kg"] == pytest.approx(2.0 * 1500 / 1000)
    assert r["emissions_kg"] == pytest.approx(2.0 * 300 / 1000)
    assert r["saving_kg"] == pytest.approx(2.4)
    assert r["saving_pct"] == pytest.approx(80.0)
    assert r["energy_kwh"] == pytest.approx(6.0)
    same = flexible_start(dip_series(), duration_h=3, energy_kwh=6.0, max_delay_h=24)
    assert same["emissions_kg"] == pytest.approx(r["emissions_kg"])


def test_flexible_start_fractional_hours_are_proportional():
    # 3.5 h: start 9.5 -> 0.5 x 200 + 3 x 100 = 400 beats start 10 -> 300 + 0.5 x 500 = 550
    r = flexible_start(dip_series(), duration_h=3.5, power_kw=1.0, max_delay_h=24)
    assert r["best_start"] == pytest.approx(9.5)
    assert r["emissions_kg"] == pytest.approx(0.400)
    # a fractional start: baseline from 0.25 h over 2 h = 2 x 500
    r2 = flexible_start(dip_series(), duration_h=2, power_kw=1.0, max_delay_h=0, start=0.25)
    assert r2["best_start"] == 0.25 and r2["saving_kg"] == 0.0
    assert r2["baseline_kg"] == pytest.approx(1.0)


def test_flexible_start_respects_the_delay_window():
    v = [500.0] * 40
    v[26] = v[27] = v[28] = 100.0
    r = flexible_start(v, duration_h=3, power_kw=1.0, max_delay_h=24)
    assert r["best_start"] == 24                       # start 26 would be better but is too late
    assert r["emissions_kg"] == pytest.approx((500 + 500 + 100) / 1000)


def test_flexible_start_matches_brute_force_on_5_minute_grid():
    rng = random.Random(7)
    v = [rng.uniform(50, 800) for _ in range(60)]
    s = IntensitySeries(None, tuple(v))
    d, n = 5.4, 20.0
    r = flexible_start(v, duration_h=d, power_kw=1.0, max_delay_h=n)
    grid = min(s.integral(k / 12, k / 12 + d) for k in range(int(n * 12) + 1)) / 1000
    assert r["emissions_kg"] <= grid + 1e-12
    fine = min(s.integral(k / 600, k / 600 + d) for k in range(int(n * 600) + 1)) / 1000
    assert r["emissions_kg"] == pytest.approx(fine, abs=1e-9)


def test_pause_and_resume_picks_the_cheapest_hours():
    v = [400.0] * 12
    v[2] = v[5] = v[8] = 50.0
    r = pause_and_resume(v, duration_h=3, power_kw=1.0, max_delay_h=6)
    assert r["emissions_kg"] == pytest.approx(0.150)
    assert r["baseline_kg"] == pytest.approx(0.850)
    assert r["saving_pct"] == pytest.approx(100 * 0.7 / 0.85)
    assert [(i["start"], i["end"]) for i in r["intervals"]] == [(2, 3), (5, 6), (8, 9)]
    assert r["pauses"] == 2 and r["end"] == 9
    fs = flexible_start(v, duration_h=3, power_kw=1.0, max_delay_h=6)
    assert fs["saving_kg"] == 0.0 and fs["best_start"] == 0    # every window holds one dip


def test_pause_and_resume_partial_hour():
    v = [400.0] * 12
    v[2] = v[5] = v[8] = 50.0
    r = pause_and_resume(v, duration_h=2.5, power_kw=1.0, max_delay_h=6)   # window [0, 8.5)
    assert r["emissions_kg"] == pytest.approx((50 + 50 + 0.5 * 50) / 1000)
    assert r["intervals"][-1]["start"] == 8 and r["intervals"][-1]["hours"] == pytest.approx(0.5)
    assert sum(i["hours"] for i in r["intervals"]) == pytest.approx(2.5)


def test_pause_and_resume_never_worse_than_flexible_start():
    rng = random.Random(1)
    for _ in range(20):
        v = [rng.uniform(0, 900) for _ in range(72)]
        d, n = rng.uniform(0.5, 20), rng.uniform(0, 24)
        fs = flexible_start(v, duration_h=d, power_kw=1.5, max_delay_h=n)
        pr = pause_and_resume(v, duration_h=d, power_kw=1.5, max_delay_h=n)
        assert pr["emissions_kg"] <= fs["emissions_kg"] + 1e-9
        assert fs["emissions_kg"] <= fs["baseline_kg"] + 1e-9
        assert sum(i["hours"] for i in pr["intervals"]) == pytest.approx(d)


def write_csv(path, rows, header="timestamp,g_co2eq_per_kwh"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_load_series_and_use_timestamps(tmp_path):
    t0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
    rows = [f"{(t0 + timedelta(hours=h)).isoformat()},{v}" for h, v in enumerate(dip_series())]
    s = load_intensity_series(write_csv(tmp_path / "s.csv", rows))
    assert s.hours == 48 and s.t0 == t0 and s.values[10] == 100.0
    r = flexible_start(s, duration_h=3, power_kw=2.0, max_delay_h=24, start=t0 + timedelta(hours=2))
    assert r["best_start"] == t0 + timedelta(hours=10) and r["delay_h"] == 8
    pr = pause_and_resume(s, duration_h=3, power_kw=2.0, max_delay_h=24)
    assert pr["intervals"][0]["start"] == t0 + timedelta(hours=10)
    z = load_intensity_series(write_csv(tmp_path / "z.csv",
                                        ["2024-03-01T00:00:00Z,10", "2024-03-01T01:00:00Z,20"]))
    assert z.values == (10.0, 20.0)


@pytest.mark.parametrize("rows, header, match", [
    (["2024-01-01T00:00,1", "2024-01-01T02:00,1"], None, "line 3: .*a gap"),
    (["2024-01-01T00:00,1", "2024-01-01T00:00,1"], None, "line 3: .*duplicate or out-of-order"),
    (["2024-01-01T00:00,1", "yesterday,1"], None, "line 3: bad timestamp"),
    (["2024-01-01T00:00,abc"], None, "line 2: bad g_co2eq_per_kwh"),
    (["2024-01-01T00:00,-4"], None, "line 2: bad g_co2eq_per_kwh"),
    (["2024-01-01T00:00,1", "2024-01-01T01:00+00:00,1"], None, "mixes time-zone"),
    (["2024-01-01T00:00,1"], "time,value", "expected columns timestamp, g_co2eq_per_kwh"),
    ([], None, "no rows"),
])
def test_load_series_errors(tmp_path, rows, header, match):
    p = write_csv(tmp_path / "bad.csv", rows, header or "timestamp,g_co2eq_per_kwh")
    with pytest.raises(ExanteError, match=match):
        load_intensity_series(p)


def test_argument_errors(tmp_path):
    v = dip_series()
    with pytest.raises(ExanteError, match="does not fit"):
        flexible_start(v, duration_h=30, power_kw=1, max_delay_h=24)
    with pytest.raises(ExanteError, match="exactly one of power_kw"):
        pause_and_resume(v, duration_h=3, max_delay_h=2)
    with pytest.raises(ExanteError, match="duration_h must be a positive"):
        flexible_start(v, duration_h=0, power_kw=1, max_delay_h=2)
    with pytest.raises(ExanteError, match="max_delay_h"):
        flexible_start(v, duration_h=1, power_kw=1, max_delay_h=-1)
    with pytest.raises(ExanteError, match="series values"):
        flexible_start([1.0, -2.0], duration_h=1, power_kw=1, max_delay_h=0)
    with pytest.raises(ExanteError, match="does not exist"):
        load_intensity_series(tmp_path / "missing.csv")
