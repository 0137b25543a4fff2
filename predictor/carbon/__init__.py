"""predictor.carbon: energy to carbon: the GPU catalogue (hardware), grid regions, the calculator (calc), life cycle, LLM plans, carbon-aware timing."""

from profiling.moved_modules import forward as _forward

# the names of the old ``predictor.carbon`` module (deprecated: predictor.carbon.regions)
__getattr__ = _forward(__name__, "predictor.carbon.regions")
