"""Atomic file writes for the dataset folders: a temporary file in the same folder, fsync'ed and
``os.replace``'d over the old one, then the folder fsync'ed (a crash leaves the old file or the
new one, never a torn one), and an advisory inter-process lock (:func:`file_lock`)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterable

from profiling.dataset.cells import jsonable
from profiling.dataset.columns import META_FILE
from profiling.errors import ExanteError


@contextlib.contextmanager
def file_lock(path: str):
    """An advisory inter-process lock on ``path + '.lock'`` (no-op where fcntl is missing).

    The lock file is removed on release, so no ``.lock`` stays in a dataset folder; a waiter
    that got the lock on a file removed meanwhile (its inode is no longer the path's) retries
    on the current one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = path + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)   # a new dataset folder
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st, held = os.stat(lock), os.fstat(fd)
                current = (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            with contextlib.suppress(OSError):
                os.unlink(lock)
        finally:
            os.close(fd)                    # releases the flock


def _new_file_mode() -> int:
    """0o666 less the process umask (0o644 with the usual 022), read without changing it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic_chunks(path: str, chunks: Iterable[bytes]) -> None:
    """Write the concatenated ``chunks`` to ``path`` atomically (see the module docstring)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    tmp: str | None
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:                                # mkstemp makes 0600: keep the file's mode, else 0644
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = _new_file_mode()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(directory)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync'ed and
    ``os.replace``'d over the old one (whose mode it keeps; a new file gets 0o666 less the
    umask), then the folder fsync'ed -- a crash leaves the old file or the new one."""
    write_atomic_chunks(os.fspath(path), [data])


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (temp file, fsync, os.replace)."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n"
    write_atomic_chunks(os.fspath(path), [text.encode("utf-8")])


def update_meta(directory: str | os.PathLike, update) -> dict:
    """Read-modify-write ``<directory>/meta.json`` under the file lock; ``update(meta)`` edits it in place."""
    path = os.path.join(os.fspath(directory), META_FILE)
    os.makedirs(os.fspath(directory), exist_ok=True)
    with file_lock(path):
        meta = read_json(path, default={}) or {}
        update(meta)
        write_json_atomic(path, meta)
    return meta


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path`` (``default`` when the file is missing; bad JSON is an ExanteError)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as exc:
        raise ExanteError(f"{os.fspath(path)} is not valid JSON ({exc})") from None
