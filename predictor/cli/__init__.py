"""predictor.cli: the ``exante`` command line: main (sub-commands), checks, help, output, progress, calibrate, serve."""

from profiling.moved_modules import forward as _forward

# the names of the old ``predictor.cli`` module (deprecated: predictor.cli.main)
__getattr__ = _forward(__name__, "predictor.cli.main")
