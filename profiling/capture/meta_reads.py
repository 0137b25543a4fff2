"""Value reads on ``meta`` during a capture (:class:`MetaTruthMode`): the typical answer of
an attention-mask predicate (``mask.all()``, ``mask.sum() == n``); any other read raises.
"""

from __future__ import annotations

import weakref

import torch
from torch.overrides import TorchFunctionMode

from profiling.capture.dtypes import _TAG
from profiling.capture.fastpath import _META_DEV
from profiling.capture.ops import _OP, _classify

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


