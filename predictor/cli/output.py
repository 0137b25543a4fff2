"""What the ``exante`` command line prints besides its result: warnings, logging, progress.

- Warnings print once each as ``exante: warning: MESSAGE`` on stderr (no file name, no source
  line), except torch's ``torch.jit.script is deprecated`` notice, which an import of fvcore
  triggers and which says nothing about the user's command.
- Warnings raised while a command computes its result are held back
  (:func:`held_warnings`) and printed after it, minus those the result already states
  (the notes of a prediction or an estimate), so nothing is said twice.
- ``-v/--verbose`` turns on ``logging`` INFO (``exante: info: ...``); ``--quiet`` turns off
  progress bars and messages (so does ``--json``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

from predictor.cli.progress import set_enabled

# torch's deprecation notice, raised by `torch.jit.script` calls at import of fvcore.nn
JIT_NOISE = r"`?torch\.jit\.script(_method)?`? is deprecated"
_SHOWN: set[str] = set()
OWN_LOGGERS = ("exante", "predictor", "profiling")
_SAVED: list = []                       # warnings.showwarning / formatwarning before setup()


def _text(message) -> str:
    return str(message).strip()


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    text = _text(message)
    if not text or text in _SHOWN:
        return
    _SHOWN.add(text)
    print(f"exante: warning: {text}", file=file or sys.stderr)


def _format(message, category, filename, lineno, line=None) -> str:
    return f"exante: warning: {_text(message)}\n"


class _Handler(logging.Handler):
    """``exante: info: MESSAGE`` on the current ``sys.stderr`` (no time, no logger name)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"exante: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def setup(*, verbose: bool = False, quiet: bool = False, json_mode: bool = False) -> None:
    """Install the CLI's warning format and logging level, and turn progress on unless
    ``quiet`` or ``json_mode``."""
    if warnings.showwarning is not _show:
        _SAVED[:] = [warnings.showwarning, warnings.formatwarning]
    warnings.showwarning = _show
    warnings.formatwarning = _format
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", message=JIT_NOISE, category=category)
    root = logging.getLogger()
    if not any(isinstance(h, _Handler) for h in root.handlers):
        root.addHandler(_Handler())
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:                # -v: exante's own INFO, not every library's
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.NOTSET)
    set_enabled(not (quiet or json_mode))


def teardown() -> None:
    """Progress back off (the library default) and the warning format restored after a
    command ran in this process."""
    set_enabled(False)
    if _SAVED and warnings.showwarning is _show:
        warnings.showwarning, warnings.formatwarning = _SAVED


@contextlib.contextmanager
def held_warnings():
    """Collect the warnings raised inside (each once); print them with :func:`emit`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=JIT_NOISE, category=category)
        yield caught


def emit(caught, *, already_said: str = "") -> None:
    """Print each held warning once as ``exante: warning: ...``, except those whose text
    ``already_said`` (the printed result) contains."""
    for w in caught:
        text = _text(w.message)
        if text and text not in already_said:
            _show(text, w.category, "", 0)
