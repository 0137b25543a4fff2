"""Lower a :class:`~predictor.engine.workload.Workload` to what the GPU and the host actually do.

Eager PyTorch on CUDA turns each captured layer into host work (a Python module call or
functional op, its dispatches and kernel launches, autograd nodes in training, the optimizer's
foreach loops) and GPU work (kernels, each with FLOPs of a compute class and bytes moved).
This module counts both from shapes alone, following CUDA's choices rather than the CPU's:

* fp32 matmuls run on FP32 CUDA cores (PyTorch's default ``allow_tf32=False`` for matmul),
  fp32 convolutions on TF32 tensor cores (cuDNN's default ``allow_tf32=True``), autocast
  bf16/fp16 matmul/conv on 16-bit tensor cores (fp16 at the datasheet's FP32-accumulate fp16
  rate), with the cast kernels autocast really runs (:func:`_autocast_casts`: an fp32 input
  of a low-precision op, each weight once per forward, a 16-bit input of an fp32-list op);
  16-bit dense convolutions in NCHW pay cuDNN's NHWC transposes, ``channels_last`` does not;
* grouped/depthwise convolutions are their own (memory-bound) class;
* ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` on the inference fast path are
  one native call whose internal kernels cost launches but no Python;
* training: backward kernels per layer family (2 GEMMs + bias reduction for Linear/conv, one
  kernel for elementwise, two for LayerNorm, the dense gradient of an Embedding table, ...),
  with the traffic of what the kernels actually read and write: training BatchNorm makes 3
  activation passes forward and 5 backward (inference: 2), a unary elementwise op 3 backward,
  add/sub of two full tensors one accumulation add at the fork, mul/div of two full tensors
  two products (a scalar or broadcast operand makes them unary)
  and the optimizer as foreach kernels over the parameter tensors (``torch.optim``'s
  default on CUDA), SGD-momentum 32 B/parameter, Adam 72, AdamW 80 bytes of traffic; a
  GradScaler adds an unscale + inf-check foreach pass over the gradients.

Counts are per call of the whole batch.  Layer types without a lowering rule are lowered as
one memory-bound kernel over their tensor bytes and reported in ``LoweredWorkload.unknown``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from predictor.engine.autocast import autocast_flow
from predictor.engine.workload import Workload
from profiling.features.api import DTYPE_BYTES, FEATURE_REGISTRY, layer_features

__all__ = ["CLASSES", "HOST_FEATURES", "LoweredWorkload", "lower", "family_of"]

# GPU compute classes: each has an efficiency parameter against a datasheet peak
CLASSES = ("mm_fp32", "conv_tf32", "mm_bf16", "conv_bf16", "conv_grouped", "mem",
           "attn_fp32", "attn_bf16")
C = {name: i for i, name in enumerate(CLASSES)}

# host event counts the physics model prices (seconds per event are fitted)
HOST_FEATURES = ("call", "container", "disp", "disp_train", "kern", "conv", "lt", "view", "mha",
                 "fused", "cast", "bnode", "step", "opt_tensor", "opt_op", "opt_launch")

_FAMILY = {
    "_linear": "gemm", "_f_linear": "gemm", "_bilinear": "gemm", "_matmul": "bgemm",
    "_addmm": "bgemm", "_addbmm": "bgemm", "_einsum": "bgemm",
    "_conv": "conv", "_f_conv": "conv",
    "_batchnorm": "bn", "_f_batchnorm": "bn",
    "_layernorm": "ln", "_rmsnorm": "ln", "_f_norm": "ln", "_f_rms_norm": "ln",
    "_groupnorm": "gn", "_instancenorm": "gn",
    "_elementwise": "ew", "_prelu": "ew", "_softmax": "softmax", "_normalize": "ew",
    "_reduction": "ew", "_pool": "ew", "_adaptive_avg": "ew", "_adaptive_max": "ew",
    "_upsample": "ew",
    "_dropout": "dropout", "_identity": "view", "_copy": "copy", "_factory": "factory",
    "_embedding": "embedding", "_mha": "mha", "_sdpa": "sdpa", "_rnn": "rnn",
    "_regression_loss": "loss", "_class_loss": "loss",
}
# autocast's fp32 list (ops that cast bf16 inputs back to fp32)
_FP32_LIST = {"ln", "gn", "softmax", "loss"}
# optimizer: (foreach ops per step, bytes of traffic per parameter at fp32)
_OPT = {"sgd": (3, 32.0), "adam": (7, 72.0), "adamw": (8, 80.0)}
_LOOP_OPS = {"sgd": 3, "adam": 9, "adamw": 10}     # torch 1.x per-tensor loop: ops per tensor
_FOREACH_TENSORS = 48          # tensors per multi_tensor_apply launch (depth 3-4 lists)
_FOREACH_CHUNKS = 320          # 65536-element chunks per launch
_CHUNK = 65536


# backward traffic of an elementwise op, x its forward traffic (inputs + output): a unary op
# reads the gradient and its input or output and writes one gradient (3 passes against 2);
# add/sub of two full tensors passes the gradient through, leaving one accumulation add at the
# fork (3 passes against 3); mul/div of two full tensors writes two products (6 against 3);
# with a scalar or a broadcast operand, mul/div/add/sub are unary: grad x scalar (2 against 2),
# add/sub nothing at all
_EW_BWD = {"add2": 1.0, "mul2": 2.0, "add1": 0.0, "mul1": 1.0}
_EW_BWD_UNARY = 1.5
# training BatchNorm reads its input twice (batch statistics, then normalise) and its backward
# makes a reduction pass (dy, x) and an element pass (dy, x -> dx): 3 and 5 activation passes
# against inference's 2 (nbytes = input + output)
_BN_FWD_TRAIN, _BN_BWD = 1.5, 2.5
# share of a 16-bit NCHW convolution's input + output that cuDNN transposes to NHWC (it has
# native NCHW tensor-core kernels for many shapes): 1/4 puts timm's ResNet-50-like nets ~15 %
# slower in NCHW than channels_last at large batch, as timm measures (RTX 3090, torch 2.4:
# median 1.14 for resnets, 1.17 EfficientNets, 1.01 ViTs)
_NCHW_SHARE = 0.25


def _ew_arity(cfg) -> str:
    """'add2'/'mul2' (two operands of the output's size), 'add1'/'mul1' (one), or ''."""
    t = cfg.type
    kind = "add" if t in ("add", "sub", "rsub") else "mul" if t in ("mul", "div",
                                                                    "true_divide") else ""
    if not kind or not cfg.output_shapes:
        return ""
    out = math.prod(cfg.output_shapes[0])
    full = sum(1 for s in cfg.input_shapes if math.prod(s) == out)
    return f"{kind}{2 if full >= 2 else 1}"


def family_of(type_name: str) -> str | None:
    fn = FEATURE_REGISTRY.get(type_name)
    return None if fn is None else _FAMILY.get(fn.__name__, "ew")


@dataclass
class LoweredWorkload:
    """Host event counts and GPU kernel entries of one workload."""

    host: np.ndarray                 # len(HOST_FEATURES)
    cls: np.ndarray                  # int, per GPU entry
    flops: np.ndarray                # per entry (per call of the entry's kernels, x mult)
    bytes: np.ndarray
    kern: np.ndarray                 # kernels per entry
    par: np.ndarray                  # FLOPs per kernel of matmul-like entries (0: exempt)
    conv_kern: np.ndarray            # of which convolution kernels (cuDNN extra time)
    mult: np.ndarray                 # calls of the entry per workload call
    layer: np.ndarray                # index of the workload layer (-1: optimizer)
    ndim: np.ndarray                 # output width N (features, channels) of GEMM/conv entries
                                     # whose tiles quantise it (0: none): forward and dX kernels
    unknown: list = field(default_factory=list)   # layer types lowered by the fallback
    layer_host: np.ndarray | None = None           # per layer: host counts (n_layers x H)
    fp16: bool = False                             # fp16 autocast: 16-bit classes at fp16 peak


class _Acc:
    def __init__(self, n_layers: int):
        self.rows: list = []
        self.host = np.zeros(len(HOST_FEATURES))
        self.layer_host = np.zeros((n_layers, len(HOST_FEATURES)))

    def gpu(self, li, mult, cls, flops, nbytes, kern=1, conv=0, par=0.0, ndim=0.0):
        """``par`` truthy: a matmul-like kernel group whose throughput ramps up with its
        FLOPs per kernel (partial waves); stored as FLOPs per kernel.  ``ndim``: the output
        width of its GEMMs (Linear/matmul features, conv channels; 0: none), for the physics
        model's tile quantisation."""
        if mult > 0 and kern > 0:
            self.rows.append((C[cls], float(flops), float(nbytes), float(kern), float(conv),
                              float(mult), li, float(flops) / kern if par else 0.0,
                              float(ndim)))

    def h(self, li, name, n):
        j = HOST_FEATURES.index(name)
        self.host[j] += n
        if li >= 0:
            self.layer_host[li, j] += n


def _feat(cfg) -> dict:
    try:
        return layer_features(cfg)
    except Exception:
        return {}


def _nbytes(f: dict, cfg, db: int) -> float:
    b = f.get("bytes_read", 0) + f.get("bytes_written", 0)
    if b:
        return float(b)
    n = sum(math.prod(s) for s in cfg.input_shapes) + sum(math.prod(s) for s in cfg.output_shapes)
    return float(n * db)


def _out_bytes(cfg, db: int) -> float:
    return float(sum(math.prod(s) for s in cfg.output_shapes) * db)


def _in_bytes(cfg, db: int) -> float:
    return float(sum(math.prod(s) for s in cfg.input_shapes) * db)


def _prefixed(names, prefixes) -> float:
    """Share of a config's calls made under one of ``prefixes`` (module paths)."""
    if not prefixes or not names:
        return 0.0
    hit = sum(1 for n in names if any(n == p or n.startswith(p + ".") or n.startswith(p + ":")
                                      for p in prefixes))
    return hit / len(names)


def lower(w: Workload) -> LoweredWorkload:
    """Count host events and GPU kernels of one call of ``w`` (see module docstring)."""
    train = w.mode in ("train_step", "forward_backward")
    lowp = w.dtype in ("bf16", "fp16")
    acc = _Acc(len(w.layers))
    fams = [family_of(x.config.type) if x.supported else None for x in w.layers]
    in_fp32, out_fp32 = autocast_flow(w.layers, fams, w.batch) if lowp else (None, None)
    nchw = getattr(w, "memory_format", "contiguous") != "channels_last"
    unknown = []
    for li, wl in enumerate(w.layers):
        cfg, n = wl.config, float(wl.count)
        fam = family_of(cfg.type) if wl.supported else None
        if fam is None:
            fam = "unknown"
            unknown.append(cfg.type)
        if lowp and not out_fp32[li] and cfg.dtype not in ("bf16", "fp16"):
            cfg = replace(cfg, dtype=w.dtype)    # tagged fp32 by a mis-promotion upstream
        f = _feat(cfg) if fam != "unknown" else {}
        db = DTYPE_BYTES.get(cfg.dtype, 4)
        flops = float(f.get("flops", 0))
        nbytes = _nbytes(f, cfg, db)
        low = cfg.dtype in ("bf16", "fp16")
        fused_enc = _prefixed(wl.names, w.fused_encoder_prefixes)
        fused_mha = _prefixed(wl.names, w.fused_mha_prefixes)
        fused = max(fused_enc, fused_mha if fam == "mha" else 0.0)
        n_py = n * (1.0 - fused_enc)          # Python-level calls (fused ones cost no Python)
        acc.h(li, "disp", n_py)
        if train:
            acc.h(li, "disp_train", n_py)
        params = float(f.get("params", wl.module_params))

        out_el = float(sum(math.prod(s) for s in cfg.output_shapes))
        in_el = float(sum(math.prod(s) for s in cfg.input_shapes[:1]))

        def fwd(cls, fl, by, k=1, conv=0, par=0.0, nd=0.0):
            acc.gpu(li, n, cls, fl, by, k, conv, par, nd)
            acc.h(li, "kern", n * k)

        def bwd(cls, fl, by, k=1, conv=0, nodes=1, par=0.0, nd=0.0):
            if train:
                acc.gpu(li, n, cls, fl, by, k, conv, par, nd)
                acc.h(li, "kern", n * k)
                acc.h(li, "bnode", n * nodes)

        # output widths of the forward GEMM (out features / channels) and of dX (in ...)
        ch = 1 if fam == "conv" else -1
        cin_ = float(cfg.input_shapes[0][ch]) if (
            cfg.input_shapes and len(cfg.input_shapes[0]) > 1) else 0.0
        cout_ = float(cfg.output_shapes[0][ch]) if (
            cfg.output_shapes and len(cfg.output_shapes[0]) > 1) else 0.0

        def bwd_mm(cls, fl, by, conv=0):
            """dX (input-shaped output) and dW (weight-shaped output) kernels."""
            bwd(cls, fl, by, 1, conv, par=in_el, nd=cin_)
            bwd(cls, fl, by, 1, conv, nodes=0, par=in_el)

        mm = "mm_bf16" if low else "mm_fp32"
        attn = "attn_bf16" if low else "attn_fp32"
        if lowp:
            _autocast_casts(acc, li, wl, fam, low, params, in_fp32[li], train)

        if fam in ("gemm", "bgemm"):
            bias = 1 if (fam == "gemm" and cfg.hparams_dict().get("bias", True)) else 0
            if cfg.type == "addmm" and cfg.input_shapes and len(cfg.input_shapes[0]) == 1:
                fam, bias = "gemm", 1      # addmm(bias, x, W): a Linear (e.g. GPT-2's Conv1D)
            rows = out_el / max(float(cfg.output_shapes[0][-1]), 1.0) if cfg.output_shapes else 1.0
            if bias and rows > 1 and cfg.type != "Bilinear":
                # addmm with a bias vector and > 1 row takes cuBLASLt's bias epilogue
                # (gemm_and_bias), whose per-call descriptor/heuristic set-up costs host time
                acc.h(li, "lt", n)
            fwd(mm, flops, nbytes, par=out_el, nd=cout_)
            if fam == "gemm":
                bwd_mm(mm, flops, nbytes)
            else:
                bwd(mm, 2 * flops, 2 * nbytes, 2, par=out_el)
            if bias:
                bwd("mem", 0.0, _out_bytes(cfg, db), 1, nodes=0)
        elif fam == "conv":
            hp = cfg.hparams_dict()
            groups = int(hp.get("groups", 1) or 1)
            cin = int(cfg.input_shapes[0][1]) if cfg.input_shapes and len(cfg.input_shapes[0]) > 1 else 1
            grouped = groups > 1 and groups >= cin // 8
            cls = "conv_grouped" if grouped else ("conv_bf16" if low else "conv_tf32")
            bias = 1 if hp.get("bias", False) else 0
            acc.h(li, "conv", n)
            if low and nchw and not grouped:
                # fp16/bf16 tensor-core convolutions prefer NHWC: for part of the NCHW shapes
                # cuDNN transposes input and output (read + write), which channels_last avoids
                # (_NCHW_SHARE of the full passes; training: dY and dX again)
                tb = _NCHW_SHARE * 2.0 * (_in_bytes(cfg, 2) + _out_bytes(cfg, 2))
                fwd("mem", 0.0, tb, 1)
                bwd("mem", 0.0, tb, 1, nodes=0)
            fwd(cls, flops, nbytes, 1, 1, par=0.0 if grouped else out_el,
                nd=0.0 if grouped else cout_)
            if bias:
                fwd("mem", 0.0, 2 * _out_bytes(cfg, db))
            if grouped:
                bwd(cls, 2 * flops, 2 * nbytes, 2, 2)
            else:
                bwd_mm(cls, flops, nbytes, conv=1)
            if bias:
                bwd("mem", 0.0, _out_bytes(cfg, db), 1, nodes=0)
        elif fam == "bn":
            fwd("mem", flops, (_BN_FWD_TRAIN if train else 1.0) * nbytes)
            bwd("mem", flops, _BN_BWD * nbytes)
        elif fam in ("ew", "softmax"):
            fwd("mem", flops, nbytes)
            bwd("mem", flops, _EW_BWD.get(_ew_arity(cfg), _EW_BWD_UNARY) * nbytes)
        elif fam in ("ln", "gn"):
            fwd("mem", flops, nbytes)
            bwd("mem", 2 * flops, 2 * nbytes, 2)
        elif fam == "dropout":
            if f.get("training", 0) and f.get("p", 0.5) > 0:
                fwd("mem", flops, nbytes * 1.25)
                bwd("mem", flops, nbytes * 1.25)
        elif fam == "view":
            if train:
                acc.h(li, "bnode", n)
        elif fam == "copy":
            fwd("mem", 0.0, nbytes)
            bwd("mem", 0.0, nbytes)
        elif fam == "factory":
            fwd("mem", 0.0, nbytes)
        elif fam == "embedding":
            fwd("mem", 0.0, nbytes)
            if train:   # dense table gradient: zero-fill + sort/segment kernels + scatter
                table = params * 4.0
                bwd("mem", 0.0, table + 2 * _out_bytes(cfg, db), 5)
        elif fam == "mha":
            proj = float(f.get("proj_macs", 0)) * 2
            att = flops - proj
            if fused_mha:
                acc.h(li, "fused", n * fused_mha)      # one native op (C++ dispatch chain)
            if fused:
                # native _native_multi_head_attention: in-proj GEMM, qkv transform, fused
                # attention, out-proj GEMM -- launched from C++
                acc.gpu(li, n * fused, mm, proj, nbytes, 2, par=3 * out_el)
                acc.gpu(li, n * fused, attn, att, 3 * nbytes / 4, 1, par=out_el)
                acc.gpu(li, n * fused, "mem", 0.0, nbytes, 2)
                acc.h(li, "kern", n * fused * 5)
            if fused < 1:
                m = n * (1 - fused)
                acc.h(li, "mha", m)
                acc.gpu(li, m, mm, proj, nbytes, 2, par=3 * out_el)
                acc.gpu(li, m, attn, att, 3 * nbytes / 4, 1, par=out_el)
                acc.gpu(li, m, "mem", 0.0, nbytes, 2)       # q/k/v layout copies
                acc.h(li, "kern", m * 5)
                if train:
                    acc.gpu(li, m, mm, 2 * proj, 2 * nbytes, 4, par=3 * out_el)
                    acc.gpu(li, m, attn, 2.5 * att, 1.5 * nbytes, 2, par=out_el)
                    acc.gpu(li, m, "mem", 0.0, 2 * nbytes, 4)
                    acc.h(li, "kern", m * 10)
                    acc.h(li, "bnode", m * 8)
        elif fam == "sdpa":
            fwd(attn, flops, nbytes, par=out_el)
            bwd(attn, 2.5 * flops, 2 * nbytes, 2, par=out_el)
        elif fam == "rnn":
            hp = cfg.hparams_dict()
            k = 2 * int(hp.get("num_layers", 1)) * (2 if hp.get("bidirectional") else 1)
            fwd(mm, flops, nbytes, k, par=out_el)
            bwd(mm, 2 * flops, 2 * nbytes, 2 * k, par=out_el)
        elif fam == "loss":
            fwd("mem", flops, nbytes, 2)
            bwd("mem", flops, nbytes, 2)
        else:       # unknown type: one memory-bound kernel over its tensors
            fwd("mem", 0.0, nbytes)
            bwd("mem", 0.0, 1.5 * nbytes)

    if not w.isolated:
        acc.h(-1, "call", 1.0)
        acc.h(-1, "container", float(_containers(w)))
    acc.h(-1, "view", float(w.zero_cost_ops))
    if w.fused_encoder_prefixes:
        # each fused encoder layer is one Python call + one native op whose ~15 internal aten
        # calls launch the constituents' kernels above (their Python calls were removed)
        acc.h(-1, "disp", float(len(w.fused_encoder_prefixes)))
        acc.h(-1, "fused", float(len(w.fused_encoder_prefixes)))
    if train and not w.isolated:
        acc.h(-1, "step", 1.0)
    if w.mode == "train_step":
        _lower_optimizer(acc, w)
        if getattr(w, "grad_scaler", False):
            _lower_grad_scaler(acc, w)
    if w.graph:                       # a CUDA graph replays kernels with no host work
        acc.host[:] = 0.0
        acc.layer_host[:] = 0.0
    rows = np.array(acc.rows, dtype=float).reshape(-1, 9)
    return LoweredWorkload(
        host=acc.host, cls=rows[:, 0].astype(int), flops=rows[:, 1], bytes=rows[:, 2],
        kern=rows[:, 3], par=rows[:, 7], conv_kern=rows[:, 4], mult=rows[:, 5],
        layer=rows[:, 6].astype(int), ndim=rows[:, 8],
        unknown=sorted(set(unknown)), layer_host=acc.layer_host, fp16=w.dtype == "fp16")


_LOWP_FAMS = ("gemm", "bgemm", "conv", "mha", "sdpa", "rnn")


def _autocast_casts(acc, li, wl, fam, low, params, in32, train) -> None:
    """Cast kernels autocast really runs (CUDA policy): an op of the low-precision list casts
    an fp32 input (the model input, the output of an fp32-list op; inside a conv-BN-ReLU or
    Linear-GELU chain the input is already 16-bit) and its weights once per forward (the
    autocast weight cache of leaf parameters); an fp32-list op casts a 16-bit input up.  6
    bytes per element (read fp32 + write 16-bit, or the reverse); training runs each cast's
    backward (the gradient cast back)."""
    cfg, n = wl.config, float(wl.count)
    ins = _in_bytes(cfg, 2) * 3
    kb = 2 if train else 1
    if low and fam in _LOWP_FAMS:
        # host: autocast's wrapper checks every input and weight (a cache hit or a no-op
        # cast costs host time too); GPU: only real casts launch a kernel
        acc.h(li, "cast", n * (1 + (1 if params else 0)))
        if in32:
            acc.gpu(li, n, "mem", 0.0, ins * kb, kb)
            acc.h(li, "kern", n * kb)
        if params:
            mods = len({x.split(":", 1)[0] for x in wl.names}) if wl.names else n
            m = float(min(n, max(mods, 1)))
            acc.gpu(li, m, "mem", 0.0, params * 6.0 * kb, kb)
            acc.h(li, "kern", m * kb)
    elif fam in _FP32_LIST:
        acc.h(li, "cast", n)
        if not in32:
            acc.gpu(li, n, "mem", 0.0, ins * kb, kb)
            acc.h(li, "kern", n * kb)


def _torch_major(version) -> int | None:
    """Major torch version of a recorded condition ("1.13", "2.4.0+cu124"); None if unknown."""
    try:
        return int(str(version).split(".", 1)[0])
    except (TypeError, ValueError):
        return None


def _lower_grad_scaler(acc: _Acc, w: Workload) -> None:
    """torch.cuda.amp.GradScaler in an fp16 train step: scale the loss (1 kernel), unscale +
    inf/NaN check of every gradient (foreach kernels, read + write 4 B/param), the found-inf
    read before ``step`` (host waits on the GPU) and ``update`` (1 kernel)."""
    numels = np.asarray(w.param_numels, dtype=float)
    nt = float(len(numels))
    if nt == 0:
        return
    chunks = float(np.ceil(numels / _CHUNK).sum())
    launches = max(math.ceil(nt / _FOREACH_TENSORS), math.ceil(chunks / _FOREACH_CHUNKS))
    acc.h(-1, "opt_tensor", nt)
    acc.h(-1, "opt_op", 3.0)
    acc.h(-1, "opt_launch", float(launches + 2))
    acc.gpu(-1, 1.0, "mem", 0.0, 8.0 * float(numels.sum()), launches)
    acc.gpu(-1, 1.0, "mem", 0.0, 0.0, 2)


def _containers(w: Workload) -> int:
    """Non-leaf modules whose ``__call__`` runs per forward: the proper ancestors of every
    recorded module path (``"layer1.0.conv1"`` -> ``layer1``, ``layer1.0``), fused fast-path
    interiors excluded.  (A ``ModuleList`` is counted though it is never called.)"""
    seen = set()
    for wl in w.layers:
        for name in wl.names:
            path = name.split(":", 1)[0] if ":" in name else name.rsplit(".", 1)[0] \
                if "." in name else ""
            parts = path.split(".") if path else []
            for i in range(1, len(parts) + 1):
                seen.add(".".join(parts[:i]))
    for p in w.fused_encoder_prefixes:
        seen = {s for s in seen if not s.startswith(p + ".")}
    return len(seen)


def _lower_optimizer(acc: _Acc, w: Workload) -> None:
    opt = w.optimizer or "sgd"
    if opt not in _OPT:
        raise ValueError(f"unknown optimizer {opt!r}; accepted: {', '.join(_OPT)}")
    ops, per_param = _OPT[opt]
    numels = np.asarray(w.param_numels, dtype=float)
    nt = float(len(numels))
    if nt == 0:
        return
    if _torch_major(getattr(w, "torch_version", None)) == 1:
        # torch 1.x optimizers default to the per-tensor loop: every (op, tensor) pair is one
        # Python-level aten call and one kernel (SGD-momentum 3 ops, 32 B/param as foreach)
        n = float(_LOOP_OPS.get(opt, ops) * nt)
        acc.h(-1, "disp", n)
        acc.h(-1, "kern", n)
        acc.gpu(-1, 1.0, "mem", 0.0, per_param * float(numels.sum()), n)
        return
    chunks = float(np.ceil(numels / _CHUNK).sum())
    launches = max(math.ceil(nt / _FOREACH_TENSORS), math.ceil(chunks / _FOREACH_CHUNKS))
    acc.h(-1, "opt_tensor", nt)
    acc.h(-1, "opt_op", float(ops))
    acc.h(-1, "opt_launch", float(ops * launches))
    acc.gpu(-1, 1.0, "mem", 0.0, per_param * float(numels.sum()), ops * launches)
