"""Installation and removal of the capture's forward (pre-)hooks and fast-path forwards,
and the save/restore of every submodule's training flag and parameter/buffer stores.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

import profiling.capture.fastpath as fastpath  # _FAST_RULES looked up per capture (tests wrap it)
from profiling.capture.fastpath import _all_plain, _fast_forward, _NoTorchFunction
from profiling.capture.hparams import module_hparams, module_type_name
from profiling.capture.ops import _tensors
from profiling.capture.recorder import _State
from profiling.capture.records import ROOT_NAME
from profiling.errors import ExanteError

# layers whose kernels need a floating input (an integer tensor into them is an error on a GPU;
# on ``meta`` torch lets it through and the capture would label it fp32)
_FLOAT_INPUT_TYPES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


class InputDtypeError(ExanteError):
    """An input dtype the layer cannot take on a GPU: the same on any device (no fallback)."""


def _refuse_integer_input(display: str, tname: str, args, mod=None, autocast=False) -> None:
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):
        return
    with _NoTorchFunction():            # not an op of the model: not seen by the recorder
        integer = not x.is_floating_point() and not x.is_complex()
        w = getattr(mod, "weight", None)
        clash = (not integer and not autocast and isinstance(w, torch.Tensor)
                 and w.is_floating_point() and x.dtype != w.dtype)
    if clash:                           # e.g. a float16 input into a float32 Linear
        assert isinstance(w, torch.Tensor)  # clash implies it (for the type checker)
        raise InputDtypeError(
            f"{display} ({tname}) gets a {str(x.dtype).replace('torch.', '')} input but its "
            f"weight is {str(w.dtype).replace('torch.', '')} (on a GPU torch raises a dtype "
            "mismatch); give a float32 input, or mixed precision with dtype fp16/bf16 "
            "(autocast)")
    if integer:
        raise InputDtypeError(
            f"{display} ({tname}) gets a {str(x.dtype).replace('torch.', '')} input, but it "
            "needs a floating one (on a GPU torch raises a dtype mismatch); give a float "
            "input (--input-dtype float32), or integer token ids to a model that starts with "
            "an Embedding")


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
        needs_float = isinstance(module, _FLOAT_INPUT_TYPES)

        def pre(mod, args):
            if needs_float and state.depth == 0:
                _refuse_integer_input(display, tname, args, mod, state.lowp is not None)
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
            rule = fastpath._FAST_RULES.get(type(module)) if fast else None
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
        for store, saved in zip(live, stores, strict=False):
            for k in [k for k in store if k not in saved]:
                del store[k]
            for k, v in saved.items():
                if store.get(k, _MISSING) is not v:
                    store[k] = v


