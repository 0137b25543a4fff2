"""Carbon-aware scheduling: *Flexible Start* and *Pause and Resume* (seed 002 §6).

Seed 002 (Dodge et al. 2022) evaluates two ways of shifting a job in time against a marginal
grid-intensity series (WattTime, 5-minute granularity):

- **Flexible Start**: start the job at the time within the next N hours that minimises its
  emissions, then run it to completion. The paper tries every start in 5-minute increments.
- **Pause and Resume**: run the job over the next N + duration hours, choosing the
  lowest-intensity intervals that add up to the job's duration (pausing/resuming is assumed
  instantaneous and free).

Here the series is **hourly** (one ``g_co2eq_per_kwh`` value per hour, taken as constant over
that hour, as in codecarbon / Electricity Maps hourly exports), and:

- Start times, durations and delays may be fractional hours; partial hours are charged
  proportionally (intensity × fraction of the hour).
- Flexible Start searches *all* start times in ``[start, start + max_delay_h]``, not a grid:
  with piecewise-constant intensity the emissions are piecewise linear in the start time, so the
  optimum lies at a start or an end aligned to an hour boundary (or at the window edges); all
  of those are checked. The result is therefore at least as good as the paper's 5-minute grid.
- Pause and Resume takes the cheapest hour slices within ``[start, start + duration_h +
  max_delay_h)`` (slices clipped to the window at its ends), cheapest first, the last one
  partially, until ``duration_h`` is reached; ties go to the earlier hour. As in the paper,
  Flexible Start is then a lower bound on its saving.
- Both are oracle results (the series is known in advance), the paper's "upper bound".
- The baseline is running the job now (at ``start``) without pausing.

Power is constant over the job: give ``power_kw`` or ``energy_kwh`` (= power × duration).
Apply PUE yourself (e.g. take the facility kWh from a :class:`predictor.carbon.lifecycle.LifecycleReport`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from profiling.errors import ExanteError

_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class IntensitySeries:
    """Hourly grid intensity: ``values[i]`` g/kWh holds over ``[t0 + i h, t0 + (i+1) h)``."""

    t0: datetime | None
    values: tuple[float, ...]

    @property
    def hours(self) -> int:
        """Number of hourly values."""
        return len(self.values)

    def time_at(self, offset_h: float):
        """Wall-clock time ``offset_h`` hours after the series start (or the offset itself
        without a start)."""
        return offset_h if self.t0 is None else self.t0 + timedelta(hours=offset_h)

    def offset_of(self, when) -> float:
        """Hours from the series start to ``when`` (a datetime, or hours)."""
        if when is None:
            return 0.0
        if isinstance(when, datetime):
            if self.t0 is None:
                raise ExanteError("start is a datetime but the series has no timestamps; "
                                  "pass start as hours from the series start")
            try:
                return (when - self.t0) / _HOUR
            except TypeError:
                raise ExanteError("start and the series timestamps must both carry a time zone "
                                  "or both not") from None
        try:
            v = float(when)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise ExanteError(f"start must be a datetime or hours from the series start, got {when!r}")
        return v

    def integral(self, a: float, b: float) -> float:
        """∫ intensity dt over [a, b] in g/kWh·h (offsets in hours)."""
        total = 0.0
        i = int(math.floor(a))
        while i < b:
            lo, hi = max(a, i), min(b, i + 1)
            if hi > lo:
                total += self.values[i] * (hi - lo)
            i += 1
        return total


def _as_series(series) -> IntensitySeries:
    if isinstance(series, IntensitySeries):
        return series
    try:
        values = tuple(float(v) for v in series)
    except (TypeError, ValueError):
        raise ExanteError("series must be an IntensitySeries (load_intensity_series) or a list "
                          "of hourly gCO2eq/kWh values") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ExanteError("series values must be finite gCO2eq/kWh >= 0 (one per hour)")
    return IntensitySeries(None, values)


def load_intensity_series(csv_path) -> IntensitySeries:
    """Read an hourly CSV with columns ``timestamp`` (ISO 8601) and ``g_co2eq_per_kwh``.

    Rows must be consecutive hours (no gaps, duplicates or reordering) and all timestamps
    either time-zone-aware or naive; each error names the offending line.
    """
    try:
        f = open(csv_path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ExanteError(f"intensity file {str(csv_path)!r} does not exist") from None
    with f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "timestamp" not in cols or "g_co2eq_per_kwh" not in cols:
            raise ExanteError(f"{csv_path}: expected columns timestamp, g_co2eq_per_kwh; "
                              f"got {', '.join(cols) or 'none'}")
        t0 = prev = None
        values = []
        for row in reader:
            line = reader.line_num
            ts, val = (row.get("timestamp") or "").strip(), (row.get("g_co2eq_per_kwh") or "").strip()
            try:
                t = datetime.fromisoformat(ts)
            except ValueError:
                raise ExanteError(f"{csv_path} line {line}: bad timestamp {ts!r}; expected "
                                  f"ISO 8601 like 2024-01-01T00:00:00+00:00") from None
            try:
                v = float(val)
            except ValueError:
                v = math.nan
            if not math.isfinite(v) or v < 0:
                raise ExanteError(f"{csv_path} line {line}: bad g_co2eq_per_kwh {val!r}; "
                                  f"expected a number >= 0")
            if prev is not None:
                if (t.tzinfo is None) != (prev.tzinfo is None):
                    raise ExanteError(f"{csv_path} line {line}: mixes time-zone-aware and naive "
                                      f"timestamps")
                step = t - prev
                if step != _HOUR:
                    what = "a gap" if step > _HOUR else "a duplicate or out-of-order row"
                    raise ExanteError(
                        f"{csv_path} line {line}: {ts} is {step} after the previous row ({what}); "
                        f"rows must be consecutive hours")
            else:
                t0 = t
            prev = t
            values.append(v)
    if not values:
        raise ExanteError(f"{csv_path}: no rows")
    return IntensitySeries(t0, tuple(values))


def _job_args(series, duration_h, power_kw, energy_kwh, max_delay_h, start):
    s = _as_series(series)
    try:
        d = float(duration_h)
    except (TypeError, ValueError):
        d = math.nan
    if not math.isfinite(d) or d <= 0:
        raise ExanteError(f"duration_h must be a positive number of hours, got {duration_h!r}")
    if (power_kw is None) == (energy_kwh is None):
        raise ExanteError("give exactly one of power_kw (constant draw) or energy_kwh (whole job)")
    p = power_kw if energy_kwh is None else float(energy_kwh) / d
    try:
        p = float(p)
    except (TypeError, ValueError):
        p = math.nan
    if not math.isfinite(p) or p < 0:
        raise ExanteError(f"power_kw / energy_kwh must be a number >= 0, got "
                          f"{power_kw if energy_kwh is None else energy_kwh!r}")
    try:
        n = float(max_delay_h)
    except (TypeError, ValueError):
        n = math.nan
    if not math.isfinite(n) or n < 0:
        raise ExanteError(f"max_delay_h must be a number of hours >= 0, got {max_delay_h!r}")
    a = s.offset_of(start)
    if a < 0 or a + d + n > s.hours + 1e-9:
        end = s.time_at(s.hours)
        raise ExanteError(
            f"the series covers {s.hours} h (to {end}); start + duration_h + max_delay_h = "
            f"{a + d + n:g} h from its start does not fit: extend the series or shorten the window")
    return s, d, p, n, a


def _common(s, d, p, n, a, method, baseline_g, best_g) -> dict:
    baseline = p * baseline_g / 1000.0
    best = p * best_g / 1000.0
    saving = baseline - best
    return {"method": method, "start": s.time_at(a), "duration_h": d, "max_delay_h": n,
            "power_kw": p, "energy_kwh": p * d,
            "baseline_kg": baseline, "emissions_kg": best, "saving_kg": saving,
            "saving_pct": 100.0 * saving / baseline if baseline > 0 else 0.0}


def flexible_start(series, duration_h: float, power_kw: float | None = None,
                   max_delay_h: float = 24.0, start=None, *,
                   energy_kwh: float | None = None) -> dict:
    """Best single start time in ``[start, start + max_delay_h]`` (seed 002 §6 Flexible Start).

    Returns ``{method, start, best_start, delay_h, end, duration_h, max_delay_h, power_kw,
    energy_kwh, baseline_kg, emissions_kg, saving_kg, saving_pct}``; times are datetimes when
    the series has timestamps, else hours from its start. Ties go to the earliest start.
    """
    s, d, p, n, a = _job_args(series, duration_h, power_kw, energy_kwh, max_delay_h, start)
    cands = {a, a + n}
    for k in range(math.ceil(a), math.floor(a + d + n) + 1):
        for c in (k, k - d):        # start on an hour boundary, or end on one
            if a <= c <= a + n:
                cands.add(float(c))
    best_c, best_g = None, math.inf
    for c in sorted(cands):
        g = s.integral(c, c + d)
        if g < best_g - 1e-12 * max(1.0, abs(g)):
            best_c, best_g = c, g
    out = _common(s, d, p, n, a, "flexible_start", s.integral(a, a + d), best_g)
    out.update({"best_start": s.time_at(best_c), "delay_h": best_c - a,
                "end": s.time_at(best_c + d)})
    return out


def pause_and_resume(series, duration_h: float, power_kw: float | None = None,
                     max_delay_h: float = 24.0, start=None, *,
                     energy_kwh: float | None = None) -> dict:
    """Run only in the cheapest hours of ``[start, start + duration_h + max_delay_h)``
    (seed 002 §6 Pause and Resume).

    Returns the Flexible-Start keys (without ``best_start``/``delay_h``) plus ``intervals``
    (chronological ``{start, end, hours, g_co2eq_per_kwh}`` of running time, adjacent slices
    merged), ``pauses`` (number of interruptions) and ``end`` (when the job finishes).
    """
    s, d, p, n, a = _job_args(series, duration_h, power_kw, energy_kwh, max_delay_h, start)
    w_end = a + d + n
    slices = []                      # (intensity, lo, hi)
    i = int(math.floor(a))
    while i < w_end:
        lo, hi = max(a, i), min(w_end, i + 1)
        if hi - lo > 1e-12:
            slices.append((s.values[i], lo, hi))
        i += 1
    remaining, chosen, g_total = d, [], 0.0
    for v, lo, hi in sorted(slices, key=lambda x: (x[0], x[1])):
        if remaining <= 1e-12:
            break
        take = min(hi - lo, remaining)
        chosen.append((lo, lo + take, v))   # a partial slice runs at its start
        g_total += v * take
        remaining -= take
    chosen.sort()
    merged: list[list] = []
    for lo, hi, v in chosen:
        if merged and abs(merged[-1][1] - lo) < 1e-9:
            m = merged[-1]
            m[3] += v * (hi - lo)
            m[1] = hi
        else:
            merged.append([lo, hi, None, v * (hi - lo)])
    intervals = [{"start": s.time_at(lo), "end": s.time_at(hi), "hours": hi - lo,
                  "g_co2eq_per_kwh": g / (hi - lo)} for lo, hi, _, g in merged]
    out = _common(s, d, p, n, a, "pause_and_resume", s.integral(a, a + d), g_total)
    out.update({"intervals": intervals, "pauses": max(0, len(merged) - 1),
                "end": s.time_at(merged[-1][1]) if merged else s.time_at(a)})
    return out
