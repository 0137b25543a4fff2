"""Which MODEL_REFs may be resolved when they are *named by data* -- a web request, a scenario
file, a runs CSV -- rather than typed by the user on their own command line (torch-free).

Resolving ``file.py:factory`` runs that file and ``package.module:factory`` imports a module
and calls a function, so a ref that comes from data may only name a model zoo entry
(``torchvision:``, ``timm:``, ``hf:``) or a generator family (``mlp:``, ``mlpseq:``,
``convstack:``, ``encoder:``), in a restricted character set, and an ``hf:`` ref may not set
keys that could point transformers at remote code, files or downloads.  Nothing is imported
or resolved here.
"""

from __future__ import annotations

import re

from profiling.errors import ExanteError

__all__ = ["DATA_REF_SCHEMES", "DATA_REF_FORMS", "check_data_model_ref"]

DATA_REF_SCHEMES = ("torchvision", "timm", "hf", "mlp", "mlpseq", "convstack", "encoder")
DATA_REF_FORMS = ("torchvision:NAME, timm:NAME, hf:MODEL_TYPE[,key=value,...], "
                  "mlp:in=100,depth=10,width=100,out=1, mlpseq:in=..,sizes=.., "
                  "convstack:in=3x32x32,filters=16-32, encoder:d=..,heads=..,layers=..")
_REF_RE = re.compile(r"(?P<scheme>[a-z]+):(?P<rest>[A-Za-z0-9_.,=\-]{1,200})")
# hf: config keys that could point transformers at code or files
_HF_DENIED = re.compile(r"^_|auto_map|trust_remote_code|(^|_)(path|file|dir|url|repo|revision|"
                        r"token|cache)s?($|_)", re.IGNORECASE)


def check_data_model_ref(ref, by: str, how_else: str) -> str:
    """``ref`` if it may be resolved although data named it, else a one-line ExanteError:
    "model ... is not accepted ``by``" (e.g. "by the page", "from scenario file plan.toml"),
    then ``how_else`` (why, and how the user can still run their own code)."""
    m = _REF_RE.fullmatch(ref if isinstance(ref, str) else "")
    if m is None or m["scheme"] not in DATA_REF_SCHEMES:
        raise ExanteError(
            f"model {ref!r} is not accepted {by}: give a zoo or generator reference "
            f"({DATA_REF_FORMS}); {how_else}")
    if m["scheme"] == "hf":
        for part in m["rest"].split(",")[1:]:
            key = part.partition("=")[0]
            if _HF_DENIED.search(key):
                raise ExanteError(f"hf: setting {key!r} is not accepted {by} (no remote "
                                  "code, paths or downloads); give numeric or named settings "
                                  "such as num_hidden_layers=2")
    return ref
