"""Physics constants learned from layer rows (step 1 of :mod:`predictor.fit.regression`): the
per-mode host floor (s per call), the active-idle board power P_ai (W), the energy above
active idle (J), and the median session idle power (W).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictor.fit.regression.design import _TINY, _cat, _num
from profiling.errors import ExanteError

_ENERGY_FLOOR_FRACTION = 0.02   # energy_active >= this · P_ai · time (regression step 2)
_HOST_FLOOR_QUANTILE = 0.02
_HOST_BAND = 2.0                # host-bound band: time <= _HOST_BAND · floor
_ACTIVE_IDLE_QUANTILE = 0.25


def estimate_host_floor(layers: pd.DataFrame, quantile: float = _HOST_FLOOR_QUANTILE) -> dict:
    """Per-mode host floor (s per call) of eager layer rows: a low quantile of time_s."""
    t = _num(layers, "time_s", np.nan)
    ex = _cat(layers, "exec", "eager")
    modes = _cat(layers, "mode", "inference")
    ok = np.isfinite(t) & (t > 0) & (ex == "eager")
    if not ok.any():
        ok = np.isfinite(t) & (t > 0)
    out = {"*": float(np.quantile(t[ok], quantile)) if ok.any() else 0.0}
    for m in np.unique(modes[ok]):
        sel = ok & (modes == m)
        out[str(m)] = float(np.quantile(t[sel], quantile))
    return out


def estimate_active_idle_power(layers: pd.DataFrame, floors: dict | None = None,
                               quantile: float = _ACTIVE_IDLE_QUANTILE) -> tuple[float, dict]:
    """Active-idle board power from the host-bound band (see :mod:`predictor.fit.regression`).

    Returns ``(P_ai, info)``; falls back to 1.6 × the median session idle power (DESIGN §2:
    ~75 W deep idle, ~120 W active idle) when fewer than 5 host-bound rows exist.
    """
    floors = floors or estimate_host_floor(layers)
    t = _num(layers, "time_s", np.nan)
    e = _num(layers, "energy_j", np.nan)
    pw = _num(layers, "power_w", np.nan)
    pw = np.where(np.isfinite(pw) & (pw > 0), pw, e / np.maximum(t, _TINY))
    modes = _cat(layers, "mode", "inference")
    ex = _cat(layers, "exec", "eager")
    fl = np.array([floors.get(m, floors.get("*", 0.0)) for m in modes])
    band = (ex == "eager") & np.isfinite(pw) & (pw > 0) & (t <= _HOST_BAND * fl)
    if band.sum() >= 5:
        return float(np.quantile(pw[band], quantile)), {
            "method": f"q{int(quantile * 100)} of power_w over eager rows with time <= "
                      f"{_HOST_BAND}x host floor", "n_rows": int(band.sum())}
    idle = _num(layers, "idle_power_w", np.nan)
    idle = idle[np.isfinite(idle) & (idle > 0)]
    if len(idle):
        return float(1.6 * np.median(idle)), {"method": "1.6 x median idle_power_w (too few "
                                              "host-bound rows)", "n_rows": 0}
    ok = np.isfinite(pw) & (pw > 0)
    if ok.any():
        return float(np.quantile(pw[ok], 0.05)), {"method": "q5 of power_w (no idle power)",
                                                  "n_rows": int(ok.sum())}
    raise ExanteError("cannot estimate active-idle power: no power or energy columns")


def energy_active(energy_j, time_s, active_idle_power_w: float) -> np.ndarray:
    """Energy above active idle, floored at 2 % of the active-idle energy (log-safe)."""
    e = np.asarray(energy_j, float)
    t = np.asarray(time_s, float)
    base = active_idle_power_w * t
    return np.maximum(e - base, _ENERGY_FLOOR_FRACTION * base + _TINY)


def _mode_floor(X: pd.DataFrame, floors: dict, mode: str | None = None) -> np.ndarray:
    modes = np.full(len(X), mode, dtype=object) if mode else _cat(X, "mode", "inference")
    return np.array([floors.get(m, floors.get("*", 0.0)) for m in modes])


def _median_idle(layers: pd.DataFrame, P: float) -> float:
    idle = _num(layers, "idle_power_w", np.nan)
    idle = idle[np.isfinite(idle) & (idle > 0)]
    return float(np.median(idle)) if len(idle) else float(P / 1.6)
