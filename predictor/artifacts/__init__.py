"""Fitted-model artifacts: ``<hw>.joblib`` + ``<hw>.json`` manifest, checked before loading.

This package is both the API (``save_artifact``, ``load_artifact``, ``available_hardware``)
and the folder of the shipped artifacts (package data ``predictor/artifacts/<hw>.*``): a
module ``predictor/artifacts.py`` would be shadowed by this folder.

A joblib file is a pickle, and unpickling can run arbitrary code, so :func:`load_artifact`
reads the file's bytes once, checks their sha256 against the manifest (corruption) and only
then unpickles *those same bytes* with the restricted unpickler of :mod:`.safe_load`
(tampering: a matching manifest is easy to write), which refuses any global outside exante's
own classes and numpy / scikit-learn / scipy types before importing or calling it.  Either
refusal is an :class:`ExanteError`.

Lookup order for a hardware id (first folder holding both files wins):

1. the ``artifact_dir`` argument;
2. the folder in the ``EXANTE_ARTIFACT_DIR`` environment variable;
3. the package data folder ``predictor/artifacts/`` (``importlib.resources``).

A folder named by 1 or 2 must exist and hold at least one artifact, else an
:class:`ExanteError` (a mistyped folder never falls back silently to the shipped model).

Manifest fields: ``format``, ``hardware``, ``id`` (``<hw>-<sha[:12]>``), ``artifact``
(file name), ``sha256``, ``size_bytes``, ``created`` (UTC ISO), ``versions`` (exante,
scikit-learn, numpy, scipy, pandas, torch, joblib, python), ``training_data_digest``
(sha256 over the dataset files), ``cv_scores``, ``coverage``, plus ``extra``.
A scikit-learn version different from the one that fitted the artifact gives a warning, not
an error.  An artifact of the per-layer regression engine (removed in issue 19; manifest
``method`` "per-layer regression ...") is refused in one line that says how to refit.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import logging
import os
import platform
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any, Iterable

import joblib

from predictor.artifacts.safe_load import (
    RETIRED_METHOD,
    load_or_refuse,
    retired_artifact_error,
)
from profiling.dataset.schema import write_bytes_atomic
from profiling.errors import ExanteError

__all__ = [
    "ARTIFACT_ENV",
    "MANIFEST_FORMAT",
    "Artifact",
    "ArtifactVersionWarning",
    "available_hardware",
    "dataset_digest",
    "file_sha256",
    "load_artifact",
    "package_artifact_dir",
    "save_artifact",
    "search_dirs",
    "library_versions",
]

logger = logging.getLogger(__name__)

ARTIFACT_ENV = "EXANTE_ARTIFACT_DIR"
MANIFEST_FORMAT = "exante-artifact/1"
_HW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_CACHE: dict = {}


class ArtifactVersionWarning(UserWarning):
    """The artifact was fitted with different library versions than the running ones."""


@dataclass
class Artifact:
    """A loaded artifact: the fitted ``model`` (e.g. a ``CalibratedHardware``), its ``manifest`` and
    the ``.joblib`` ``path``."""
    model: Any            # predictor.engine.calibrated.CalibratedHardware (or any allowed object)
    manifest: dict
    path: Path            # the .joblib file

    @property
    def id(self) -> str:
        return self.manifest.get("id", "")


def check_hardware_id(hardware: str) -> str:
    """``hardware`` if it is a valid id (1-64 letters, digits, '.', '_', '-', starting with a
    letter or digit); else an ExanteError."""
    if not isinstance(hardware, str) or not _HW_RE.match(hardware):
        raise ExanteError(
            f"invalid hardware id {hardware!r}: use letters, digits, '.', '_' or '-' "
            "(e.g. h100)")
    return hardware


def package_artifact_dir() -> Path:
    """``predictor/artifacts/`` of the installed package."""
    res = importlib.resources.files(__name__)
    if isinstance(res, os.PathLike):
        return Path(res)
    return Path(__file__).resolve().parent  # pragma: no cover - zip imports: no file path


def search_dirs(artifact_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for artifacts, in order (see module docstring)."""
    dirs: list[Path] = []
    if artifact_dir is not None:
        dirs.append(_checked_dir(Path(artifact_dir), "artifact folder"))
    env = os.environ.get(ARTIFACT_ENV)
    if env:
        dirs.append(_checked_dir(Path(env), f"{ARTIFACT_ENV}"))
    dirs.append(package_artifact_dir())
    out, seen = [], set()
    for d in dirs:
        key = os.path.abspath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _artifacts_in(d: Path) -> list[str]:
    return sorted(f.stem for f in d.glob("*.json")
                  if _HW_RE.match(f.stem) and (d / f"{f.stem}.joblib").is_file())


def _checked_dir(d: Path, what: str) -> Path:
    """``d`` if it is a folder holding an artifact, else a one-line ExanteError."""
    try:
        return _check_dir(d, what)
    except ExanteError as exc:
        if what != ARTIFACT_ENV:
            raise
        raise ExanteError(f"{exc}; or unset {ARTIFACT_ENV} to use the shipped model") from None


def _check_dir(d: Path, what: str) -> Path:
    if not d.exists():
        raise ExanteError(f"{what} {str(d)!r} does not exist: no fitted model there; give a "
                          "folder holding <hw>.joblib + <hw>.json (written by `exante fit "
                          "--out` or `exante calibrate --out`)")
    if not d.is_dir():
        raise ExanteError(f"{what} {str(d)!r} is not a folder: no fitted model there; give a "
                          "folder holding <hw>.joblib + <hw>.json")
    if not _artifacts_in(d):
        halves = sorted({f.stem for f in (*d.glob("*.json"), *d.glob("*.joblib"))
                         if _HW_RE.match(f.stem)})
        half = (f" (incomplete artifact for {', '.join(map(repr, halves[:3]))}: "
                "<hw>.joblib or <hw>.json missing)" if halves else "")
        raise ExanteError(f"{what} {str(d)!r} holds no fitted model (<hw>.joblib + <hw>.json)"
                          f"{half}; available: none there; fit one with `exante fit` or "
                          "`exante calibrate` into it (the shipped model is not used in its "
                          "place)")
    return d


def available_hardware(artifact_dir: str | os.PathLike | None = None) -> list[str]:
    """Hardware ids with an artifact (``<hw>.joblib`` and ``<hw>.json``) in any searched folder."""
    found = set()
    for d in search_dirs(artifact_dir):
        if d.is_dir():
            found.update(_artifacts_in(d))
    return sorted(found)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path`` (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 over (file name, length, bytes) of each existing file, in sorted name order."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        if not p.is_file():
            continue
        data = p.read_bytes()
        h.update(p.name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def library_versions() -> dict:
    """``{name: version}`` of exante, the fitting libraries, torch (None where not installed) and
    Python, as recorded in an artifact's manifest."""
    import numpy
    import pandas
    import scipy
    import sklearn

    try:
        import torch

        tv = torch.__version__
    except ImportError:  # pragma: no cover
        tv = None
    try:
        from importlib.metadata import version

        ev = version("exante")
    except PackageNotFoundError:  # pragma: no cover - not installed
        ev = None
    return {"exante": ev, "scikit-learn": sklearn.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__, "torch": tv,
            "joblib": joblib.__version__, "python": platform.python_version()}


def _write_atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)
    os.chmod(path, 0o644)               # artifacts are package data, whatever the umask


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        try:
            return _jsonable(obj.item())
        except (TypeError, ValueError):      # not a one-element array: try tolist
            pass
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    return str(obj)


def save_artifact(obj, hardware: str, out_dir: str | os.PathLike | None = None, *,
                  cv_scores: dict | None = None, training_data_digest: str | None = None,
                  extra: dict | None = None) -> dict:
    """Write ``<out_dir>/<hw>.joblib`` and its manifest ``<hw>.json``; returns the manifest.

    ``out_dir`` defaults to the package's ``predictor/artifacts/``.  Both files are written
    atomically (temporary file + ``os.replace``); the joblib file first, so a manifest never
    points at a file that is not there.
    """
    check_hardware_id(hardware)
    out = Path(out_dir) if out_dir is not None else package_artifact_dir()
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    jpath = out / f"{hardware}.joblib"
    _write_atomic(jpath, data)
    coverage = obj.coverage if isinstance(getattr(obj, "coverage", None), float) else None
    manifest = {
        "format": MANIFEST_FORMAT,
        "hardware": hardware,
        "id": f"{hardware}-{sha[:12]}",
        "artifact": jpath.name,
        "sha256": sha,
        "size_bytes": len(data),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "training_data_digest": training_data_digest,
        "cv_scores": cv_scores or {},
        "coverage": coverage,
    }
    for k, v in (extra or {}).items():
        manifest.setdefault(k, v)
    manifest = _jsonable(manifest)
    _write_atomic(out / f"{hardware}.json",
                  (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    _CACHE.pop(os.path.abspath(jpath), None)
    return manifest


def _missing(hardware: str, artifact_dir) -> ExanteError:
    """'no fitted model' naming the close catalogue matches (``h1000`` -> h100, v100, ...)
    and where the catalogue is listed."""
    from predictor.carbon.hardware import close_matches, lookup

    avail = available_hardware(artifact_dir)
    try:
        known = lookup(hardware).key
    except ExanteError:
        known = None
    if known is not None:
        hint = f" ({known} is in the hardware catalogue but has no fitted model here)"
    else:
        close = close_matches(hardware, n=4)
        hint = (f" (did you mean {', '.join(close)}?)" if close
                else " (no catalogue device has a close name)")
    return ExanteError(
        f"no fitted model for hardware {hardware!r}{hint}; available: "
        f"{', '.join(avail) if avail else 'none'}; `exante calc --list-hardware` lists the "
        f"catalogue; fit one with `exante fit --hardware {hardware}` from "
        f"datasets/{hardware}/ (measured with `exante sweep`)")


def _locate(hardware: str, artifact_dir) -> tuple[Path, Path]:
    for d in search_dirs(artifact_dir):
        j, m = d / f"{hardware}.joblib", d / f"{hardware}.json"
        if m.is_file() and j.is_file():
            return j, m
        if m.is_file() != j.is_file():
            raise ExanteError(
                f"incomplete artifact for {hardware!r} in {d}: "
                f"{'manifest' if j.is_file() else 'model file'} missing; refit with "
                f"`exante fit --hardware {hardware}`")
    raise _missing(hardware, artifact_dir)


def load_artifact(hardware: str, artifact_dir: str | os.PathLike | None = None, *,
                  use_cache: bool = True) -> Artifact:
    """Load the artifact of ``hardware`` after checking its sha256 (see module docstring).

    With ``use_cache`` a file already verified and loaded in this process (same path,
    size, mtime and manifest checksum) is returned without re-reading it.
    """
    check_hardware_id(hardware)
    jpath, mpath = _locate(hardware, artifact_dir)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExanteError(f"cannot read artifact manifest {mpath} ({exc})") from None
    expected = manifest.get("sha256")
    if not isinstance(expected, str) or len(expected) != 64:
        raise ExanteError(f"artifact manifest {mpath} has no valid sha256; refusing to load "
                          f"{jpath.name}")
    if str(manifest.get("method", "")).startswith(RETIRED_METHOD):
        raise retired_artifact_error(mpath, hardware)
    if manifest.get("hardware") not in (None, hardware):
        raise ExanteError(f"artifact manifest {mpath} is for hardware "
                          f"{manifest.get('hardware')!r}, not {hardware!r}")
    st = jpath.stat()
    ck = os.path.abspath(jpath)
    sig = (st.st_size, st.st_mtime_ns, expected)
    if use_cache and ck in _CACHE and _CACHE[ck][0] == sig:
        return _CACHE[ck][1]
    data = jpath.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ExanteError(
            f"checksum mismatch for {jpath}: manifest says sha256 {expected[:16]}..., the file "
            f"has {actual[:16]}...; refusing to load it (a pickle can run code). Refit with "
            f"`exante fit --hardware {hardware}` or restore the original file")
    fitted = (manifest.get("versions") or {}).get("scikit-learn")
    import sklearn

    if fitted and fitted != sklearn.__version__:
        warnings.warn(
            f"artifact {jpath.name} was fitted with scikit-learn {fitted}, this is "
            f"{sklearn.__version__}; predictions may differ slightly (refit with "
            f"`exante fit --hardware {hardware}`)", ArtifactVersionWarning, stacklevel=2)

    model = load_or_refuse(data, jpath, hardware)      # allow-listed globals only
    art = Artifact(model=model, manifest=manifest, path=jpath)
    if use_cache:
        _CACHE[ck] = (sig, art)
    return art
