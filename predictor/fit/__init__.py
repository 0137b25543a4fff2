"""predictor.fit: fitting: datasets (measured rows + workloads), the physics fit per GPU and across GPUs, few-shot calibration."""

from profiling.moved_modules import forward as _forward

# the names of the old ``predictor.fit`` module (deprecated: predictor.fit.hardware_fit)
__getattr__ = _forward(__name__, "predictor.fit.hardware_fit")
