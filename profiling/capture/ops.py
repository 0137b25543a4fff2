"""Classification of the functional ops the capture sees (view / metadata / cast / costed
op), their ``LayerConfig.type`` names and hyper-parameters.
"""

from __future__ import annotations

import torch

from profiling.capture.hparams import _NOPE, _canon_value

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


