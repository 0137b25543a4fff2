"""Capture the distinct layer configurations a model executes in one forward pass.

``capture(model, inputs)`` runs one forward (under ``torch.no_grad()``, ``meta`` tensors
welcome) and records

* every call of a *leaf* module (no children) and of an *atomic* module (a type whose cost
  is modelled as one unit: ``MultiheadAttention`` and every module type present in
  :data:`profiling.features.FEATURE_REGISTRY`; calls of their children are not recorded);
* every *functional* op that runs outside any leaf/atomic module (``F.relu``, residual
  ``+``, ``torch.matmul``, ``F.scaled_dot_product_attention``, ``torch.cat`` ...), seen
  through a :class:`torch.overrides.TorchFunctionMode` and named ``"<parent.path>:<op>"``
  (the root module is ``(root)``).

Pure view / metadata ops (``view``, ``reshape``, ``permute``, ``transpose``, ``size``,
``x.shape``, ``__getitem__``, ``chunk``, a ``contiguous()``/``.to()`` that returns its
input, ...) launch no kernel: they are counted in :attr:`Capture.zero_cost_ops` and are
neither layers nor unsupported.

Calls are deduplicated into :class:`LayerConfig` objects (type, hyper-parameters, input and
output shapes, compute dtype) with a call count, in first-seen order.

Compute dtype (``LayerConfig.dtype``):

* ``dtype="fp32"``: no autocast; the real dtype of the op (first floating input, else first
  floating output), i.e. ``"fp32"`` for an fp32 model.
* ``dtype="bf16"`` / ``"fp16"``: the usual mixed precision, ``torch.autocast`` around the
  forward of an fp32 model. Predictions target CUDA GPUs, so the *CUDA autocast policy* is
  applied by a rule table on every device (autocast itself is only switched on when the
  inputs are on a CUDA device; ``meta`` has no autocast and CPU autocast uses a different
  policy): matmul-like ops (Linear, Conv*, matmul/bmm/mm/addmm/baddbmm/einsum, sdpa,
  MultiheadAttention, LSTM/GRU, PReLU) run in the low-precision dtype; LayerNorm, GroupNorm,
  softmax/log_softmax, sum/prod/cumsum, exp/log/pow/rsqrt, losses run in fp32; everything
  else runs in the widest dtype of its floating inputs (type promotion), tracked through
  the forward (so a ReLU after a bf16 Linear is bf16, a residual add of bf16 tensors is bf16,
  BatchNorm after a bf16 conv is bf16, and an op mixing a bf16 activation with an fp32
  parameter is fp32).

Speed on ``meta`` (what ``predictor.predict`` uses): torch runs many meta kernels as Python
decompositions (BatchNorm ~0.5-1 ms a call). During a capture whose inputs are on ``meta``,
exact torch leaf types with a closed-form output (BatchNorm*, InstanceNorm*, LayerNorm,
GroupNorm, Linear, Conv1d-3d, AdaptiveAvgPool*, Dropout, common activations) get a
temporary instance ``forward`` that returns ``torch.empty(out_shape, dtype, device="meta")``
(or the input itself, where the real forward returns it), and a few functional ops outside
leaves (same-shape add/sub/mul/div, relu/gelu/silu/sigmoid/tanh) are answered the same way.
Each rule applies only to a plain contiguous floating meta input with matching parameters
and no error case of the real op; otherwise the real forward runs. The recorded configs are
identical either way (``_FAST_PATH = False`` switches it off). Forwards and hooks are
restored in ``finally``.
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from .errors import ExanteError

__all__ = [
    "LayerConfig",
    "CapturedLayer",
    "Capture",
    "capture",
    "module_type_name",
    "module_hparams",
    "dtype_name",
    "ROOT_NAME",
    "MetaTruthMode",
]

ROOT_NAME = "(root)"

# --------------------------------------------------------------------------------------
# data classes


def _canon_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class LayerConfig:
    """One distinct layer execution: the dedup key of the profiler and the datasets.

    ``hparams`` is a sorted tuple of ``(name, value)`` pairs with JSON-serialisable values
    (tuples for sequences); ``input_shapes`` holds the shapes of the tensor arguments in call
    order (positional, then keyword; ``None`` arguments skipped; tensors inside lists such as
    ``torch.cat([a, b])`` flattened); ``output_shapes`` the shapes of the tensor outputs.
    """

    type: str
    hparams: tuple
    input_shapes: tuple
    output_shapes: tuple
    dtype: str

    @property
    def batch(self) -> int:
        """First dim of the first input (1 if there is no input or it is a scalar)."""
        if self.input_shapes and len(self.input_shapes[0]) > 0:
            return int(self.input_shapes[0][0])
        return 1

    def hparams_dict(self) -> dict:
        return dict(self.hparams)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists when serialised)."""
        return {
            "type": self.type,
            "hparams": self.hparams_dict(),
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shapes": [list(s) for s in self.output_shapes],
            "dtype": self.dtype,
        }

    def key(self) -> str:
        """Stable 16-hex-digit key: sha1 of the canonical JSON of all fields.

        Independent of the process, the Python hash seed and dict order.
        """
        payload = _canon_json(
            [self.type, [[k, v] for k, v in self.hparams], self.input_shapes,
             self.output_shapes, self.dtype]
        )
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class CapturedLayer:
    config: LayerConfig
    count: int                      # calls per model forward
    names: list                     # module paths ("layer1.0.conv1") or "<parent>:<op>"
    module: nn.Module | None        # one instance (for replay); None for functional ops
    supported: bool                 # FEATURE_REGISTRY has a function for config.type

    @property
    def functional(self) -> bool:
        return self.module is None


@dataclass
class Capture:
    layers: list                    # distinct CapturedLayer, first-seen order
    unsupported: list               # the subset with supported == False
    total_calls: int                # recorded layer calls (modules + functional ops) per forward
    mode_restored: bool             # training flags of every submodule restored
    zero_cost_ops: dict = field(default_factory=dict)   # view/metadata op name -> calls
    dtype: str = "fp32"             # requested precision ("fp32" | "bf16" | "fp16")

    def counts(self) -> dict:
        """config key -> calls per forward (the dataset's ``layer_counts``)."""
        out: dict = {}
        for layer in self.layers:
            k = layer.config.key()
            out[k] = out.get(k, 0) + layer.count
        return out


# --------------------------------------------------------------------------------------
# dtype helpers

_DTYPE_NAMES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float64: "fp64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
    torch.complex64: "c64",
    torch.complex128: "c128",
}
_FLOAT_NAMES = {"fp32", "bf16", "fp16", "fp64"}
_FLOAT_RANK = {"bf16": 1, "fp16": 1, "fp32": 2, "fp64": 3}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_name(dt: torch.dtype) -> str:
    """``torch.float32`` -> ``"fp32"``, ``torch.bfloat16`` -> ``"bf16"``, ..."""
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = str(dt).replace("torch.", "")
    return name


# CUDA autocast policy (torch/csrc/autocast_mode.cpp), by LayerConfig.type
LOWP_TYPES = frozenset({
    "Linear", "NonDynamicallyQuantizableLinear", "LazyLinear", "Bilinear",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LazyConv1d", "LazyConv2d", "LazyConv3d", "MultiheadAttention", "PReLU",
    "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell",
    "F.linear", "F.bilinear", "F.conv1d", "F.conv2d", "F.conv3d", "F.conv_transpose1d",
    "F.conv_transpose2d", "F.conv_transpose3d", "F.prelu", "matmul", "mm", "bmm", "mv",
    "addmm", "addmv", "addbmm", "baddbmm", "einsum", "sdpa", "chain_matmul",
})
FP32_TYPES = frozenset({
    "LayerNorm", "GroupNorm", "Softmax", "LogSoftmax", "Softmin", "Softplus",
    "F.layer_norm", "F.group_norm", "F.softplus", "F.normalize", "F.cosine_similarity",
    "softmax", "log_softmax", "softmin", "sum", "prod", "cumsum", "cumprod", "logsumexp",
    "exp", "expm1", "log", "log2", "log10", "log1p", "pow", "rsqrt", "reciprocal", "norm",
    "cdist", "dist", "acos", "asin", "cosh", "sinh", "tan", "erfinv",
    "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss",
    "SmoothL1Loss", "HuberLoss", "KLDivLoss", "CosineSimilarity",
    "F.mse_loss", "F.l1_loss", "F.cross_entropy", "F.nll_loss", "F.kl_div",
    "F.binary_cross_entropy_with_logits", "F.smooth_l1_loss", "F.huber_loss",
})

_TAG = "_exante_vdtype"      # virtual (autocast-emulated) dtype tag on intermediate tensors


def _vdtype(t: torch.Tensor) -> str:
    tag = t.__dict__.get(_TAG) if hasattr(t, "__dict__") else None
    return tag if tag is not None else dtype_name(t.dtype)


def _promote(names: Iterable[str]) -> str | None:
    best = None
    for n in names:
        if n not in _FLOAT_NAMES:
            continue
        if best is None:
            best = n
        elif n != best:
            rb, rn = _FLOAT_RANK[best], _FLOAT_RANK[n]
            if rn > rb:
                best = n
            elif rn == rb:          # bf16 with fp16 -> fp32
                best = "fp32"
    return best


# --------------------------------------------------------------------------------------
# module types and hyper-parameters

_TYPE_CACHE: dict = {}


def _registry() -> dict:
    from .features import FEATURE_REGISTRY  # lazy: features imports this module

    return FEATURE_REGISTRY


def module_type_name(module_or_cls) -> str:
    """``LayerConfig.type`` of a module.

    Torch classes: the class name. A user subclass that keeps a torch layer's ``forward``
    gets that layer's name (``class MyConv(nn.Conv2d)`` -> ``"Conv2d"``); a user class with
    its own ``forward`` keeps its class name, qualified by its module when the bare name
    would collide with a registered torch layer type.
    """
    cls = module_or_cls if isinstance(module_or_cls, type) else type(module_or_cls)
    name = _TYPE_CACHE.get(cls)
    if name is not None:
        return name
    if cls.__module__.startswith("torch."):
        name = cls.__name__
    else:
        name = None
        fwd = getattr(cls, "forward", None)
        for base in cls.__mro__[1:]:
            if base is nn.Module or not base.__module__.startswith("torch."):
                continue
            if getattr(base, "forward", None) is fwd:
                name = base.__name__
                break
        if name is None:
            name = cls.__name__
            if name in _registry():
                name = f"{cls.__module__}.{cls.__qualname__}"
    _TYPE_CACHE[cls] = name
    return name


# fields that do not change the cost of a layer (kept out of the dedup key)
_SKIP_FIELDS = frozenset({"training", "inplace", "eps", "momentum", "dump_patches",
                          "call_super_init", "_version"})
_MODE_DEPENDENT = ("BatchNorm", "SyncBatchNorm", "InstanceNorm", "Dropout", "AlphaDropout",
                   "FeatureAlphaDropout", "MultiheadAttention", "LSTM", "GRU", "RNN")


def _canon_value(v: Any, depth: int = 0):
    """A JSON-serialisable, hashable version of a simple hyper-parameter value, or a
    sentinel ``_NOPE`` when the value is not simple (tensor, module, callable ...)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, torch.dtype):
        return dtype_name(v)
    if isinstance(v, (tuple, list, torch.Size)) and depth < 3:
        out = tuple(_canon_value(x, depth + 1) for x in v)
        return _NOPE if any(x is _NOPE for x in out) else out
    return _NOPE


_NOPE = object()


def module_hparams(module: nn.Module) -> tuple:
    """Sorted ``(name, value)`` pairs describing a module's cost-relevant hyper-parameters.

    Torch layers keep their constructor arguments as public attributes (``in_features``,
    ``kernel_size``, ``stride``, ``groups``, ``num_heads`` ...): every public attribute with
    a simple value (number, bool, str, None, tuple of those) is taken, minus fields that do
    not change the cost (``eps``, ``momentum``, ``inplace``). Presence of optional
    parameters is added as booleans (``bias``; for MultiheadAttention ``bias`` and
    ``add_bias_kv``), and ``training`` for layers whose cost depends on the mode
    (BatchNorm, InstanceNorm, Dropout, MultiheadAttention, RNNs). Types without a feature
    function also get ``param_shapes`` (their direct parameters and buffers).
    """
    tname = module_type_name(module)
    hp: dict = {}
    for k, v in vars(module).items():
        if k[:1] == "_" or k in _SKIP_FIELDS:
            continue
        tv = type(v)
        if tv is int or tv is bool or tv is str or v is None \
                or (tv is tuple and all(type(e) is int for e in v)):
            hp[k] = v                   # already canonical (what _canon_value returns)
            continue
        cv = _canon_value(v)
        if cv is not _NOPE:
            hp[k] = cv
    params = module._parameters
    if "bias" in params:
        hp["bias"] = params["bias"] is not None
    if "in_proj_bias" in params:                        # MultiheadAttention
        hp["bias"] = params["in_proj_bias"] is not None
        hp["add_bias_kv"] = params.get("bias_k") is not None
    if tname.startswith(_MODE_DEPENDENT):
        hp["training"] = bool(module.training)
    if tname not in _registry():
        shapes = [(n, tuple(int(d) for d in p.shape)) for n, p in params.items() if p is not None]
        shapes += [(n, tuple(int(d) for d in b.shape)) for n, b in module._buffers.items()
                   if b is not None]
        if shapes:
            hp["param_shapes"] = tuple(shapes)
    return tuple(sorted(hp.items()))


# --------------------------------------------------------------------------------------
# functional op classification

_VIEW, _META, _CAST, _OP = 0, 1, 2, 3

_VIEW_OPS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "permute", "transpose", "t", "unsqueeze",
    "squeeze", "expand", "expand_as", "getitem", "chunk", "split", "split_with_sizes",
    "tensor_split", "hsplit", "vsplit", "dsplit", "unbind", "narrow", "select", "as_strided",
    "unflatten", "movedim", "moveaxis", "swapaxes", "swapdims", "detach", "alias", "diagonal",
    "real", "imag", "view_as_real", "view_as_complex", "broadcast_to", "broadcast_tensors",
    "atleast_1d", "atleast_2d", "atleast_3d", "T", "mT", "H", "mH", "unfold_view",
    "squeeze_", "unsqueeze_", "transpose_", "t_", "detach_", "resolve_conj", "resolve_neg",
    "meshgrid",
})
_META_OPS = frozenset({
    "size", "dim", "numel", "nelement", "ndimension", "stride", "storage_offset",
    "is_contiguous", "is_floating_point", "is_complex", "is_signed", "element_size",
    "data_ptr", "get_device", "untyped_storage", "storage", "tolist", "item", "has_names",
    "is_nonzero", "is_same_size", "is_set_to", "requires_grad_", "retain_grad", "dim_order",
    "is_inference", "_is_view", "numpy", "len", "iter", "bool", "format", "repr", "hash",
    "reduce_ex", "contains", "index", "int_", "float_", "complex_", "array", "deepcopy",
    "reversed", "dir", "setstate", "reduce", "nonzero_static_meta", "is_pinned", "is_shared",
    "register_hook", "backward", "record_stream", "share_memory_", "rename", "refine_names",
    "align_to", "is_coalesced", "dense_dim", "sparse_dim",
})
# ops that may return their input unchanged (then: zero cost); otherwise a copy kernel
_CAST_OPS = frozenset({
    "contiguous", "to", "float", "half", "bfloat16", "double", "int", "long", "short",
    "bool", "byte", "char", "type", "type_as", "cpu", "cuda", "dropout", "dropout1d",
    "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
})
_DUNDER = {
    "add": "add", "radd": "add", "iadd": "add", "sub": "sub", "rsub": "sub", "isub": "sub",
    "mul": "mul", "rmul": "mul", "imul": "mul", "truediv": "div", "rtruediv": "div",
    "itruediv": "div", "div": "div", "rdiv": "div", "idiv": "div", "floordiv": "floor_divide",
    "rfloordiv": "floor_divide", "ifloordiv": "floor_divide", "matmul": "matmul",
    "rmatmul": "matmul", "imatmul": "matmul", "pow": "pow", "rpow": "pow", "ipow": "pow",
    "mod": "remainder", "rmod": "remainder", "imod": "remainder", "neg": "neg", "pos": "positive",
    "abs": "abs", "invert": "bitwise_not", "and": "bitwise_and", "rand": "bitwise_and",
    "iand": "bitwise_and", "or": "bitwise_or", "ror": "bitwise_or", "ior": "bitwise_or",
    "xor": "bitwise_xor", "rxor": "bitwise_xor", "ixor": "bitwise_xor",
    "lshift": "bitwise_left_shift", "rlshift": "bitwise_left_shift",
    "ilshift": "bitwise_left_shift", "rshift": "bitwise_right_shift",
    "rrshift": "bitwise_right_shift", "irshift": "bitwise_right_shift",
    "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge",
    "getitem": "getitem", "setitem": "setitem", "int": "int_", "float": "float_",
    "complex": "complex_",
}
_INPLACE_DUNDER = frozenset({k for k in _DUNDER if k.startswith("i") and k not in ("int", "invert")})
_INPLACE_DUNDER = _INPLACE_DUNDER | {"setitem"}

_F_PREFIXED = frozenset({
    # activations
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
    "leaky_relu", "elu", "selu", "celu", "mish", "softplus", "hardtanh", "glu", "logsigmoid",
    "softsign", "tanhshrink", "prelu", "threshold", "hardshrink", "softshrink", "rrelu",
    # module equivalents
    "linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "layer_norm", "group_norm", "batch_norm",
    "instance_norm", "rms_norm", "local_response_norm", "max_pool1d", "max_pool2d",
    "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "embedding", "embedding_bag",
    "interpolate", "upsample", "pad", "normalize", "pixel_shuffle", "pixel_unshuffle",
    "one_hot", "cosine_similarity", "multi_head_attention_forward", "grid_sample", "fold",
    "unfold",
    "cross_entropy", "mse_loss", "l1_loss", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "smooth_l1_loss", "huber_loss", "kl_div",
})
_RENAME = {"scaled_dot_product_attention": "sdpa", "log_sigmoid": "logsigmoid",
           "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub",
           "clip": "clamp", "concat": "cat", "concatenate": "cat", "absolute": "abs",
           "negative": "neg", "greater": "gt", "less": "lt", "matrix_power": "matrix_power"}

_FUNC_CACHE: dict = {}


def _classify(func) -> tuple:
    """(kind, canonical op name, inplace) for a function seen by the TorchFunctionMode."""
    try:
        hit = _FUNC_CACHE.get(func)
    except TypeError:          # unhashable callable
        hit = None
    if hit is not None:
        return hit
    raw = getattr(func, "__name__", None) or type(func).__name__
    inplace = False
    if raw in ("__get__", "__set__", "__delete__"):          # property access
        owner = getattr(func, "__self__", None)
        pname = getattr(owner, "__name__", "attr")
        res = (_VIEW if pname in _VIEW_OPS else _META, pname, False)
    else:
        if raw.startswith("__") and raw.endswith("__"):
            core = raw[2:-2]
            name = _DUNDER.get(core, core)
            inplace = core in _INPLACE_DUNDER
        else:
            name = raw
            if name.endswith("_") and not name.startswith("_") and name not in _VIEW_OPS \
                    and name not in _META_OPS:
                name = name[:-1]
                inplace = True
            name = name.lstrip("_") or raw
        name = _RENAME.get(name, name)
        if func is torch.Tensor.unfold:
            name = "unfold_view"
        if name in _VIEW_OPS or raw in _VIEW_OPS:
            kind = _VIEW
        elif name in _META_OPS or raw in _META_OPS:
            kind = _META
        elif name in _CAST_OPS and not inplace:
            kind = _CAST
        else:
            kind = _OP
        if kind in (_OP, _CAST) and name in _F_PREFIXED:
            name = "F." + name
        res = (kind, name, inplace)
    try:
        _FUNC_CACHE[func] = res
    except TypeError:
        pass
    return res


_ELEMENTWISE_SCALAR_OPS = frozenset({
    "add", "sub", "mul", "div", "pow", "remainder", "floor_divide", "fmod", "maximum",
    "minimum", "eq", "ne", "lt", "le", "gt", "ge", "clamp", "masked_fill", "where", "lerp",
    "addcmul", "addcdiv", "bitwise_and", "bitwise_or", "bitwise_xor", "fill", "rsub",
})


def _tensors(obj, out: list) -> None:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _tensors(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _tensors(x, out)


def _has_tensor(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(x) for x in obj)
    return False


def _op_hparams(name: str, args: tuple, kwargs: dict) -> tuple:
    """Non-tensor arguments of a functional op as ``argN`` / keyword pairs.

    Scalar operands of elementwise ops are recorded by type ("float"/"int"), not value, so
    ``x * 0.5`` and ``x * 0.125`` share one config.
    """
    scalar_by_type = name in _ELEMENTWISE_SCALAR_OPS
    hp = []
    for i, a in enumerate(args):
        if a is None or isinstance(a, torch.Tensor):
            continue
        if isinstance(a, (list, tuple)) and a and all(isinstance(x, torch.Tensor) for x in a):
            continue
        if scalar_by_type and isinstance(a, (int, float)) and not isinstance(a, bool):
            hp.append((f"arg{i}", type(a).__name__))
            continue
        cv = _canon_value(a)
        hp.append((f"arg{i}", cv if cv is not _NOPE else type(a).__name__))
    for k, a in kwargs.items():
        if a is None or isinstance(a, (torch.Tensor, torch.device)) or k.startswith("_") \
                or k in ("device", "out", "pin_memory"):
            continue
        if scalar_by_type and isinstance(a, (int, float)) and not isinstance(a, bool):
            hp.append((k, type(a).__name__))
            continue
        cv = _canon_value(a)
        hp.append((k, cv if cv is not _NOPE else type(a).__name__))
    return tuple(sorted(hp, key=lambda kv: kv[0]))


# --------------------------------------------------------------------------------------
# meta fast path: shape rules instead of running a leaf's forward
#
# On ``meta`` many ops run Python decompositions (BatchNorm ~0.5-1 ms a call, LayerNorm,
# GroupNorm, GELU, Linear with bias, elementwise ops ~0.1-0.3 ms). For a few exact torch
# module types whose output is fully determined by the input shape and dtype, the capture
# replaces ``forward`` (for the duration of the capture only) by a shape rule that returns
# ``torch.empty(out_shape, dtype=..., device="meta")`` -- or the input itself where the
# real forward returns its input (in-place activations and dropout). A rule only applies
# under narrow conditions (a plain contiguous non-empty floating meta input, parameters and
# buffers on meta with the input's dtype and the expected shapes, no error case of the real
# forward); anything else runs the real forward. Outputs then have the same shape, dtype and
# (contiguous) strides as the real ones, so the recorded configs are identical
# (``tests/test_capture.py`` checks this with the fast path on and off).

_FAST_PATH = True               # switch (tests compare the results with it off)
_FAST_FLOATS = frozenset({torch.float32, torch.bfloat16, torch.float16, torch.float64})
_META_DEV = torch.device("meta")
_NoTorchFunction = torch._C.DisableTorchFunction
_PLAIN_TENSORS = frozenset({torch.Tensor, nn.Parameter})     # no own __torch_function__
_empty = torch.empty


def _all_plain(ts: list) -> bool:
    for t in ts:
        if type(t) not in _PLAIN_TENSORS:
            return False
    return True


def _fast_input(args: tuple, kwargs: dict):
    """The single plain tensor argument a rule can handle, else None (the caller holds
    ``DisableTorchFunction``)."""
    if kwargs or len(args) != 1:
        return None
    x = args[0]
    if type(x) is not torch.Tensor or not x.is_meta or x.dtype not in _FAST_FLOATS \
            or not x.is_contiguous() or x.numel() == 0:
        return None
    return x


def _state_ok(mod: nn.Module, dt, shape) -> bool:
    """Parameters and floating buffers on meta with dtype ``dt`` (and shape ``shape`` when
    given); other buffers on meta."""
    for p in mod._parameters.values():
        if p is not None and (type(p) not in _PLAIN_TENSORS or not p.is_meta
                              or p.dtype is not dt or (shape is not None and p.shape != shape)):
            return False
    for b in mod._buffers.values():
        if b is None:
            continue
        if type(b) is not torch.Tensor or not b.is_meta:
            return False
        if b.is_floating_point() and (b.dtype is not dt or (shape is not None
                                                             and b.shape != shape)):
            return False
    return True


def _same(x):
    return _empty(x.shape, dtype=x.dtype, device=_META_DEV)


_BN_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _rule_batchnorm(mod, x):
    if x.dim() not in _BN_DIMS[type(mod)]:
        return None
    c = x.shape[1]
    if c != mod.num_features or not _state_ok(mod, x.dtype, (c,)):
        return None
    if mod.training or (mod.running_mean is None and mod.running_var is None):
        if mod.training and mod.momentum is None and mod.track_running_stats:
            return None                 # float(num_batches_tracked): fails on meta
        s = x.shape
        n = s[0]
        for d in s[2:]:
            n *= d
        if n == 1:
            return None                 # "Expected more than 1 value per channel"
    return _same(x)


_IN_DIMS = {nn.InstanceNorm1d: 3, nn.InstanceNorm2d: 4, nn.InstanceNorm3d: 5}


def _rule_instancenorm(mod, x):
    if x.dim() != _IN_DIMS[type(mod)]:
        return None
    s = x.shape
    if s[1] != mod.num_features or not _state_ok(mod, x.dtype, (s[1],)):
        return None
    n = 1
    for d in s[2:]:
        n *= d
    return None if n == 1 else _same(x)


def _rule_layernorm(mod, x):
    ns = mod.normalized_shape
    k = len(ns)
    if k == 0 or x.dim() < k or tuple(x.shape[-k:]) != tuple(ns) \
            or not _state_ok(mod, x.dtype, tuple(ns)):
        return None
    return _same(x)


def _rule_groupnorm(mod, x):
    if x.dim() < 2:
        return None
    s = x.shape
    c, g = s[1], mod.num_groups
    if c != mod.num_channels or g <= 0 or c % g or not _state_ok(mod, x.dtype, (c,)):
        return None
    n = s[0] * c // g
    for d in s[2:]:
        n *= d
    return None if n == 1 else _same(x)


def _rule_activation(mod, x):
    if mod._parameters or mod._buffers:
        return None
    d = mod.__dict__
    if "approximate" in d and d["approximate"] not in ("none", "tanh"):      # GELU
        return None
    if "min_val" in d and not d["min_val"] <= d["max_val"]:                 # Hardtanh, ReLU6
        return None
    if mod.__dict__.get("inplace") is True:
        return x                        # the real in-place forward returns its input
    return _same(x)


def _rule_dropout(mod, x):
    p = mod.p
    if type(p) not in (float, int) or not 0.0 < p < 1.0 or not mod.training \
            or mod._parameters or mod._buffers:
        return None
    return x if mod.inplace is True else _same(x)


def _rule_linear(mod, x):
    w = mod._parameters.get("weight")
    if w is None or w.dim() != 2 or len(mod._parameters) != 2 or mod._buffers or x.dim() < 1:
        return None
    out_f, in_f = w.shape
    if x.shape[-1] != in_f or not _state_ok(mod, x.dtype, None):
        return None
    b = mod._parameters.get("bias")
    if b is not None and tuple(b.shape) != (out_f,):
        return None
    return _empty(x.shape[:-1] + (out_f,), dtype=x.dtype, device=_META_DEV)


_AAP_DIMS = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}


def _rule_adaptive_avg_pool(mod, x):
    n = _AAP_DIMS[type(mod)]
    nd = x.dim()
    if nd != n + 1 and nd != n + 2:
        return None
    o = mod.output_size
    s = tuple(x.shape)
    if type(o) is int:
        out = (o,) * n
    elif type(o) is tuple and len(o) == n and (n > 1 or o[0] is not None):
        out = tuple(s[nd - n + i] if v is None else v for i, v in enumerate(o))
    else:
        return None
    if any(type(v) is not int or v < 1 for v in out):
        return None
    return _empty(s[:nd - n] + out, dtype=x.dtype, device=_META_DEV)


_CONV_N = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def _int_tuple(v, n: int) -> bool:
    return type(v) is tuple and len(v) == n and all(type(e) is int for e in v)


def _rule_conv(mod, x):
    n = _CONV_N[type(mod)]
    w = mod._parameters.get("weight")
    if mod.padding_mode != "zeros" or w is None or w.dim() != n + 2 \
            or len(mod._parameters) != 2 or mod._buffers:
        return None
    nd = x.dim()
    if nd != n + 2 and nd != n + 1:
        return None
    s = tuple(x.shape)
    out_c, cin_g = w.shape[0], w.shape[1]
    g = mod.groups
    if type(g) is not int or g < 1 or s[nd - n - 1] != cin_g * g or out_c % g:
        return None
    stride, dil, pad = mod.stride, mod.dilation, mod.padding
    if not (_int_tuple(stride, n) and _int_tuple(dil, n)) or min(stride) < 1 or min(dil) < 1:
        return None
    if not _state_ok(mod, x.dtype, None):
        return None
    b = mod._parameters.get("bias")
    if b is not None and tuple(b.shape) != (out_c,):
        return None
    ks = tuple(w.shape[2:])
    if pad == "same":
        # symmetric "same" padding only (the asymmetric case pads a copy, with a warning)
        if max(stride) != 1 or any(dil[i] * (ks[i] - 1) % 2 for i in range(n)):
            return None
        pad = tuple(dil[i] * (ks[i] - 1) // 2 for i in range(n))
    elif pad == "valid":
        pad = (0,) * n
    elif not _int_tuple(pad, n) or min(pad) < 0:
        return None
    out = tuple((s[nd - n + i] + 2 * pad[i] - dil[i] * (ks[i] - 1) - 1) // stride[i] + 1
                for i in range(n))
    if min(out) < 1 or min(ks) < 1:
        return None
    return _empty(s[:nd - n - 1] + (out_c,) + out, dtype=x.dtype, device=_META_DEV)


# functional ops (seen by the TorchFunctionMode outside leaves) with a shape rule on meta:
# binary elementwise ops on two same-shape, same-dtype tensors or a tensor and a Python
# number, and a few unary activations
_T = torch.Tensor
_BINARY, _UNARY, _UNARY_INPLACE = 1, 2, 3
_FAST_FUNCS: dict = {}
for _f in (torch.add, _T.add, torch.sub, _T.sub, torch.mul, _T.mul, torch.div, _T.div,
           _T.__rsub__, _T.__rdiv__, _T.__rtruediv__):
    _FAST_FUNCS[_f] = _BINARY
for _f in (torch.relu, _T.relu, torch.sigmoid, _T.sigmoid, torch.tanh, _T.tanh,
           torch.nn.functional.gelu):
    _FAST_FUNCS[_f] = _UNARY
for _f in (torch.nn.functional.relu, torch.nn.functional.silu):
    _FAST_FUNCS[_f] = _UNARY_INPLACE
del _f, _T
_INT32 = 2 ** 31


def _fast_functional(func, args: tuple, kwargs: dict):
    """Output of a functional op from :data:`_FAST_FUNCS` by shape rule, or None (then the
    op runs)."""
    op = _FAST_FUNCS.get(func)
    if op is None or not args:
        return None
    with _NoTorchFunction():
        x = args[0]
        if type(x) is not torch.Tensor or not x.is_meta or x.dtype not in _FAST_FLOATS \
                or not x.is_contiguous() or x.numel() == 0:
            return None
        if op == _BINARY:
            if kwargs or len(args) != 2:
                return None
            y = args[1]
            ty = type(y)
            if ty is torch.Tensor:
                if not y.is_meta or y.dtype is not x.dtype or y.shape != x.shape \
                        or not y.is_contiguous():
                    return None
            elif ty is int:
                if not -_INT32 < y < _INT32:
                    return None
            elif ty is not float:
                return None
            return _empty(x.shape, dtype=x.dtype, device=_META_DEV)
        if len(args) != 1:
            return None
        inplace = False
        for k, v in kwargs.items():
            if k == "inplace" and op == _UNARY_INPLACE and type(v) is bool:
                inplace = v
            elif not (k == "approximate" and func is torch.nn.functional.gelu
                      and v in ("none", "tanh")):
                return None
        return x if inplace else _empty(x.shape, dtype=x.dtype, device=_META_DEV)


_FAST_RULES: dict = {}
for _cls in _BN_DIMS:
    _FAST_RULES[_cls] = _rule_batchnorm
for _cls in _IN_DIMS:
    _FAST_RULES[_cls] = _rule_instancenorm
for _cls in _AAP_DIMS:
    _FAST_RULES[_cls] = _rule_adaptive_avg_pool
for _cls in _CONV_N:
    _FAST_RULES[_cls] = _rule_conv
_FAST_RULES[nn.LayerNorm] = _rule_layernorm
_FAST_RULES[nn.GroupNorm] = _rule_groupnorm
_FAST_RULES[nn.Dropout] = _rule_dropout
_FAST_RULES[nn.Linear] = _rule_linear
_FAST_RULES[nn.modules.linear.NonDynamicallyQuantizableLinear] = _rule_linear
for _cls in (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
             nn.Hardsigmoid, nn.Mish, nn.LeakyReLU, nn.ELU, nn.Hardtanh):
    _FAST_RULES[_cls] = _rule_activation
del _cls


def _no_outer_modes() -> bool:
    """No dispatch mode and no torch-function mode other than a ``torch.device`` context is
    active: nothing outside the capture would miss the ops a shape rule skips."""
    if torch._C._len_torch_dispatch_stack():
        return False
    if not torch._C._len_torch_function_stack():
        return True
    try:
        from torch.overrides import _get_current_function_mode_stack
        from torch.utils._device import DeviceContext
    except ImportError:                 # pragma: no cover - other torch versions
        return False
    return all(type(m) is DeviceContext for m in _get_current_function_mode_stack())


def _fast_forward(mod: nn.Module, rule, orig):
    """A ``forward`` for ``mod`` that applies ``rule`` when it can, else calls ``orig``."""

    def forward(*args, **kwargs):
        out = None
        with _NoTorchFunction():
            x = _fast_input(args, kwargs)
            if x is not None:
                try:
                    out = rule(mod, x)
                except Exception:       # an unforeseen module state: the real forward decides
                    out = None
        if out is not None:
            return out
        return orig(*args, **kwargs)

    return forward


# --------------------------------------------------------------------------------------
# value reads on meta: a meta tensor has no data, so ``bool(t)`` / ``t.item()`` raise. Code
# written for real inputs reads a few predicates -- Hugging Face's attention-mask helpers
# ask ``mask.all()`` or ``mask.sum() == mask.numel()`` ("no padding?") to pick sdpa's
# ``is_causal`` path. During a capture on meta such a predicate reads the answer of the
# typical input (an all-ones mask, valid values): a bool scalar made by ``all`` or by
# comparing a ``sum`` with a number reads True. Any other value read on meta still raises.

_TRUTH = "_exante_truth"        # tag: the value a read of this meta bool scalar returns
_SUMTAG = "_exante_sum"         # tag: made by a ``sum`` (for ``x.sum() == n``)
_READS = frozenset({torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.is_nonzero,
                    torch.is_nonzero})


def _meta_read(func, args):
    """The typical-input answer of a value read of a tagged meta bool scalar, else None."""
    if func in _READS and args:
        t = args[0]
        if isinstance(t, torch.Tensor) and t.is_meta and t.dtype is torch.bool \
                and t.numel() == 1:
            return t.__dict__.get(_TRUTH)
    return None


def _meta_tag(name: str, args: tuple, out, tagged: list) -> None:
    """Tag the outputs of ``all`` / ``sum`` / ``sum == n`` on meta (see above)."""
    if type(out) is not torch.Tensor or not out.is_meta:
        return
    key = None
    if name == "all" and out.dtype is torch.bool and out.numel() == 1:
        key = _TRUTH
    elif name == "sum" and out.numel() == 1:
        key = _SUMTAG
    elif name == "eq" and len(args) == 2 and out.numel() == 1:
        a, b = args
        if isinstance(b, torch.Tensor):
            a, b = b, a
        if isinstance(a, torch.Tensor) and _SUMTAG in a.__dict__ and type(b) is int:
            key = _TRUTH
    if key is not None:
        out.__dict__[key] = True
        tagged.append(weakref.ref(out))


def _meta_grouped_mm(args: tuple, kwargs: dict):
    """``torch._grouped_mm`` on meta for any float dtype (torch's meta kernel accepts only
    bf16, like the CUDA kernel; the capture records the call at the model's dtype): output
    (rows, n) for 2-d x 3-d with ``offs``, (groups, m, n) for 3-d x 3-d. None otherwise."""
    if len(args) < 2:
        return None
    a, b = args[0], args[1]
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_meta
            and b.is_meta and a.is_floating_point() and a.shape[-1] == b.shape[-2]):
        return None
    dt = kwargs.get("out_dtype") or a.dtype
    if a.dim() == 2 and b.dim() == 3:
        return torch.empty(a.shape[0], b.shape[-1], dtype=dt, device=_META_DEV)
    if a.dim() == 3 and b.dim() == 3 and a.shape[0] == b.shape[0]:
        return torch.empty(a.shape[0], a.shape[1], b.shape[-1], dtype=dt, device=_META_DEV)
    return None


class MetaTruthMode(TorchFunctionMode):
    """The capture's meta value reads as a context of their own (e.g. around a
    ``FlopCounterMode`` run of the same meta model): ``all`` / ``sum == n`` predicates on
    meta read True; tags are removed on exit."""

    def __enter__(self):
        self.tagged: list = []
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            _untag(self.tagged)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        v = _meta_read(func, args)
        if v is not None:
            return v
        kind, name, _ = _classify(func)
        out = _meta_grouped_mm(args, kwargs) if name == "grouped_mm" else None
        if out is None:
            out = func(*args, **kwargs)
        if kind == _OP:
            _meta_tag(name, args, out, self.tagged)
        return out


def _untag(tagged: list) -> None:
    for r in tagged:
        t = r()
        if t is not None:
            for k in (_TAG, _TRUTH, _SUMTAG):
                t.__dict__.pop(k, None)
    tagged.clear()


# --------------------------------------------------------------------------------------
# the recorder


class _State:
    __slots__ = ("depth", "stack", "lowp", "records", "index", "zero_cost", "calls",
                 "supported", "tagged", "hp_cache", "fast", "seen", "marks", "meta")

    def __init__(self, lowp: str | None, supported: dict):
        self.depth = 0
        self.stack = [ROOT_NAME]
        self.lowp = lowp                 # "bf16" / "fp16" when emulating autocast
        self.records: list = []          # CapturedLayer, first-seen order
        self.index: dict = {}            # LayerConfig field tuple -> CapturedLayer
        self.zero_cost: Counter = Counter()
        self.calls = 0
        self.supported = supported
        self.tagged: list = []           # weakrefs of tagged tensors (cleanup)
        self.hp_cache: dict = {}
        self.fast = False                # meta fast path (shape rules) for functional ops
        self.seen = 0                    # functional calls seen outside recorded modules
        self.marks: list = []            # ``seen`` at the entry of each descended module
        self.meta = False                # inputs on meta: value reads answered (see above)

    # -- dtype --------------------------------------------------------------------------
    def compute_dtype(self, tname: str, ins: list, outs: list, inplace: bool = False) -> str:
        if self.lowp is None:
            for t in ins:
                if t.is_floating_point():
                    return dtype_name(t.dtype)
            for t in outs:
                if t.is_floating_point():
                    return dtype_name(t.dtype)
            t0 = outs[0] if outs else (ins[0] if ins else None)
            return dtype_name(t0.dtype) if t0 is not None else "fp32"
        if inplace and ins and ins[0].is_floating_point():
            return _vdtype(ins[0])          # an in-place op keeps its target's dtype
        if tname in LOWP_TYPES:
            dt = self.lowp
        elif tname in FP32_TYPES:
            dt = "fp32"
        else:
            dt = _promote(_vdtype(t) for t in ins if t.is_floating_point())
            if dt is None:
                dt = _promote(dtype_name(t.dtype) for t in outs if t.is_floating_point())
            if dt is None:
                t0 = outs[0] if outs else (ins[0] if ins else None)
                return dtype_name(t0.dtype) if t0 is not None else "fp32"
        for t in outs:
            if t.is_floating_point():
                self.tag(t, dt)
        return dt

    def tag(self, t: torch.Tensor, dt: str) -> None:
        try:
            t.__dict__[_TAG] = dt
        except Exception:       # tensor without __dict__ (exotic subclass): skip
            return
        self.tagged.append(weakref.ref(t))

    def propagate(self, src, out) -> None:
        """View ops keep the (virtual) dtype of their input."""
        tag = src.__dict__.get(_TAG) if isinstance(src, torch.Tensor) else None
        if tag is None:
            return
        outs: list = []
        _tensors(out, outs)
        for t in outs:
            if t.is_floating_point():
                self.tag(t, tag)

    def cleanup(self) -> None:
        _untag(self.tagged)

    # -- recording ----------------------------------------------------------------------
    def record(self, tname: str, hparams: tuple, ins: list, outs: list, name: str,
               module: nn.Module | None, inplace: bool = False) -> None:
        dt = self.compute_dtype(tname, ins, outs, inplace)
        # the plain field tuple: equal and hashes like the LayerConfig built from it
        key = (tname, hparams, tuple([tuple(t.shape) for t in ins]),
               tuple([tuple(t.shape) for t in outs]), dt)
        self.calls += 1
        layer = self.index.get(key)
        if layer is None:
            layer = CapturedLayer(LayerConfig(*key), 1, [name], module, tname in self.supported)
            self.index[key] = layer
            self.records.append(layer)
        else:
            layer.count += 1
            if name not in layer.names:
                layer.names.append(name)


class _FunctionalRecorder(TorchFunctionMode):
    """Records functional ops that run while no leaf/atomic module is executing."""

    def __init__(self, state: _State):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        s = self.state
        if s.depth:
            return func(*args, **kwargs)
        s.seen += 1
        kind, name, inplace = _classify(func)
        if kind == _META and s.meta:
            v = _meta_read(func, args)
            if v is not None:
                s.zero_cost[name] += 1
                return v
        out = _fast_functional(func, args, kwargs) if s.fast else None
        if out is None and s.meta and name == "grouped_mm":
            out = _meta_grouped_mm(args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        if kind == _META:
            s.zero_cost[name] += 1
            return out
        if s.meta and kind == _OP:
            _meta_tag(name, args, out, s.tagged)
        src = args[0] if args else None
        if kind == _VIEW and name == "getitem" and len(args) > 1 and _has_tensor(args[1]):
            kind, name = _OP, "index"           # advanced indexing: a gather kernel
        if kind == _VIEW:
            s.zero_cost[name] += 1
            if s.lowp is not None:
                s.propagate(src, out)
            return out
        ins: list = []
        _tensors(args, ins)
        _tensors(kwargs, ins)
        if kind == _CAST and any(out is t for t in ins):
            s.zero_cost[name] += 1          # returned its input: no kernel
            if s.lowp is not None:
                s.propagate(src, out)
            return out
        outs: list = []
        _tensors(out, outs)
        if not outs:
            s.zero_cost[name] += 1          # no tensor produced (e.g. .tolist(), bool())
            return out
        s.depth += 1                        # no re-entry while recording
        try:
            hp = _op_hparams(name, args, kwargs)
            if inplace:
                hp = tuple(sorted(hp + (("inplace", True),)))
            s.record(name, hp, ins, outs, f"{s.stack[-1]}:{name}", None,
                     inplace or kwargs.get("inplace") is True)
        finally:
            s.depth -= 1
        return out


def _is_atomic(module: nn.Module, registry: dict) -> bool:
    return isinstance(module, nn.MultiheadAttention) or module_type_name(module) in registry


class _ForwardPatch:
    """Handle of a fast-path ``forward`` set on a module instance (``remove`` restores)."""

    __slots__ = ("module", "fn")

    def __init__(self, module: nn.Module, fn):
        self.module = module
        self.fn = fn

    def remove(self) -> None:
        d = self.module.__dict__
        if d.get("forward") is self.fn:
            del d["forward"]


class _HookSet:
    """The capture's forward (pre-)hooks, put straight into the modules' hook dicts -- what
    ``register_forward_pre_hook`` / ``register_forward_hook(with_kwargs=...)`` do, with
    ids from the same counter, minus a :class:`RemovableHandle` per hook. ``remove``
    takes them all out again."""

    __slots__ = ("entries",)

    def __init__(self):
        self.entries: list = []         # (hook dict, id, extra dict or None)

    def add(self, module: nn.Module, hook, *, pre: bool, with_kwargs: bool = False):
        cls = type(module)
        if cls.register_forward_pre_hook is not _REGISTER_PRE \
                or cls.register_forward_hook is not _REGISTER_POST:
            # overridden registration (e.g. script modules): use the public API
            h = (module.register_forward_pre_hook(hook) if pre else
                 module.register_forward_hook(hook, with_kwargs=with_kwargs))
            self.entries.append((None, h, None))
            return
        hid = RemovableHandle.next_id
        RemovableHandle.next_id = hid + 1
        if pre:
            d = module._forward_pre_hooks
            d[hid] = hook
            self.entries.append((d, hid, None))
        else:
            d = module._forward_hooks
            d[hid] = hook
            extra = None
            if with_kwargs:
                extra = module._forward_hooks_with_kwargs
                extra[hid] = True
            self.entries.append((d, hid, extra))

    def remove(self) -> None:
        for d, hid, extra in self.entries:
            if d is None:
                hid.remove()
                continue
            d.pop(hid, None)
            if extra is not None:
                extra.pop(hid, None)
        self.entries.clear()


_REGISTER_PRE = nn.Module.register_forward_pre_hook
_REGISTER_POST = nn.Module.register_forward_hook


def _install_hooks(model: nn.Module, state: _State, registry: dict, fast: bool = False,
                   handles: list | None = None) -> list:
    """Hooks (and fast-path forwards) on ``model``'s modules, appended to ``handles``
    as they are installed (so that a failure half-way still removes them)."""
    if handles is None:
        handles = []
    hooks = _HookSet()
    handles.append(hooks)
    seen: set = set()

    def make_leaf_hooks(path: str, module: nn.Module):
        tname = module_type_name(module)
        display = path or ROOT_NAME

        def pre(mod, args):
            state.depth += 1

        def post(mod, args, kwargs, output):
            try:
                if state.depth == 1:        # outermost recorded module: record the call
                    ins: list = []
                    _tensors(args, ins)
                    _tensors(kwargs, ins)
                    outs: list = []
                    _tensors(output, outs)
                    # plain tensors: read shapes/dtypes without the TorchFunctionMode
                    # (it would only pass them through); subclasses keep their
                    # __torch_function__
                    if _all_plain(ins) and _all_plain(outs):
                        with _NoTorchFunction():
                            hp = state.hp_cache.get(id(mod))
                            if hp is None:
                                hp = state.hp_cache[id(mod)] = module_hparams(mod)
                            state.record(tname, hp, ins, outs, display, mod)
                    else:
                        hp = state.hp_cache.get(id(mod))
                        if hp is None:
                            hp = state.hp_cache[id(mod)] = module_hparams(mod)
                        state.record(tname, hp, ins, outs, display, mod)
            finally:
                state.depth -= 1

        return pre, post

    def make_container_hooks(path: str):
        display = path or ROOT_NAME

        def pre(mod, args):
            state.stack.append(display)

        def post(mod, args, output):
            state.stack.pop()

        return pre, post

    def make_descend_hooks(path: str, module: nn.Module):
        display = path or ROOT_NAME
        tname = module_type_name(module)

        def pre(mod, args):
            state.stack.append(display)
            state.marks.append(state.seen)

        def post(mod, args, kwargs, output):
            state.stack.pop()
            mark = state.marks.pop()
            if state.seen != mark or state.depth:
                return                      # its calls were seen (and recorded)
            ins: list = []
            _tensors(args, ins)
            _tensors(kwargs, ins)
            outs: list = []
            _tensors(output, outs)
            if outs and not any(all(o is not t for t in ins) for o in outs):
                return                      # returned (some of) its inputs: no work
            if not outs and not ins:
                return
            # new tensors (or tensors in, none out) and no visible op (a C extension, a
            # custom kernel): the module is recorded as one opaque, unsupported layer --
            # never counted as zero
            hp = state.hp_cache.get(id(mod))
            if hp is None:
                hp = state.hp_cache[id(mod)] = module_hparams(mod)
            state.record(tname, hp, ins, outs, display, mod)

        return pre, post

    def walk(module: nn.Module, path: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        children = list(module.named_children())
        if not children and not _is_atomic(module, registry):
            # a childless module without a feature function (a subclass of a torch layer
            # with its own forward, a custom block): descend and record the functional ops
            # it calls (F.conv2d, F.layer_norm, addmm, mul ...), attributed to its path
            pre, post = make_descend_hooks(path, module)
            hooks.add(module, pre, pre=True)
            hooks.add(module, post, pre=False, with_kwargs=True)
            return
        if _is_atomic(module, registry):
            pre, post = make_leaf_hooks(path, module)
            hooks.add(module, pre, pre=True)
            hooks.add(module, post, pre=False, with_kwargs=True)
            rule = _FAST_RULES.get(type(module)) if fast else None
            if rule is not None and not children and "forward" not in module.__dict__:
                fn = _fast_forward(module, rule, module.forward)
                module.__dict__["forward"] = fn
                handles.append(_ForwardPatch(module, fn))
            return
        pre, post = make_container_hooks(path)
        hooks.add(module, pre, pre=True)
        hooks.add(module, post, pre=False)
        for cname, child in children:
            if child is None:
                continue
            walk(child, f"{path}.{cname}" if path else cname)

    walk(model, "")
    return handles


_PLAIN_TRAINING: dict = {}


def _plain_training(cls) -> bool:
    """``cls`` keeps ``nn.Module``'s ``train`` and ``__setattr__`` and has no class-level
    ``training``: setting ``training`` is then a plain instance-dict write."""
    hit = _PLAIN_TRAINING.get(cls)
    if hit is None:
        hit = _PLAIN_TRAINING[cls] = (
            cls.train is nn.Module.train and cls.__setattr__ is nn.Module.__setattr__
            and not hasattr(cls, "training"))
    return hit


def _set_training(model: nn.Module, modes: list, flag) -> None:
    """``model.train(flag)``; done as direct writes of the changed flags when no module
    type customises ``train``/``__setattr__`` (same result: ``Module.train`` sets the flag
    on every module reachable through ``children()``, i.e. ``model.modules()``)."""
    if type(flag) is bool and all(_plain_training(type(m)) for m, _ in modes):
        for m, cur in modes:
            if cur is not flag:
                m.__dict__["training"] = flag
    else:
        model.train(flag)


_MISSING = object()
_STORES = ("_parameters", "_buffers", "_modules")


def _snapshot(modes: list) -> list:
    """Shallow copies of every module's attribute dict and parameter / buffer / child
    stores, so that whatever the forward assigns (a cached mask, a lazily made buffer,
    a meta tensor kept for later) is undone: a capture never changes the model."""
    return [(m, dict(m.__dict__), tuple(dict(m.__dict__[k]) for k in _STORES
                                         if isinstance(m.__dict__.get(k), dict)))
            for m, _ in modes]


def _restore(snapshot: list) -> None:
    for m, attrs, stores in snapshot:
        cur = m.__dict__
        for k in [k for k in cur if k not in attrs]:
            del cur[k]
        for k, v in attrs.items():
            if k != "training" and cur.get(k, _MISSING) is not v:
                cur[k] = v
        live = [attrs[k] for k in _STORES if isinstance(attrs.get(k), dict)]
        for store, saved in zip(live, stores):
            for k in [k for k in store if k not in saved]:
                del store[k]
            for k, v in saved.items():
                if store.get(k, _MISSING) is not v:
                    store[k] = v


def _input_device_type(inputs) -> str:
    ts: list = []
    _tensors(inputs, ts)
    return ts[0].device.type if ts else "cpu"


def capture(model: nn.Module, inputs, *, dtype: str = "fp32", train: bool = False) -> Capture:
    """Run one forward of ``model`` on ``inputs`` and return its distinct layer configs.

    ``inputs``: a tensor, a tuple/list of tensors (positional arguments, batch dim
    included) or a dict (keyword arguments); any device, ``meta`` included.
    ``dtype``: ``"fp32"`` (no autocast) or ``"bf16"``/``"fp16"`` (autocast policy, see the
    module docstring). ``train``: run the forward with the model in training mode (BatchNorm
    batch statistics, active dropout); default eval mode. The forward always runs under
    ``torch.no_grad()``; hooks are removed and every submodule's ``training`` flag restored
    even if the forward raises (then an :class:`ExanteError` naming the cause is raised).
    """
    if not isinstance(model, nn.Module):
        raise ExanteError(f"capture needs a torch.nn.Module, got {type(model).__name__}")
    if dtype not in ("fp32", "bf16", "fp16"):
        raise ExanteError(f"unknown dtype {dtype!r}; accepted: fp32, bf16, fp16")
    if isinstance(inputs, torch.Tensor):
        args, kwargs = (inputs,), {}
    elif isinstance(inputs, (tuple, list)):
        args, kwargs = tuple(inputs), {}
    elif isinstance(inputs, dict):
        args, kwargs = (), dict(inputs)
    else:
        raise ExanteError(
            f"inputs must be a tensor, a tuple of tensors or a dict, got {type(inputs).__name__}"
        )

    registry = _registry()
    lowp = None if dtype == "fp32" else dtype
    state = _State(lowp, registry)
    modes = [(m, m.training) for m in model.modules()]
    snapshot = _snapshot(modes)
    handles: list = []
    restored = False
    dev = _input_device_type((args, kwargs))
    try:
        _set_training(model, modes, train)
        state.fast = _FAST_PATH and dev == "meta" and _no_outer_modes()
        state.meta = dev == "meta"
        _install_hooks(model, state, registry, fast=state.fast, handles=handles)
        with torch.no_grad(), _FunctionalRecorder(state):
            if lowp is not None and dev == "cuda":
                with torch.autocast(device_type="cuda", dtype=_AUTOCAST_DTYPES[lowp]):
                    model(*args, **kwargs)
            else:
                model(*args, **kwargs)
    except ExanteError:
        raise
    except Exception as exc:
        raise ExanteError(
            f"forward of {type(model).__name__} failed during capture: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        for m, flag in modes:
            if m.training != flag:
                if _plain_training(type(m)):
                    m.__dict__["training"] = flag
                else:
                    m.training = flag
        restored = all(m.training == flag for m, flag in modes)
        _restore(snapshot)
        state.cleanup()

    layers = state.records
    return Capture(
        layers=layers,
        unsupported=[layer for layer in layers if not layer.supported],
        total_calls=state.calls,
        mode_restored=restored,
        zero_cost_ops=dict(state.zero_cost),
        dtype=dtype,
    )
