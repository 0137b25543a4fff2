"""exante's profiler: capture a model's layers, their features, and measure them on a GPU.

Layout: ``capture/`` (layers with real shapes), ``features/`` (per-layer work: FLOPs, bytes,
params), ``meters/`` (NVML/RAPL energy counters behind one interface), ``measure/`` (the
measurement protocol, single-layer replay, the profiler), ``dataset/`` (CSV schema, atomic
writes), ``sweeps/``; ``model_refs``/``input_spec``/``ref_policy`` resolve MODEL_REFs.
Never imports :mod:`predictor`.
"""

from profiling.moved import MOVED as _MOVED
from profiling.moved_modules import install as _install

_install(_MOVED)
