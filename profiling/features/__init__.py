"""profiling.features: per-layer architecture features (FLOPs, bytes, params, shapes): a registry of family rules.

Public names only: the family rules live in :mod:`profiling.features.families` (one module
per layer family; importing it fills :data:`FEATURE_REGISTRY`), the per-capture table in
:mod:`profiling.features.table`. Import a helper from its module.
"""

from profiling.features.api import *  # noqa: F403  (the public names, listed in api.__all__)
from profiling.features.api import __all__  # noqa: F401
