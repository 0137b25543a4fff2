"""profiling.features: per-layer architecture features (FLOPs, bytes, params, shapes): a registry of family rules."""

from profiling.moved_modules import forward as _forward

# the names of the old ``profiling.features`` module (kept: profiling.features.api)
__getattr__ = _forward(__name__, "profiling.features.api", deprecated=False)
