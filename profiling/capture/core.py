"""Capture the distinct layer configurations a model executes in one forward pass.

``capture(model, inputs)`` runs one forward (under ``torch.no_grad()``, ``meta`` tensors
welcome) and records

* every call of a *leaf* module (no children) and of an *atomic* module (a type whose cost
  is modelled as one unit: ``MultiheadAttention`` and every module type present in
  :data:`profiling.features.api.FEATURE_REGISTRY`; calls of their children are not recorded);
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

Speed on ``meta`` (what ``predictor.engine.predict`` uses): torch runs many meta kernels as Python
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

import torch
from torch import nn

from profiling.capture.dtypes import (
    _AUTOCAST_DTYPES,
    FP32_TYPES,
    LOWP_TYPES,
    dtype_name,
)
from profiling.capture.fastpath import _no_outer_modes
from profiling.capture.hooks import (
    _install_hooks,
    _plain_training,
    _restore,
    _set_training,
    _snapshot,
)
from profiling.capture.hparams import (
    _registry,
    module_hparams,
    module_type_name,
)
from profiling.capture.meta_reads import MetaTruthMode
from profiling.capture.ops import _tensors
from profiling.capture.recorder import _FunctionalRecorder, _State
from profiling.capture.records import ROOT_NAME, Capture, CapturedLayer, LayerConfig
from profiling.errors import ExanteError

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
    "FP32_TYPES",
    "LOWP_TYPES",
]


_FAST_PATH = True               # switch (tests compare the results with it off)


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
    args: tuple
    kwargs: dict
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
