"""User-facing errors: one line saying what was wrong and what is accepted.

The CLI prints ``ExanteError`` messages without a traceback and exits with code 2.
"""


class ExanteError(ValueError):
    """Bad input or an unusable environment, with a message fit for the user."""


class MeterUnavailable(ExanteError):
    """A requested energy meter cannot work on this machine (no GPU, no NVML, no RAPL...)."""


class UnsupportedLayerError(ExanteError):
    """A layer type has no feature function and nothing close enough to predict it from."""
