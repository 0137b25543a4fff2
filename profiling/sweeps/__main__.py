"""``python -m profiling.sweeps``: print each sweep's tasks, configurations and expected H100 minutes."""

from profiling.sweeps.registry import _main

_main()
