"""``exante bench irene DIR``: IrEne's transformer-inference energies predicted ex ante.

IrEne (Cao et al., ACL 2021) measured whole-system energy (J per forward call, wall meter) of
six Hugging Face transformers over batch 8–32 × sequence 32–256 at three levels: ML primitives
(Linear, LayerNorm, Embedding, Conv1D, Tanh, MatMul, Softmax), modules (e.g. ``BertLayer``)
and the whole model.  Its own predictor uses run-time utilisation and clocks; this benchmark
uses exante's *ex-ante* features only.

Per held-out model (leave-one-model-out over the models present, of the paper's six):

1. each model is rebuilt from its config (:mod:`predictor.bench.hf_models`) and captured on
   ``meta`` at every (batch, seq) of the data; every call site gets exante's shape features;
2. a :class:`~predictor.bench.layer_regressor.LayerRegressor` (per-type gradient boosting in log space
   relative to a FLOPs/bytes roofline) is fitted on the primitive rows of the *training*
   models, each row joined to its captured call site by module path and type;
3. a node's energy (a module or the whole model) is composed from its call sites:
   ``E ≈ a·Σ Ê(measured-type calls) + d·Σ Ê(other calls) + c`` (``a, d, c ≥ 0``; the "other"
   calls are the ops IrEne never measured alone — residual adds, GELU, attention scaling and
   masking — predicted by the regressor's type-agnostic model), fitted by non-negative
   relative least squares on the training models' model rows (module rows for modules);
4. the held-out model's rows are predicted and scored (MAPE per node, averaged per model).

Baseline on the same folds: ``energy_mean ≈ α·flops + β`` (the CSV's FLOPs, least squares on
the training models' model rows) — the FLOPs-linear number of the data's SOURCE.md.
Eval-mode ``Dropout`` launches no kernel and is left out of every sum.
"""

from __future__ import annotations

import os
import time
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

from profiling.errors import ExanteError

PAPER_MODELS = ("bert-base-uncased", "distilbert-base-uncased", "roberta-base", "gpt2",
                "distilgpt2", "openai-gpt")
FILES = {"model": "model_level_features.csv", "module": "module_level_features.csv",
         "ml1": "ml1_level_features.csv", "ml2": "ml2_level_features.csv"}
REQUIRED_COLUMNS = ("batch_size", "seq_len", "energy_mean", "level_name", "model_name")
#: IrEne primitive class -> exante capture type (Conv1D is captured as the same GEMM, Linear)
PRIMITIVE_TYPES = {"Linear": "Linear", "Conv1D": "Linear", "LayerNorm": "LayerNorm",
                   "Embedding": "Embedding", "Tanh": "Tanh", "MatMul": "matmul",
                   "Softmax": "softmax"}
FUNCTIONAL_TYPES = frozenset({"matmul", "softmax"})
NO_KERNEL_TYPES = frozenset({"Dropout", "Identity"})
#: published anchors, device_1 (IrEne master README LOMO; SOURCE.md's recomputed FLOPs-linear)
ANCHORS = {"irene_model_lomo_mape_pct": 6.74, "irene_module_lomo_mape_pct": 10.12,
           "flops_linear_model_lomo_mape_pct_source": 9.8}

__all__ = ["PAPER_MODELS", "load_irene_dir", "site_table", "run_irene_bench"]


# ----------------------------------------------------------------------------- data
def _read(path: str, kind: str, extra_cols=()) -> tuple[pd.DataFrame, int]:
    if not os.path.isfile(path):
        raise ExanteError(f"missing IrEne file {path} (a DIR needs {', '.join(FILES.values())})")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:      # pandas' parser errors are ValueErrors
        raise ExanteError(f"cannot read {path} as CSV: {exc}") from None
    missing = [c for c in (*REQUIRED_COLUMNS, *extra_cols) if c not in df.columns]
    if missing:
        raise ExanteError(f"{path} lacks column(s) {', '.join(missing)}; needed: "
                          f"{', '.join((*REQUIRED_COLUMNS, *extra_cols))}")
    for c in ("batch_size", "seq_len", "energy_mean", *extra_cols):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = (df["batch_size"] >= 1) & (df["seq_len"] >= 1) & (df["energy_mean"] > 0)
    ok &= df["level_name"].astype(str).str.len() > 0
    for c in extra_cols:
        ok &= df[c].notna()
    bad = int((~ok).sum())
    df = df.loc[ok].copy()
    df["batch_size"] = df["batch_size"].astype(int)
    df["seq_len"] = df["seq_len"].astype(int)
    name = df["level_name"].astype(str)
    df["site"] = name.str.rsplit(":", n=1).str[0]
    df["cls"] = name.str.rsplit(":", n=1).str[-1]
    df["level"] = kind
    return df.reset_index(drop=True), bad


def load_irene_dir(path: str) -> tuple[dict, dict]:
    """The four CSVs of an IrEne device folder and counts of rows skipped as unusable."""
    if not os.path.isdir(path):
        raise ExanteError(f"IrEne DIR {path!r} is not a folder (expected files: "
                          f"{', '.join(FILES.values())})")
    frames, skipped = {}, {}
    for kind, fname in FILES.items():
        extra = ("flops",) if kind == "model" else ()
        frames[kind], skipped[kind] = _read(os.path.join(path, fname), kind, extra)
    return frames, skipped


# ----------------------------------------------------------------------------- capture
@lru_cache(maxsize=8)
def _model(name: str):
    from predictor.bench.hf_models import build_hf_model

    return build_hf_model(name, device="meta")


def _shape_only(row: dict) -> dict:
    """Features of a call without a feature function (e.g. ``diff`` in a mask): sizes from its
    shapes at 4 bytes per element, one op per output element; listed in the report."""
    inn = sum(int(np.prod(s)) if s else 1 for s in row["input_shapes"])
    out = sum(int(np.prod(s)) if s else 1 for s in row["output_shapes"])
    return {"macs": 0, "flops": out, "params": 0, "bytes_read": 4 * inn,
            "bytes_written": 4 * out, "input_numel": inn, "output_numel": out,
            "batch": row["input_shapes"][0][0] if row["input_shapes"] and row["input_shapes"][0]
            else 1, "dtype_bytes": 4, "arith_intensity": out / max(4 * (inn + out), 1)}


@lru_cache(maxsize=512)
def _site_table_cached(name: str, batch: int, seq: int) -> pd.DataFrame:
    import torch

    from profiling.capture.core import capture
    from profiling.features.api import CORE_FEATURES, features_for_capture

    ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
    cap = capture(_model(name), {"input_ids": ids})
    table = features_for_capture(cap, warn=False)
    out = []
    for order, r in enumerate(table.rows):
        if r["type"] in NO_KERNEL_TYPES:
            continue
        feats = {k: r[k] for k in CORE_FEATURES} if r["supported"] else _shape_only(r)
        per_site = r["count"] / max(len(r["names"]), 1)
        for site in r["names"]:
            out.append({"site": site, "layer_type": r["type"], "n_calls": per_site,
                        "order": order, "supported": bool(r["supported"]), **feats})
    return pd.DataFrame(out)


def site_table(name: str, batch: int, seq: int) -> pd.DataFrame:
    """One row per (layer config, call site) of ``name`` at (batch, seq): type, calls, features."""
    return _site_table_cached(name, int(batch), int(seq))


def _ancestors(site: str) -> list[str]:
    """The module paths containing a call site, the root ``""`` first, the site itself last."""
    mod, _, op = site.partition(":")
    parts = [] if mod == "(root)" else mod.split(".")
    out = [""] + [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
    if op:
        out.append(site)
    return out


# ----------------------------------------------------------------------------- fitting
def _primitive_rows(prims: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Join primitive rows to their captured call sites (pairing repeats at a site in order)."""
    joined, unmatched = [], 0
    for (name, bs, seq), grp in prims.groupby(["model_name", "batch_size", "seq_len"], sort=False):
        sites = site_table(name, bs, seq)
        by_key = {k: g for k, g in sites.groupby(["site", "layer_type"], sort=False)}
        for (site, cls), rows in grp.groupby(["site", "cls"], sort=False):
            t = PRIMITIVE_TYPES.get(cls, cls)
            # functional ops are captured at "<module path>:<op>", modules at their path
            cand = by_key.get((f"{site}:{t}" if t in FUNCTIONAL_TYPES else site, t))
            if cand is None:
                unmatched += len(rows)
                continue
            cand = cand.sort_values("order")
            for i, (_, r) in enumerate(rows.iterrows()):
                c = cand.iloc[min(i, len(cand) - 1)].to_dict()
                c.update(energy_mean=float(r["energy_mean"]), model_name=name)
                joined.append(c)
    return pd.DataFrame(joined), unmatched


def _nnls_rel(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    s = np.maximum(np.abs(A).max(axis=0), 1e-30)
    w = 1.0 / y
    coef, _ = nnls((A / s) * w[:, None], np.ones(len(y)))
    return coef / s


class _Fold:
    """One leave-one-model-out fold: primitive regressor + node composers."""

    def __init__(self, prim_train: pd.DataFrame, quick: bool):
        from predictor.bench.layer_regressor import LayerRegressor

        self.measured = set(PRIMITIVE_TYPES.values())
        self.reg = LayerRegressor(base="gbr", categorical=(), quick=quick, random_state=0)
        self.reg.fit(prim_train, np.asarray(prim_train["energy_mean"], float))
        self._pred: dict = {}
        self.coef: dict = {}

    def node_sums(self, name, bs, seq) -> dict:
        """Module path -> (Σ Ê measured-type calls, Σ Ê other calls) inside it ("" = model)."""
        key = (name, bs, seq)
        if key not in self._pred:
            s = site_table(name, bs, seq)
            e = self.reg.predict(s) * s["n_calls"].to_numpy(float)
            measured = s["layer_type"].isin(self.measured).to_numpy()
            sums: dict = {}
            for site, ei, mi in zip(s["site"], e, measured, strict=True):
                for path in _ancestors(site):
                    acc = sums.setdefault(path, [0.0, 0.0])
                    acc[0 if mi else 1] += ei
            self._pred[key] = sums
        return self._pred[key]

    def design(self, nodes: pd.DataFrame) -> np.ndarray:
        A = np.zeros((len(nodes), 3))
        for i, (name, bs, seq, path) in enumerate(zip(nodes["model_name"], nodes["batch_size"],
                                                      nodes["seq_len"], nodes["path"],
                                                      strict=True)):
            sm, so = self.node_sums(name, bs, seq).get(path, (0.0, 0.0))
            A[i] = (sm, so, 1.0)
        return A

    def fit_level(self, level: str, nodes: pd.DataFrame):
        A = self.design(nodes)
        self.coef[level] = _nnls_rel(A, nodes["energy_mean"].to_numpy(float))
        return self

    def predict_level(self, level: str, nodes: pd.DataFrame) -> np.ndarray:
        return self.design(nodes) @ self.coef[level]


def _mape(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(100 * np.mean(np.abs(p - y) / y)) if len(y) else float("nan")


def _nodes(df: pd.DataFrame, level: str) -> pd.DataFrame:
    out = df.copy()
    out["path"] = "" if level == "model" else out["site"]
    return out


def run_irene_bench(path: str, *, models=PAPER_MODELS, quick: bool = False,
                    progress=None) -> dict:
    """Leave-one-model-out over ``models`` present in ``path``; returns the JSON report."""
    t0 = time.perf_counter()
    frames, skipped = load_irene_dir(path)  # the files are checked before torch loads
    from predictor.bench.hf_models import HF_CONFIGS
    prims = pd.concat([frames["ml1"], frames["ml2"]], ignore_index=True)
    present = [m for m in models if (frames["model"]["model_name"] == m).any()]
    others = sorted(set(frames["model"]["model_name"]) - set(present))
    if len(present) < 2:
        raise ExanteError(f"{path}: leave-one-model-out needs >= 2 of the models "
                          f"{', '.join(models)} in model_level_features.csv; found "
                          f"{present or 'none'}")
    unknown = [m for m in present if m not in HF_CONFIGS]
    if unknown:
        raise ExanteError(f"no config for model(s) {unknown}; accepted: {', '.join(HF_CONFIGS)}")
    keep = lambda d: d[d["model_name"].isin(present)]   # noqa: E731
    shape_only: dict = {}
    model_rows, module_rows, prims = keep(frames["model"]), keep(frames["module"]), keep(prims)

    t_cap = time.perf_counter()
    grid = pd.concat([model_rows, module_rows, prims])[["model_name", "batch_size", "seq_len"]]
    grid = grid.drop_duplicates()
    from predictor.cli.progress import bar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, bs, seq in bar(list(grid.itertuples(index=False)), desc="capturing on meta",
                                 unit="capture"):
            s = site_table(name, bs, seq)
            for t in s.loc[~s["supported"], "layer_type"].unique():
                shape_only.setdefault(str(t), set()).add(name)
    capture_s = time.perf_counter() - t_cap
    prim_all, unmatched = _primitive_rows(prims)
    mod_nodes, model_nodes = _nodes(module_rows, "module"), _nodes(model_rows, "model")

    per_model: dict[str, dict] = {}
    model_err: list[float] = []
    module_err: list[float] = []
    flops_err: list[float] = []
    all_model_pred = []
    for held in bar(present, desc="leave-one-model-out folds", unit="fold"):
        if progress:
            progress(f"fold: holding out {held}")
        tr = lambda d, held=held: d[d["model_name"] != held]       # noqa: E731
        te = lambda d, held=held: d[d["model_name"] == held]       # noqa: E731
        fold = _Fold(tr(prim_all), quick)
        fold.fit_level("model", tr(model_nodes)).fit_level("module", tr(mod_nodes))
        ym = te(model_nodes)["energy_mean"].to_numpy(float)
        pm = fold.predict_level("model", te(model_nodes))
        ymod = te(mod_nodes)["energy_mean"].to_numpy(float)
        pmod = fold.predict_level("module", te(mod_nodes)) if len(ymod) else np.zeros(0)
        a = tr(model_rows)
        X = np.column_stack([a["flops"].to_numpy(float), np.ones(len(a))])
        beta = np.linalg.lstsq(X, a["energy_mean"].to_numpy(float), rcond=None)[0]
        pf = np.column_stack([te(model_rows)["flops"].to_numpy(float),
                              np.ones(len(ym))]) @ beta
        per_model[held] = {"model_mape_pct": _mape(ym, pm), "module_mape_pct": _mape(ymod, pmod),
                           "flops_linear_mape_pct": _mape(ym, pf), "n_model_rows": int(len(ym)),
                           "n_module_rows": int(len(ymod)),
                           "composer_model": [float(c) for c in fold.coef["model"]],
                           "composer_module": [float(c) for c in fold.coef["module"]]}
        model_err.append(_mape(ym, pm))
        module_err.append(_mape(ymod, pmod))
        flops_err.append(_mape(ym, pf))
        all_model_pred.append(pd.DataFrame({"model_name": held, "y": ym, "p": pm}))

    pooled = pd.concat(all_model_pred)
    return {
        "benchmark": "irene",
        "dir": os.path.abspath(path),
        "models": present,
        "models_ignored": others,
        "metric": "MAPE over the held-out model's rows, averaged over the held-out models",
        "model_lomo_mape_pct": float(np.mean(model_err)),
        "module_lomo_mape_pct": float(np.nanmean(module_err)),
        "flops_linear_model_lomo_mape_pct": float(np.mean(flops_err)),
        "model_lomo_mape_pct_pooled": _mape(pooled["y"], pooled["p"]),
        "per_model": per_model,
        "n_rows": {"model": int(len(model_rows)), "module": int(len(module_rows)),
                   "primitive": int(len(prims)), "primitive_matched": int(len(prim_all)),
                   "primitive_unmatched": int(unmatched), "skipped_bad": skipped},
        "features": "ex-ante only (exante capture on meta: FLOPs, bytes, params, shapes); "
                    "no utilisation, clock or memory-use columns",
        "composition": "E = a*sum(E_hat measured-type calls) + d*sum(E_hat other calls) + c",
        "shape_only_types": {t: sorted(m) for t, m in shape_only.items()},
        "anchors": ANCHORS,
        "captures": int(len(grid)),
        "capture_s": round(capture_s, 2),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
