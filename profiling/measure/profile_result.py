"""What :func:`~profiling.measure.profiler.profile_model` returns: the dataset rows of one
profile (per call: seconds, joules, watts), a text table, and an atomic write to a dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from profiling.dataset import schema
from profiling.dataset.txn import all_or_nothing
from profiling.measure.session import now_iso

__all__ = ["ProfileResult"]


@dataclass
class ProfileResult:
    """One profile: layer rows and the model row (per call: ``time_s`` s, ``energy_j`` J,
    ``power_w`` W), reference rows, what was unsupported, skipped or reused, and the run's
    settings and env."""
    layer_rows: list
    model_row: dict | None
    reference_rows: list
    unsupported: list  # {type, names, count, key, reason}
    skipped: list  # {key, type, exec, reason}: supported layers not measured in some exec
    reused_keys: list  # layer row keys taken from earlier measurements of the session
    env: dict
    session_id: str
    mode: str
    dtype: str
    optimizer: str | None
    hardware: str
    layer_counts: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)  # config key -> module paths
    notes: list = field(default_factory=list)

    @property
    def additivity_ratio(self) -> float | None:
        return None if self.model_row is None else self.model_row.get("additivity_ratio")

    def to_text(self) -> str:
        def fmt_t(s):
            return "-" if s is None else (f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms")

        def fmt_e(j):
            return "-" if j is None else (f"{j * 1e3:.3f} mJ" if j < 1 else f"{j:.3f} J")

        head = (f"profile: mode {self.mode}, dtype {self.dtype}"
                + (f", optimizer {self.optimizer}" if self.optimizer else "")
                + f", hardware {self.hardware}, GPU {self.env.get('gpu_name') or '-'}, meter {self.env.get('meter')}"
                + ("" if self.env.get("measured", True) else " (ESTIMATE, not a measurement)"))
        lines = [head]
        header = ("layer", "type", "count", "exec", "time/call", "energy/call", "power", "spread", "count x energy")
        rows = []
        for r in self.layer_rows:
            cnt = self.layer_counts.get(r["config_key"], 0)
            name = (self.names.get(r["config_key"]) or ["?"])[0]
            rows.append((name[-32:], r["layer_type"], str(cnt), r["exec"], fmt_t(r["time_s"]), fmt_e(r["energy_j"]),
                         f"{r['power_w']:.0f} W" if r["power_w"] is not None else "-",
                         f"{100 * r['spread']:.1f} %" if r["spread"] is not None else "-",
                         fmt_e(cnt * r["energy_j"]) if r["exec"] == "eager" and r["energy_j"] is not None else ""))
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)] if rows else [len(h) for h in header]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
        lines.append(line(header))
        lines.append(line(["-" * w for w in widths]))
        lines += [line(r) for r in rows]
        m = self.model_row
        if m is not None:
            lines.append("")
            lines.append(f"whole model ({m['n_layer_calls']} layer calls, {m['n_distinct_layers']} distinct): "
                         f"time {fmt_t(m['time_s'])}, energy {fmt_e(m['energy_j'])}, power {m['power_w']:.0f} W, "
                         f"spread {100 * (m['spread'] or 0):.1f} %")
            rho, trho = m.get("additivity_ratio"), m.get("time_additivity_ratio")
            lines.append(f"sum of layers (eager): energy {fmt_e(m.get('sum_layer_energy_j'))}, time "
                         f"{fmt_t(m.get('sum_layer_time_s'))}; additivity ratio rho = "
                         f"{'-' if rho is None else f'{rho:.3f}'} (time {'-' if trho is None else f'{trho:.3f}'})")
        for ref in self.reference_rows:
            lines.append(f"reference: {fmt_t(ref['time_s'])}, {fmt_e(ref['energy_j'])}, {ref['power_w']:.0f} W")
        if self.unsupported:
            lines.append("unsupported (not measured): " + ", ".join(f"{u['type']} x{u['count']}" for u in self.unsupported))
        if self.skipped:
            lines.append("skipped: " + "; ".join(f"{s['type']} [{s['exec']}]: {s['reason']}" for s in self.skipped[:10])
                         + (f"; ... ({len(self.skipped)} in all)" if len(self.skipped) > 10 else ""))
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def write(self, dataset_dir) -> dict:
        """Append the rows to ``<dataset_dir>/layers.csv`` and ``models.csv`` (atomically) and
        record the session in ``meta.json``; returns how many rows went where."""
        layers = schema.layer_table(dataset_dir)
        models = schema.model_table(dataset_dir)
        meta_path = os.path.join(os.fspath(dataset_dir), schema.META_FILE)
        with all_or_nothing(layers.path, models.path, meta_path):   # no partial session
            n_l = layers.append(list(self.layer_rows) + list(self.reference_rows))
            n_m = models.append([self.model_row] if self.model_row is not None else [])
            schema.update_meta(dataset_dir, self._meta_update)
        return {"layers": n_l, "models": n_m}

    def _meta_update(self, meta) -> None:
        env = self.env

        meta.setdefault("hardware", self.hardware)
        meta["schema_version"] = schema.SCHEMA_VERSION
        meta["updated"] = now_iso()
        s = meta.setdefault("sessions", {}).setdefault(self.session_id, {"started": env.get("date")})
        s["env"] = env
        s["updated"] = now_iso()
