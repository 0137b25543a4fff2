"""profiling.capture: capture(model, inputs) -> Capture: each layer with its real input shapes (on ``meta``)."""

from profiling.moved_modules import forward as _forward

# the names of the old ``profiling.capture`` module (kept: profiling.capture.core)
__getattr__ = _forward(__name__, "profiling.capture.core", deprecated=False)
