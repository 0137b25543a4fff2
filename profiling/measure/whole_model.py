"""The whole model measured alone (no layer replays): one protocol measurement, then one
capture for the row's layer counts and feature totals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from typing import Any, cast

from torch import nn

from profiling.capture import capture
from profiling.dataset import schema
from profiling.features import layer_features
from profiling.measure import replay
from profiling.measure.session import ProfileSession

__all__ = ["measure_whole_model", "input_shapes"]

logger = logging.getLogger(__name__)


def input_shapes(xs) -> list:
    """Shapes (lists of ints) of the tensors among inputs ``xs`` (a tuple or a dict)."""
    return [list(x.shape) for x in replay.input_tensors(xs)]


def measure_whole_model(model: nn.Module, inputs, *, session: ProfileSession, mode: str = "inference",
                        dtype: str = "fp32", optimizer: str | None = None, model_ref: str | None = None,
                        family: str | None = None, spec: Any = None, task_key: str | None = None,
                        sweep_id: str | None = None, features: bool = True) -> tuple[dict, list, list]:
    """Measure the whole model only (no layer replays): ``(model_row, reference_rows, notes)``.

    The measurement comes first; then (``features=True``) one capture gives the row's
    ``layer_counts`` and feature totals. A capture or feature failure does not lose the
    measurement: the row keeps ``layer_counts = {}``, ``n_unsupported = 1`` and
    ``unsupported_types = ["(capture failed)"]`` (so fits that need the counts skip it) and the
    reason is returned in ``notes``."""
    optimizer = schema.check_run(mode, "eager", dtype, optimizer, default_optimizer="sgd")
    dev = session.device
    ref_rows: list = []
    notes: list = []
    flags = [(m, m.training) for m in model.modules()]
    try:
        session.maybe_reference(ref_rows, task_key=task_key)
        replay.materialize(model, dev)
        xs = replay.prepare_inputs(inputs, dev, int_high=replay.min_embedding_rows(model) or 2)
        wl = replay.build_model_workload(model, xs, mode=mode, dtype=dtype, optimizer=optimizer, device=dev)
        try:
            meas = session.measure(wl)
        finally:
            wl.close()
        totals: dict = {"params": int(sum(p.numel() for p in model.parameters()))}
        counts: dict = {}
        if features:
            try:
                cap = capture(model, xs, dtype=dtype, train=mode != "inference")
                feats = {}
                for layer in cap.layers:
                    k = layer.config.key()
                    if layer.supported:
                        try:
                            feats[k] = layer_features(layer.config)
                        except Exception as exc:  # a user layer's feature function: counted as unsupported
                            logger.debug("features of %s failed: %s: %s", layer.config.type, type(exc).__name__, exc)
                            continue
                        counts[k] = counts.get(k, 0) + layer.count
                for f in ("macs", "flops", "bytes_read", "bytes_written"):
                    totals[f] = int(sum(c * int(feats[k].get(f) or 0) for k, c in counts.items()))
                totals["n_unsupported"] = sum(1 for l in cap.layers if l.config.key() not in counts)
                totals["unsupported_types"] = sorted({l.config.type for l in cap.layers if l.config.key() not in counts})
            except Exception as exc:  # keep the measurement; the features can be recomputed offline
                counts = {}  # marked so that fits needing the counts skip the row
                totals["n_unsupported"] = 1
                totals["unsupported_types"] = ["(capture failed)"]
                notes.append(f"features not captured: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        shapes = input_shapes(xs)
        row = schema.model_row(
            key=task_key or "model:" + hashlib.sha1(json.dumps([model_ref, shapes, mode, dtype, optimizer],
                                                               default=str).encode()).hexdigest()[:16],
            model_ref=model_ref or type(model).__name__, family=family, spec=spec, input_shape=shapes,
            batch=int(shapes[0][0]) if shapes and shapes[0] else 1, mode=mode, dtype=dtype, optimizer=optimizer,
            measurement=meas, env=session.row_env(), hardware=session.hardware, layer_counts=counts, totals=totals,
            exec="eager", sweep_id=sweep_id if sweep_id is not None else session.sweep_id, task_key=task_key)
    except BaseException as exc:
        with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
            cast(Any, exc).exante_partial = {"layer_rows": [], "reference_rows": list(ref_rows), "skipped": [],
                                             "reused_keys": []}
        raise
    finally:
        for mod, was_training in flags:
            mod.training = was_training
    return row, ref_rows, notes
