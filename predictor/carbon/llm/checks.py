"""Input checks of the LLM keywords of :func:`predictor.carbon.calc.calc` and of serving mode, run
whichever duration is given: a ``tp="abc"`` or ``mfu=1e308`` beside ``hours`` is refused with
the accepted range, never ignored. Each failure is one :class:`ExanteError` line.
"""

from __future__ import annotations

import inspect
import math

from predictor.carbon.llm import memory, parallel
from predictor.carbon.llm import mfu as mfu_mod
from predictor.carbon.llm.plan import MFU_MODES, TRAIN_DTYPES, training_plan
from profiling.errors import ExanteError

_SHAPE_INTS = ("layers", "hidden", "heads", "seq_len", "micro_batch")
_CHOICES = {"mfu_mode": MFU_MODES, "mfu_flavour": mfu_mod.FLAVOURS,
            "sharding": memory.SHARDING, "checkpointing": memory.CHECKPOINTING,
            "optimizer_dtype": memory.OPT_DTYPES, "dtype": TRAIN_DTYPES}
_PLAN_KEYWORDS = frozenset(inspect.signature(training_plan).parameters) - {"spec", "count"}


def _float(value, what: str, accepted: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ExanteError(f"{what} must be {accepted}, got {value!r}") from None
    if not math.isfinite(v):
        raise ExanteError(f"{what} must be {accepted}, got {value!r}")
    return v


def degree(value, what: str, count: int) -> int:
    """A parallel degree (``tp``, ``pp``, ``dp``): an integer in ``1..count``."""
    accepted = f"an integer in 1..{count} (at most count, the number of devices)"
    v = _float(value, what, accepted)
    if v != int(v) or not 1 <= v <= count:
        raise ExanteError(f"{what} must be {accepted}, got {value!r}")
    return int(v)


def mfu_value(value) -> float:
    """Model-FLOPs utilisation: a number in (0, 1]."""
    accepted = "a number in (0, 1] (model-FLOPs utilisation, e.g. 0.4)"
    v = _float(value, "mfu", accepted)
    if not 0 < v <= 1:
        raise ExanteError(f"mfu must be {accepted}, got {value!r}")
    return v


def positive(value, what: str, *, integer: bool = False, allow_zero: bool = False) -> float:
    """A finite number > 0 (``>= 0`` with ``allow_zero``; a whole number with ``integer``)."""
    accepted = (("a whole number" if integer else "a finite number")
                + (" >= 0" if allow_zero else " > 0"))
    v = _float(value, what, accepted)
    if v < 0 or (v == 0 and not allow_zero) or (integer and v != int(v)):
        raise ExanteError(f"{what} must be {accepted}, got {value!r}")
    return int(v) if integer else v


def check_llm_inputs(count: int, *, mfu=None, dp=None, tp=1, pp=1, dtype="bf16",
                     **llm_kw) -> list[str]:
    """Refuse out-of-range LLM keywords (given with any duration) and unknown keywords;
    returns the names of those given that only a FLOP-based duration uses (for a note)."""
    unknown = sorted(set(llm_kw) - _PLAN_KEYWORDS)
    if unknown:
        raise ExanteError(f"unknown keyword(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(sorted(_PLAN_KEYWORDS - {'params', 'tokens', 'flops'}))}")
    given = []
    for what, v in (("tp", tp), ("pp", pp), ("dp", dp)):
        if v is not None and degree(v, what, count) != 1:
            given.append(what)
    if mfu is not None:
        mfu_value(mfu)
        given.append("mfu")
    for what, accepted in _CHOICES.items():
        v = dtype if what == "dtype" else llm_kw.get(what)
        if v is not None and v not in accepted:
            raise ExanteError(f"{what} must be one of {', '.join(accepted)}, got {v!r}")
    for what in _SHAPE_INTS:
        if llm_kw.get(what) is not None:
            positive(llm_kw[what], what, integer=True)
            given.append(what)
    for what in ("active_params", "global_batch_tokens"):
        if llm_kw.get(what) is not None:
            positive(llm_kw[what], what)
            given.append(what)
    link = llm_kw.get("interconnect")
    if link:
        names = str(link).split(",")
        for name in names:
            if len(names) > 2 or name.strip() not in parallel.INTERCONNECTS:
                raise ExanteError(f"unknown interconnect {name.strip()!r}; accepted: INTRA[,INTER] "
                                  f"of {', '.join(parallel.INTERCONNECTS)}")
        given.append("interconnect")
    return given
