"""Checks the ``exante`` command line runs before any model is built, measured or fitted.

Each raises :class:`~profiling.errors.ExanteError` (one line: what was wrong, what is
accepted; the CLI prints it and exits with code 2) and leaves nothing behind on disk.
The argparse ``type=`` functions raise ``argparse.ArgumentTypeError`` so the message names
the flag. Torch is imported only by the checks that need it.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import socket
import tempfile
from urllib.parse import urlsplit

from profiling.dataset import schema
from profiling.errors import ExanteError

# --------------------------------------------------------------------------- argparse types

def positive_int(text: str) -> int:
    """``type=`` for counts (``--gpus``, ``--limit``, ``--inference-batch``...): an integer >= 1."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """``type=`` for amounts (``--time-budget-s``, ``--rated-power-w``...): a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """``type=`` for a number that the command range-checks itself (no nan/inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# --------------------------------------------------------------------------- output folders

def check_out_dir(path, flag: str = "--out") -> str:
    """``path`` can hold the command's files: an existing folder, or one that can be created.

    Checked by creating what is missing and a probe file, then removing both, so a read-only
    file system or a missing permission is found even as root and nothing is left behind.
    Returns the path as given."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ExanteError(f"{flag} {path!r} is a file; give a folder (existing or new)")
    created: list[str] = []
    probe = None
    head = os.path.abspath(path)
    while not os.path.exists(head):
        created.append(head)
        head = os.path.dirname(head)
    if not os.path.isdir(head):
        raise ExanteError(f"{flag} {path!r} is inside {head!r}, which is a file, not a folder")
    try:
        for folder in reversed(created):
            os.mkdir(folder)
        fd, probe = tempfile.mkstemp(prefix=".exante-write-check-", dir=path)
        os.close(fd)
    except OSError as exc:
        raise ExanteError(f"cannot write to {flag} {path!r}: {exc.strerror or exc}; give a "
                          "folder you can write to") from None
    finally:
        if probe is not None:
            os.unlink(probe)
        for folder in created:            # innermost first
            try:
                os.rmdir(folder)
            except OSError:
                pass
    return path


def check_out_file(path, flag: str, suffixes: tuple[str, ...] = ()) -> str:
    """``path`` names a file the command can write (checked before the work): not empty,
    ending in one of ``suffixes`` (when given), not a folder, in a folder that exists or can
    be created and is writable (probed, nothing left behind). Returns the path as given."""
    text = os.fspath(path) if path is not None else ""
    if not str(text).strip():
        raise ExanteError(f"{flag} needs a file name"
                          + (f" ending in {' or '.join(suffixes)}" if suffixes else ""))
    if suffixes and not str(text).lower().endswith(tuple(s.lower() for s in suffixes)):
        raise ExanteError(f"{flag} file must end in {' or '.join(suffixes)}, got {text!r}")
    if os.path.isdir(text):
        raise ExanteError(f"{flag} {text!r} is a folder; give a file name")
    if os.path.exists(text) and not os.access(text, os.W_OK):
        raise ExanteError(f"cannot write to {flag} {text!r}: permission denied")
    check_out_dir(os.path.dirname(os.path.abspath(text)), flag=f"{flag}'s folder")
    return text


def check_dataset_tables(folder) -> None:
    """The tables already in a dataset ``folder`` (``layers.csv``, ``models.csv``) have the
    header this exante writes, so a profile is not measured only to be refused at the end."""
    for table in (schema.layer_table(folder), schema.model_table(folder)):
        table._check_header()


# --------------------------------------------------------------------------- the command line

def check_command_line(args) -> None:
    """What the arguments alone decide, before torch is imported: ``--input``, ``--batch``
    and their tensor size, the MODEL_REF syntax (an ``mlp:`` spec, a zoo model's name), and
    ``--plot``. Attributes a command does not have are skipped."""
    from profiling.input_spec import (
        check_batch,
        check_input_bytes,
        check_ref_syntax,
        parse_input_shape,
    )

    refs = list(getattr(args, "model_refs", None) or [])
    if getattr(args, "model_ref", None):
        refs.insert(0, args.model_ref)
    shape = None
    if getattr(args, "input", None) is not None:
        shape = parse_input_shape(args.input)
    batch = getattr(args, "batch", None)
    if batch is not None and getattr(args, "command", None) != "calc":
        batch = check_batch(batch)
        if shape is not None:
            dtype = "int64" if getattr(args, "vocab", None) else \
                (getattr(args, "input_dtype", None) or "float32")
            check_input_bytes(shape, batch, dtype)
    for ref in refs:
        check_ref_syntax(ref)
    if getattr(args, "plot", None) is not None:
        check_out_file(args.plot, "--plot", (".png", ".svg"))


# --------------------------------------------------------------------------- devices, meters

def check_device(text: str | None) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, CUDA only where a GPU is visible;
    ``None`` means ``cuda`` where visible, else ``cpu``."""
    import torch

    if text is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(text).strip().lower()
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind != "cuda" or (index and not index.isdigit()):
        raise ExanteError(f"unknown --device {text!r}; accepted: cpu, cuda, cuda:N (NVIDIA GPUs)")
    if not torch.cuda.is_available():
        raise ExanteError(f"--device {text} asked for an NVIDIA GPU and none is visible here "
                          "(or this torch is a CPU build); use --device cpu for a dry run")
    if index and int(index) >= torch.cuda.device_count():
        raise ExanteError(f"--device {text}: only {torch.cuda.device_count()} GPU(s) visible "
                          f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return name


def check_meter(name: str, *, device: str | None, hardware: str | None,
                rated_power_w: float | None) -> None:
    """Open the ``--meter`` once and close it (unknown names, NVML without a GPU, ``estimated``
    without a rated power are one-line errors), before anything is measured or written."""
    from profiling.measure.profiler import open_meter

    meter = open_meter(name, device=device, hardware=hardware, rated_power_w=rated_power_w)
    close = getattr(meter, "close", None)
    if callable(close):
        close()


def check_scheduler(address: str | None, timeout_s: float = 5.0) -> None:
    """``--backend dask --scheduler tcp://HOST:PORT``: dask installed and the address
    answering a TCP connection (instead of dask's 30 s timeout and a traceback)."""
    if not address:
        raise ExanteError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    if importlib.util.find_spec("distributed") is None:
        raise ExanteError("--backend dask needs dask.distributed: pip install 'exante[dask]'")
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise ExanteError(f"--scheduler {address!r} is not a scheduler address; accepted: "
                          "tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ExanteError(f"cannot reach the dask scheduler at {address} "
                          f"({exc.strerror or exc}); start one with `dask scheduler` or fix "
                          "--scheduler") from None
