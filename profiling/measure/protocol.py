"""The one measurement procedure used for everything (DESIGN.md §2).

``measure(fn, meter, idle_power_w=...)`` returns per-call time and energy of ``fn``:

1. **Warm-up**: at least ``warmup_calls`` calls and at least ``warmup_s`` seconds (calls run in
   doubling batches, each followed by ``meter.sync()``), so that lazy initialisation,
   autotuning and clock ramp-up are out of the way.
2. **Calibrate**: time a growing number of calls (x10 at most per step), each batch between
   two syncs, until a batch lasts >= ``calibrate_s`` (50 ms); ``t_call = batch time / n``. The
   window size is ``k = ceil(min_window_s / t_call)`` calls, and ``k = 1`` when one call already
   lasts >= ``min_window_s``.
3. **Windows**: each window is preceded by a random sleep drawn uniformly from ``jitter_s``
   (0-100 ms; phase jitter, so the ~100 ms counter quantisation averages out instead of
   biasing), then ``sync -> E0, t0 -> k calls -> sync -> E1, t1`` (if the k calls took less than
   0.9 x ``min_window_s`` -- calls got faster after calibration -- chunks of ``k/4`` calls are
   added until that has passed). A *round* is ``n_windows`` windows.
4. **Consistency / re-measure rule**: per-call energy ``e_i = (E1 - E0) / k`` of each window.
   For a set S of windows, ``spread(S) = (max e - min e) / median e``. After each round the
   windows so far are sorted by ``e``; the candidate sets are the runs of consecutive windows in
   that order (these are the tightest sets of each size). If some run of >= ``n_windows``
   windows has ``spread <= max_spread``, the result uses the *largest* such run (ties: the
   smaller spread) and measuring stops. Otherwise another round of ``n_windows`` windows is
   measured, up to ``max_rounds`` rounds in total (``remeasured`` = rounds - 1). If no
   consistent set exists after the last round (or the ``max_total_s`` budget would be
   exceeded), the result uses the run of exactly ``n_windows`` windows with the smallest spread,
   and reports that spread (> ``max_spread``), so callers can see it. All windows are kept in
   ``Measurement.windows``; ``Window.used`` marks the ones the numbers come from.
5. **Report per call** over the used windows, call-weighted: ``time_s = sum t / sum calls``,
   ``energy_j = sum E / sum calls`` (total board energy), ``energy_dynamic_j = energy_j -
   idle_power_w * time_s`` (not clipped: it can be slightly negative for workloads that draw
   about idle power), ``power_w = energy_j / time_s``; SM clock and temperature from
   ``meter.info()`` read right after the last window.

**Energy of a window** (protocol version 2): a meter with ``interval_energy_j(t0, t1)`` (the
``*-changes`` meters, ``meters.CounterChangeMeter``) gives the mean power between the first and
last counter change inside the window x its length -- the H100 reference set's method, free of
the counter's ~100 ms quantisation; other meters give ``E(t1) - E(t0)`` from two edge reads.

**Time-bounded windows** (``sync_every=n``, the H100 reference set's rule): instead of a
calibrated ``k``, each window runs chunks of ``n`` calls with a sync after each chunk until
``min_window_s`` has passed (no calibration step: the last warm-up batch estimates the time per
call for the budget check; ``Window.calls`` may differ between windows).

Guard rails: an energy counter that does not advance over a window raises ``ExanteError``
naming the counter period; a workload that takes no measurable time raises ``ExanteError``;
nothing divides by zero; the whole procedure is bounded by ``max_total_s`` (raising if even the
warm-up, calibration or first round cannot fit, and cutting re-measure rounds otherwise).

Modules: this one holds the procedure (steps 1-5) and the consistency rule; the result types
are in :mod:`profiling.measure.measurement`, the window reads in :mod:`profiling.measure.metering`,
the idle power in :mod:`profiling.measure.idle` and the provenance in
:mod:`profiling.measure.environment` (their public names are re-exported here).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from typing import Callable

from profiling.errors import ExanteError
from profiling.measure.environment import environment_info
from profiling.measure.idle import measure_idle_power
from profiling.measure.measurement import (
    PROTOCOL_VERSION,
    ROW_FIELDS,
    Measurement,
    Window,
    spread_of,
)
from profiling.measure.metering import check_number, meter_info, metered, opt_float
from profiling.meters.base import EnergyMeter

__all__ = [
    "PROTOCOL_VERSION",
    "ROW_FIELDS",
    "Window",
    "Measurement",
    "measure",
    "measure_idle_power",
    "environment_info",
    "select_consistent",
    "spread_of",
]

_MAX_CALLS_PER_BATCH = 10_000_000  # calibration never grows a batch beyond this
_NO_PROGRESS_CALLS = 1 << 16  # this many calls taking exactly 0 s: the clock is not moving / fn does nothing


def select_consistent(values: list[float], n_min: int, max_spread: float) -> list[int]:
    """Indices of the set of windows to report on (the rule in the module docstring).

    Among runs of consecutive values in sorted order with at least ``n_min`` members: the
    largest run with spread <= ``max_spread`` (ties: smaller spread, then earlier run);
    if there is none, the run of exactly ``n_min`` members with the smallest spread.
    """
    n = len(values)
    if n == 0:
        return []
    n_min = max(1, min(n_min, n))
    order = sorted(range(n), key=lambda i: values[i])
    best = None  # (key, indices)
    for size in range(n_min, n + 1):
        for start in range(0, n - size + 1):
            idx = order[start:start + size]
            s = spread_of([values[i] for i in idx])
            if s <= max_spread:
                key = (0, -size, s, start)
            elif size == n_min:
                key = (1, 0, s, start)
            else:
                continue
            if best is None or key < best[0]:
                best = (key, idx)
    assert best is not None  # every run of exactly n_min members is a candidate
    return sorted(best[1])


def _make_rng(rng):
    if rng is None:
        return random.Random()
    if isinstance(rng, int):
        return random.Random(rng)
    if not hasattr(rng, "uniform"):
        raise ExanteError(f"rng must be None, an int seed or have .uniform(a, b); got {type(rng).__name__}")
    return rng


# --------------------------------------------------------------------------- measure


def measure(
    fn: Callable[[], object],
    meter: EnergyMeter,
    *,
    idle_power_w: float,
    min_window_s: float = 1.5,
    n_windows: int = 2,
    max_spread: float = 0.05,
    max_rounds: int = 3,
    warmup_s: float = 0.2,
    warmup_calls: int = 3,
    jitter_s: tuple[float, float] = (0.0, 0.1),
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    rng=None,
    calibrate_s: float = 0.05,
    max_total_s: float = 600.0,
    sync_every: int | None = None,
) -> Measurement:
    """Measure per-call time and energy of ``fn()`` with ``meter`` (protocol in the module doc)."""
    if not callable(fn):
        raise ExanteError(f"fn must be callable, got {type(fn).__name__}")
    idle_power_w = check_number("idle_power_w", idle_power_w)
    min_window_s = check_number("min_window_s", min_window_s, strict=True)
    max_spread = check_number("max_spread", max_spread)
    warmup_s = check_number("warmup_s", warmup_s)
    calibrate_s = check_number("calibrate_s", calibrate_s, strict=True)
    max_total_s = check_number("max_total_s", max_total_s, strict=True)
    if int(n_windows) != n_windows or n_windows < 1:
        raise ExanteError(f"n_windows must be an integer >= 1, got {n_windows!r}")
    if int(max_rounds) != max_rounds or max_rounds < 1:
        raise ExanteError(f"max_rounds must be an integer >= 1, got {max_rounds!r}")
    if int(warmup_calls) != warmup_calls or warmup_calls < 0:
        raise ExanteError(f"warmup_calls must be an integer >= 0, got {warmup_calls!r}")
    n_windows, max_rounds, warmup_calls = int(n_windows), int(max_rounds), int(warmup_calls)
    if sync_every is not None and (int(sync_every) != sync_every or sync_every < 1):
        raise ExanteError(f"sync_every must be None or an integer >= 1, got {sync_every!r}")
    try:
        j_lo, j_hi = (float(x) for x in jitter_s)
    except (TypeError, ValueError):
        raise ExanteError(f"jitter_s must be a (low, high) pair of seconds, got {jitter_s!r}") from None
    if not (0 <= j_lo <= j_hi and math.isfinite(j_hi)):
        raise ExanteError(f"jitter_s must satisfy 0 <= low <= high, got {jitter_s!r}")
    rng = _make_rng(rng)
    period = getattr(meter, "counter_period_s", None)
    changes = callable(getattr(meter, "interval_energy_j", None))  # no quantisation, needs >= 2 changes
    if period and min_window_s < (3 if changes else 10) * period:
        warnings.warn(
            f"min_window_s={min_window_s:g} s is < {3 if changes else 10}x the counter period of meter {meter.name!r} "
            f"({period:g} s); expect {'too few counter changes' if changes else 'large quantisation error'}",
            stacklevel=2,
        )

    t_begin = clock()

    def elapsed() -> float:
        return clock() - t_begin

    def run_batch(n: int) -> float:
        meter.sync()
        t0 = clock()
        for _ in range(n):
            fn()
        meter.sync()
        return clock() - t0

    def check_budget(stage: str) -> None:
        if elapsed() > max_total_s:
            raise ExanteError(f"measurement exceeded max_total_s={max_total_s:g} s during {stage}")

    # 1. warm-up: >= warmup_calls calls, then doubling batches until >= warmup_s
    last = None  # (calls, seconds) of the last warm-up batch
    if warmup_calls:
        last = (warmup_calls, run_batch(warmup_calls))
    batch = 1
    while elapsed() < warmup_s:
        check_budget("warm-up")
        dt_b = run_batch(batch)
        if dt_b <= 0 and batch >= _NO_PROGRESS_CALLS:
            raise ExanteError(f"fn takes no measurable time ({batch} calls took 0 s during warm-up)")
        last = (batch, dt_b)
        batch = min(batch * 2, _MAX_CALLS_PER_BATCH)
    check_budget("warm-up")

    # 2. calibrate the time per call (time-bounded windows: from the last warm-up batch)
    n = 1
    while sync_every is None:
        dt = run_batch(n)
        if dt >= calibrate_s or dt >= min_window_s:
            break
        if dt <= 0 and n >= _NO_PROGRESS_CALLS:
            raise ExanteError(f"fn takes no measurable time ({n} calls took 0 s during calibration)")
        if n >= _MAX_CALLS_PER_BATCH:
            break  # very fast fn: calibrate on what we have
        check_budget("calibration")
        grow = 10 if dt <= 0 else min(10.0, max(2.0, 1.2 * calibrate_s / dt))
        n = min(int(math.ceil(n * grow)), _MAX_CALLS_PER_BATCH)
    if sync_every is not None:  # no calibration step: the last warm-up batch estimates t_call
        n, dt = last if last is not None and last[1] > 0 else (1, run_batch(1))
        if dt <= 0:
            raise ExanteError(f"fn takes no measurable time ({n} calls took 0 s)")
    t_call = dt / n
    k = 1 if t_call >= min_window_s else max(1, int(math.ceil(min_window_s / t_call)))
    if sync_every is not None:  # whole chunks until min_window_s has passed
        k = int(sync_every) * max(1, int(math.ceil(min_window_s / (t_call * sync_every))))
    window_est_s = k * t_call + j_hi
    check_budget("calibration")
    if elapsed() + n_windows * window_est_s > max_total_s:
        raise ExanteError(
            f"one call takes {t_call:.3g} s; {n_windows} windows of {k} call(s) would exceed max_total_s={max_total_s:g} s"
        )

    # 3. windows, 4. re-measure rounds
    windows: list[Window] = []

    def measure_window(rnd: int) -> Window:
        j = rng.uniform(j_lo, j_hi) if j_hi > 0 else 0.0
        if j > 0:
            sleep(j)
        meter.sync()

        done = [0]

        def calls():
            if sync_every is None:
                t0 = clock()
                for _ in range(k):
                    fn()
                meter.sync()
                done[0] = k
                extra = max(1, k // 4)
                while clock() - t0 < 0.9 * min_window_s:  # calls got much faster than calibrated: top up
                    for _ in range(extra):
                        fn()
                    meter.sync()
                    done[0] += extra
                return
            t0 = clock()
            while True:
                for _ in range(sync_every):
                    fn()
                meter.sync()
                done[0] += sync_every
                if clock() - t0 >= min_window_s:
                    return

        dt_w, de = metered(meter, clock, calls, what="a window of calls of fn",
                            hint="use windows much longer than the counter period or check the meter")
        iv = getattr(meter, "last_interval", None) or {}
        return Window(calls=done[0], time_s=dt_w, energy_j=de, jitter_s=j, round=rnd,
                      n_changes=iv.get("n_changes"), span_s=iv.get("span_s"))

    rounds = 0
    while True:
        for _ in range(n_windows):
            windows.append(measure_window(rounds))
        rounds += 1
        per_call = [w.energy_per_call_j for w in windows]
        sel = select_consistent(per_call, n_windows, max_spread)
        sel_spread = spread_of([per_call[i] for i in sel])
        if sel_spread <= max_spread or rounds >= max_rounds:
            break
        if elapsed() + n_windows * window_est_s > max_total_s:
            warnings.warn(
                f"windows disagree (spread {sel_spread:.1%}) but max_total_s={max_total_s:g} s leaves no time to re-measure",
                stacklevel=2,
            )
            break

    for i in sel:
        windows[i].used = True
    used = [windows[i] for i in sel]
    calls = sum(w.calls for w in used)
    time_per_call = sum(w.time_s for w in used) / calls
    energy_per_call = sum(w.energy_j for w in used) / calls

    # 5. report
    meter.sync()
    info = meter_info(meter)
    return Measurement(
        time_s=time_per_call,
        energy_j=energy_per_call,
        energy_dynamic_j=energy_per_call - idle_power_w * time_per_call,
        power_w=energy_per_call / time_per_call,
        idle_power_w=idle_power_w,
        spread=sel_spread,
        windows=windows,
        calls_per_window=int(round(calls / len(used))),
        remeasured=rounds - 1,
        sm_clock_mhz=opt_float(info.get("sm_clock_mhz")),
        temperature_c=opt_float(info.get("temperature_c")),
        meter=meter.name,
        measured=bool(getattr(meter, "measured", True)),
        protocol_version=PROTOCOL_VERSION,
        max_spread=max_spread,
    )
