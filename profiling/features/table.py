""":class:`FeatureTable`: the per-layer feature rows of a capture
(:func:`features_for_capture`, :func:`feature_table`), with unsupported layers listed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

from profiling.capture.records import Capture, CapturedLayer
from profiling.features.families.registry import (
    FEATURE_REGISTRY,
    UnsupportedLayerWarning,
    layer_features,
)

_ROW_KEYS = ("name", "names", "type", "count", "key", "hparams", "input_shapes",
             "output_shapes", "dtype", "supported", "functional")


@dataclass
class FeatureTable:
    """Per distinct layer config: identification, call count and features.

    ``rows``: one dict per distinct config (first-seen order) with ``name`` (first path),
    ``names``, ``type``, ``count`` (calls per forward), ``key``, ``hparams`` (dict),
    ``input_shapes``, ``output_shapes``, ``dtype``, ``supported``, ``functional`` and — for
    supported rows only — the features, merged into the row. Unsupported rows carry no
    features (never fabricated zeros) and a ``reason``.
    ``unsupported``: ``{type, names, count, key, reason}`` for each unsupported row.
    ``totals``: Σ count·feature over supported rows for macs, flops, bytes_read,
    bytes_written; ``params`` counts each module's parameters once (shared modules called
    several times are not double counted); plus ``calls``, ``supported_calls``,
    ``unsupported_calls``, ``distinct_layers`` and (from ``feature_table``) ``model_params``.
    """

    rows: list
    unsupported: list
    totals: dict
    zero_cost_ops: dict = field(default_factory=dict)
    dtype: str = "fp32"
    capture: Capture | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps({
            "dtype": self.dtype,
            "rows": self.rows,
            "unsupported": self.unsupported,
            "totals": self.totals,
            "zero_cost_ops": self.zero_cost_ops,
        }, default=str))

    def to_text(self, max_name: int = 36) -> str:
        """An aligned, human-readable table (one line per distinct layer config)."""
        header = ("name", "type", "count", "dtype", "input", "output", "MACs", "params",
                  "bytes r+w", "AI")
        lines = []
        for r in self.rows:
            name = r["name"]
            if len(r["names"]) > 1:
                name = f"{name} (+{len(r['names']) - 1})"
            if len(name) > max_name:
                name = "…" + name[-(max_name - 1):]
            ins = ",".join("x".join(str(d) for d in s) or "()" for s in r["input_shapes"])
            outs = ",".join("x".join(str(d) for d in s) or "()" for s in r["output_shapes"])
            if r["supported"]:
                cells = (_human(r["macs"]), _human(r["params"]),
                         _human(r["bytes_read"] + r["bytes_written"], "B"),
                         f"{r['arith_intensity']:.1f}")
            else:
                cells = ("UNSUPPORTED", "-", "-", "-")
            lines.append((name, r["type"], str(r["count"]), r["dtype"], _clip(ins, 28),
                          _clip(outs, 24)) + cells)
        widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
        right = {2, 6, 7, 8, 9}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        out = [fmt(header), fmt(tuple("-" * w for w in widths))]
        out += [fmt(line) for line in lines]
        t = self.totals
        out.append("")
        out.append(
            f"total ({t.get('calls', 0)} calls, {t.get('distinct_layers', 0)} distinct, "
            f"dtype {self.dtype}): MACs {_human(t.get('macs', 0))}, "
            f"FLOPs {_human(t.get('flops', 0))}, params {_human(t.get('params', 0))}, "
            f"bytes read {_human(t.get('bytes_read', 0), 'B')}, "
            f"written {_human(t.get('bytes_written', 0), 'B')}"
        )
        if self.unsupported:
            out.append("unsupported (no features, not counted in totals): " + ", ".join(
                f"{u['type']} x{u['count']}" for u in self.unsupported))
        if self.zero_cost_ops:
            ops = sorted(self.zero_cost_ops.items(), key=lambda kv: -kv[1])
            out.append("zero-cost view/metadata ops: " + ", ".join(f"{k} x{v}" for k, v in ops))
        return "\n".join(out)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _human(v, unit: str = "") -> str:
    v = float(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{suffix}{unit}"
    return f"{int(v)}{unit}" if v == int(v) else f"{v:.2f}{unit}"


def _row(layer: CapturedLayer) -> dict:
    cfg = layer.config
    return {
        "name": layer.names[0],
        "names": list(layer.names),
        "type": cfg.type,
        "count": layer.count,
        "key": cfg.key(),
        "hparams": cfg.hparams_dict(),
        "input_shapes": [list(s) for s in cfg.input_shapes],
        "output_shapes": [list(s) for s in cfg.output_shapes],
        "dtype": cfg.dtype,
        "supported": layer.supported,
        "functional": layer.module is None,
    }


def features_for_capture(cap: Capture, *, warn: bool = True) -> FeatureTable:
    """Build the :class:`FeatureTable` of an existing :class:`Capture`."""
    rows, unsupported = [], []
    totals = {"macs": 0, "flops": 0, "params": 0, "bytes_read": 0, "bytes_written": 0}
    supported_calls = unsupported_calls = 0
    for layer in cap.layers:
        row = _row(layer)
        reason = None
        feats = None
        if layer.supported and layer.config.type in FEATURE_REGISTRY:
            try:
                feats = layer_features(layer.config)
            except Exception as exc:        # a registered rule that cannot handle it: named below
                reason = f"feature function failed: {type(exc).__name__}: {exc}"
        else:
            reason = f"no feature function for {layer.config.type!r}"
        if feats is None:
            row["supported"] = False
            row["reason"] = reason
            unsupported.append({"type": layer.config.type, "names": list(layer.names),
                                "count": layer.count, "key": row["key"], "reason": reason})
            unsupported_calls += layer.count
        else:
            clash = set(feats) & set(_ROW_KEYS)
            if clash:                        # programming error in a feature function
                raise RuntimeError(f"feature names {sorted(clash)} clash with row keys")
            row.update(feats)
            supported_calls += layer.count
            for k in ("macs", "flops", "bytes_read", "bytes_written"):
                totals[k] += layer.count * feats[k]
            n_modules = len(layer.names) if layer.module is not None else layer.count
            totals["params"] += feats["params"] * n_modules
        rows.append(row)
    totals.update(calls=cap.total_calls, supported_calls=supported_calls,
                  unsupported_calls=unsupported_calls, distinct_layers=len(rows))
    if unsupported and warn:
        kinds: dict = {}
        for u in unsupported:
            kinds[u["type"]] = kinds.get(u["type"], 0) + u["count"]
        warnings.warn(
            "layers without a feature function (listed in .unsupported, not counted in "
            "totals): " + ", ".join(f"{t} x{c}" for t, c in kinds.items()),
            UnsupportedLayerWarning, stacklevel=3,
        )
    return FeatureTable(rows=rows, unsupported=unsupported, totals=totals,
                        zero_cost_ops=dict(cap.zero_cost_ops), dtype=cap.dtype, capture=cap)


def feature_table(model, inputs, dtype: str = "fp32", *, train: bool = False) -> FeatureTable:
    """Capture ``model`` on ``inputs`` and compute the features of every distinct layer.

    Never raises for unsupported layers: they are listed in ``.unsupported`` (rows marked
    ``supported=False``, no features) and reported with an :class:`UnsupportedLayerWarning`.
    A model built from a MODEL_REF on meta whose forward cannot run there is traced once on
    the CPU instead (with a ``RuntimeWarning``; see
    :func:`profiling.model_refs.capture_with_cpu_fallback`).
    """
    from profiling.model_refs import capture_with_cpu_fallback

    cap, note = capture_with_cpu_fallback(model, inputs, dtype=dtype, train=train)
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    table = features_for_capture(cap)
    table.totals["model_params"] = int(sum(p.numel() for p in model.parameters()))
    return table
