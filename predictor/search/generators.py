"""Model families of seed 004 and the NAS search spaces, as specs and as MODEL_REFs.

Each family is a frozen dataclass *spec* with ``build()`` (the ``nn.Module``), ``ref`` (its
MODEL_REF string), ``input_shape`` (per sample, no batch) and ``params``:

* :class:`MLPSpec` -- ``mlp:in=100,depth=10,width=100,out=1`` (uniform; the project's
  existing ref, seed 004 Table 6) or ``mlpseq:in=100,sizes=75-75-50-50-25-25-1`` (any list of
  layer sizes, the last one the output; seed 004 Table 5);
* :class:`ConvStackSpec` -- ``convstack:in=1x10x10,filters=32-32-32,kernel=3,out=1``: 2-d
  convolutions with "same" padding and ReLU, then global average pooling and a Linear head
  (seed 004 Fig. 14's "similarly-shaped convolutional layers, the width being the number of
  filters"; the seed gives no kernel or input size, so both are parameters);
* :class:`EncoderSpec` -- ``encoder:d=256,heads=4,layers=2,ffn=1024,seq=64,out=2``: an
  ``nn.TransformerEncoder`` (post-norm, GELU, batch_first) on a float ``(seq, d)`` input with a
  Linear head on token 0 (the H100 reference set's encoders without the embedding).

Importing this module registers the ``mlpseq``, ``convstack`` and ``encoder`` schemes with
:func:`profiling.model_refs.register_ref_scheme` (``predictor`` imports it), so every command
that takes a MODEL_REF accepts them.  Seed 004's grids: :data:`TABLE6`, :data:`TABLE5`,
:func:`table6_specs`, :func:`equal_param_conv` (Fig. 14 pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from profiling.errors import ExanteError
from profiling.model_refs import build_mlp, register_ref_scheme

__all__ = ["MLPSpec", "ConvStackSpec", "EncoderSpec", "spec_from_ref", "TABLE6", "TABLE5",
           "table6_specs", "equal_param_conv", "Encoder", "SEED004_FILE"]

SEED004_FILE = "/work/shared/seeds/004_ee68596bbb593c7f.txt"


# ------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class MLPSpec:
    """Linear layers of ``widths`` (hidden) with ReLU between, then Linear to ``out``."""

    in_features: int
    widths: tuple
    out_features: int = 1

    def __post_init__(self):
        ws = tuple(int(w) for w in self.widths)
        object.__setattr__(self, "widths", ws)
        if self.in_features < 1 or self.out_features < 1 or not ws or min(ws) < 1:
            raise ExanteError(f"an MLP needs positive in, out and at least one positive hidden "
                              f"width; got in={self.in_features}, widths={ws}, "
                              f"out={self.out_features}")

    @property
    def input_shape(self) -> tuple:
        """Per-sample input shape."""
        return (int(self.in_features),)

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @property
    def nodes(self) -> int:
        """Seed 004's node count: hidden units (Table 6: Layers x Layer Size)."""
        return int(sum(self.widths))

    @property
    def params(self) -> int:
        """Parameter count."""
        dims = (self.in_features, *self.widths, self.out_features)
        return int(sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True)))

    @property
    def ref(self) -> str:
        """The MODEL_REF of this design."""
        if len(set(self.widths)) == 1:
            return (f"mlp:in={self.in_features},depth={self.depth},width={self.widths[0]},"
                    f"out={self.out_features}")
        sizes = "-".join(str(w) for w in (*self.widths, self.out_features))
        return f"mlpseq:in={self.in_features},sizes={sizes}"

    def build(self) -> nn.Module:
        """The ``nn.Module`` (on the current default device)."""
        if len(set(self.widths)) == 1:
            return build_mlp(self.in_features, self.depth, self.widths[0], self.out_features)
        layers: list = []
        prev = self.in_features
        for w in self.widths:
            layers += [nn.Linear(prev, w), nn.ReLU()]
            prev = w
        layers.append(nn.Linear(prev, self.out_features))
        return nn.Sequential(*layers)


@dataclass(frozen=True)
class ConvStackSpec:
    """``Conv2d(k, padding=k//2) + ReLU`` per entry of ``filters``, global average pool,
    Flatten, ``Linear(filters[-1], out)``; input ``in_shape`` = (C, H, W); odd ``kernel``."""

    in_shape: tuple
    filters: tuple
    kernel: int = 3
    out_features: int = 1

    def __post_init__(self):
        fs = tuple(int(f) for f in self.filters)
        shp = tuple(int(d) for d in self.in_shape)
        object.__setattr__(self, "filters", fs)
        object.__setattr__(self, "in_shape", shp)
        if len(shp) != 3 or min(shp) < 1:
            raise ExanteError(f"convstack input must be CxHxW with positive sizes; got {shp}")
        if not fs or min(fs) < 1 or self.out_features < 1:
            raise ExanteError(f"convstack needs at least one positive filter count and a "
                              f"positive out; got filters={fs}, out={self.out_features}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ExanteError(f"convstack kernel must be a positive odd int (same padding); "
                              f"got {self.kernel}")

    @property
    def input_shape(self) -> tuple:
        """Per-sample input shape (C, H, W)."""
        return self.in_shape

    @property
    def depth(self) -> int:
        """Number of conv layers."""
        return len(self.filters)

    @property
    def params(self) -> int:
        """Parameter count."""
        k2 = self.kernel * self.kernel
        chans = (self.in_shape[0], *self.filters)
        conv = sum(a * b * k2 + b for a, b in zip(chans[:-1], chans[1:], strict=True))
        return int(conv + self.filters[-1] * self.out_features + self.out_features)

    @property
    def ref(self) -> str:
        """The MODEL_REF of this design."""
        return (f"convstack:in={'x'.join(map(str, self.in_shape))},"
                f"filters={'-'.join(map(str, self.filters))},kernel={self.kernel},"
                f"out={self.out_features}")

    def build(self) -> nn.Module:
        """The ``nn.Module`` (on the current default device)."""
        layers: list = []
        prev = self.in_shape[0]
        for f in self.filters:
            layers += [nn.Conv2d(prev, f, self.kernel, padding=self.kernel // 2), nn.ReLU()]
            prev = f
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, self.out_features)]
        return nn.Sequential(*layers)


class Encoder(nn.Module):
    """``nn.TransformerEncoder`` on a float (batch, seq, d) input, Linear head on token 0."""

    def __init__(self, d: int, heads: int, layers: int, ffn: int, out: int):
        super().__init__()
        block = nn.TransformerEncoderLayer(d, heads, ffn, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, out)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


@dataclass(frozen=True)
class EncoderSpec:
    """Post-norm GELU transformer encoder (``d`` model width, ``heads``, ``layers`` blocks,
    ``ffn`` hidden units) on ``seq`` tokens of width ``d``, ``out`` classes."""

    d: int
    heads: int
    layers: int
    ffn: int
    seq: int
    out_features: int = 2

    def __post_init__(self):
        vals = (self.d, self.heads, self.layers, self.ffn, self.seq, self.out_features)
        if min(vals) < 1:
            raise ExanteError(f"encoder needs positive d, heads, layers, ffn, seq, out; got "
                              f"{vals}")
        if self.d % self.heads:
            raise ExanteError(f"encoder d={self.d} must be divisible by heads={self.heads}")

    @property
    def input_shape(self) -> tuple:
        """Per-sample input shape (sequence length, features)."""
        return (int(self.seq), int(self.d))

    @property
    def params(self) -> int:
        """Parameter count."""
        d, f = self.d, self.ffn
        block = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
        return int(self.layers * block + d * self.out_features + self.out_features)

    @property
    def ref(self) -> str:
        """The MODEL_REF of this design."""
        return (f"encoder:d={self.d},heads={self.heads},layers={self.layers},ffn={self.ffn},"
                f"seq={self.seq},out={self.out_features}")

    def build(self) -> nn.Module:
        """The ``nn.Module`` (on the current default device)."""
        return Encoder(self.d, self.heads, self.layers, self.ffn, self.out_features)


# --------------------------------------------------------------------------- MODEL_REFs
def _kv(scheme: str, text: str, keys: dict) -> dict:
    """Parse ``key=value,...``; ``keys`` maps each accepted key to its parser."""
    out = {}
    for part in filter(None, text.split(",")):
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in keys:
            raise ExanteError(f"bad {scheme} spec {text!r}: expected comma-separated key=value "
                              f"with keys {', '.join(keys)}")
        try:
            out[k] = keys[k](v.strip())
        except ValueError:
            raise ExanteError(f"bad {scheme} spec {text!r}: {k}={v!r} is not valid") from None
    return out


def _ints(sep: str):
    def parse(v: str) -> tuple:
        return tuple(int(x) for x in v.split(sep))
    return parse


def _required(scheme, text, got, names):
    missing = [n for n in names if n not in got]
    if missing:
        raise ExanteError(f"bad {scheme} spec {text!r}: missing {', '.join(missing)}")


def _mlpseq(text: str) -> MLPSpec:
    d = _kv("mlpseq", text, {"in": int, "sizes": _ints("-")})
    _required("mlpseq", text, d, ("in", "sizes"))
    if len(d["sizes"]) < 2:
        raise ExanteError(f"bad mlpseq spec {text!r}: sizes needs hidden sizes and the output "
                          "size, e.g. sizes=75-50-1")
    return MLPSpec(d["in"], d["sizes"][:-1], d["sizes"][-1])


def _convstack(text: str) -> ConvStackSpec:
    d = _kv("convstack", text, {"in": _ints("x"), "filters": _ints("-"), "kernel": int,
                                "out": int})
    _required("convstack", text, d, ("in", "filters"))
    return ConvStackSpec(d["in"], d["filters"], d.get("kernel", 3), d.get("out", 1))


def _encoder(text: str) -> EncoderSpec:
    d = _kv("encoder", text, {k: int for k in ("d", "heads", "layers", "ffn", "seq", "out")})
    _required("encoder", text, d, ("d", "heads", "layers"))
    return EncoderSpec(d["d"], d["heads"], d["layers"], d.get("ffn", 4 * d["d"]),
                       d.get("seq", 64), d.get("out", 2))


_PARSERS = {"mlpseq": _mlpseq, "convstack": _convstack, "encoder": _encoder}


def spec_from_ref(ref: str):
    """The spec of a ``mlp:``, ``mlpseq:``, ``convstack:`` or ``encoder:`` MODEL_REF, else
    None (a ref this module does not generate)."""
    scheme, _, rest = str(ref).partition(":")
    if scheme == "mlp":
        d = _kv("mlp", rest, {"in": int, "depth": int, "width": int, "out": int})
        _required("mlp", rest, d, ("in", "depth", "width"))
        if d["depth"] < 1:
            raise ExanteError(f"bad mlp spec {rest!r}: depth must be positive")
        return MLPSpec(d["in"], (d["width"],) * d["depth"], d.get("out", 1))
    parser = _PARSERS.get(scheme)
    return parser(rest) if parser else None


def _builder(parse: Callable[[str], Any]) -> Callable[[str], nn.Module]:
    """The MODEL_REF builder of one spec parser: the spec built on the current device."""
    return lambda text: parse(text).build()


for _scheme, _parse in _PARSERS.items():
    register_ref_scheme(_scheme, _builder(_parse))


# ------------------------------------------------------------------------ seed 004 grids
# seed 004 Table 6 (lines 359-377): (seed line, Layers, Layer Size, Nodes, Train. Params, kWh);
# Samples 100000, Epochs 10, Input Size 100 on every row; lines 375-377 print a split last digit
# ("0,00166 2") read as 0.001662.  The same grid as experiments/wide_vs_deep/run.py.
TABLE6 = (
    (359, 100, 10, 1000, 11911, 0.000599), (360, 10, 100, 1000, 101101, 0.000241),
    (361, 200, 10, 2000, 22911, 0.001125), (362, 100, 20, 2000, 43621, 0.000674),
    (363, 20, 100, 2000, 202101, 0.000353), (364, 10, 200, 2000, 382201, 0.000434),
    (365, 300, 10, 3000, 33911, 0.001678), (366, 100, 30, 3000, 95131, 0.000761),
    (367, 30, 100, 3000, 303101, 0.000475), (368, 10, 300, 3000, 843301, 0.000806),
    (369, 200, 20, 4000, 85621, 0.001228), (370, 20, 200, 4000, 784201, 0.000797),
    (371, 300, 20, 6000, 127621, 0.002269), (372, 200, 30, 6000, 188131, 0.001512),
    (373, 30, 200, 6000, 1186201, 0.001273), (375, 20, 300, 6000, 1746301, 0.001662),
    (376, 300, 30, 9000, 281131, 0.002391), (377, 30, 300, 9000, 2649301, 0.003292),
)
TABLE6_SAMPLES, TABLE6_EPOCHS, TABLE6_INPUT = 100_000, 10, 100

# seed 004 Table 5 (lines 346-352): (scenario, layer sizes incl. the output, nodes, params as
# printed).  The printed counts match no input size with biases and ReLU layers as built here
# with input 100, our counts exceed the printed ones by 294 (288 for "long fixed size"), and the
# seed does not state Table 5's input size), so the shapes are reproduced, not the counts.
TABLE5 = (
    ("long fixed size", (25,) * 12 + (1,), 301, 9413),
    ("reduction", (75, 75, 50, 50, 25, 25, 1), 301, 21282),
    ("bottleneck", (75, 50, 25, 25, 50, 75, 1), 301, 18207),
    ("growth", (25, 25, 50, 50, 75, 75, 1), 301, 16332),
)


def table6_specs() -> list[tuple[dict, MLPSpec]]:
    """(row metadata, spec) for each Table 6 MLP, in the seed's order; the spec's parameter
    count equals the table's (asserted)."""
    out = []
    for line, layers, size, nodes, params, kwh in TABLE6:
        spec = MLPSpec(TABLE6_INPUT, (size,) * layers, 1)
        if spec.params != params or spec.nodes != nodes:
            raise AssertionError(f"Table 6 line {line}: {spec.params} != {params}")
        out.append(({"seed_line": line, "layers": layers, "layer_size": size, "nodes": nodes,
                     "params": params, "seed_kwh": kwh,
                     "shape": "deep" if layers > size else "wide"}, spec))
    return out


def equal_param_conv(mlp: MLPSpec, in_shape: tuple, kernel: int = 3) -> ConvStackSpec:
    """The conv stack of the same depth as ``mlp`` (uniform filters) whose parameter count is
    closest to the MLP's (seed 004 Fig. 14: dense vs conv at equal trainable parameters)."""
    depth, c0 = mlp.depth, int(in_shape[0])
    k2 = kernel * kernel
    target = mlp.params
    # params(F) = c0 F k2 + F + (depth-1)(F^2 k2 + F) + F out + out: solve the quadratic, round
    a = (depth - 1) * k2
    b = c0 * k2 + 1 + (depth - 1) + mlp.out_features
    c = mlp.out_features - target
    f = (-c / b) if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    cands = {max(1, math.floor(f)), max(1, math.ceil(f))}
    specs = [ConvStackSpec(in_shape, (n,) * depth, kernel, mlp.out_features) for n in cands]
    return min(specs, key=lambda s: (abs(s.params - target), s.filters[0]))
