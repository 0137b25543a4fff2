"""Artifacts: a tampered file with a *matching* manifest is refused before any of its code
runs (restricted unpickler); a named artifact folder must exist and hold an artifact."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle

import joblib
import numpy as np
import pytest

from predictor import artifacts as A
from predictor.artifacts.safe_load import UnsafePickleError, restricted_load
from profiling.errors import ExanteError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(A.ARTIFACT_ENV, raising=False)


class _Payload:
    """Unpickling calls ``func(*args)``; every payload here would create ``marker``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _forge(folder, hw: str, data: bytes) -> None:
    """Write ``data`` as ``<hw>.joblib`` with a manifest whose sha256 matches it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hw}.joblib").write_bytes(data)
    man = {"format": A.MANIFEST_FORMAT, "hardware": hw, "sha256": hashlib.sha256(data).hexdigest(),
           "versions": {}}
    (folder / f"{hw}.json").write_text(json.dumps(man))


def _joblib_bytes(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    return buf.getvalue()


def _payloads(marker):
    from profiling import model_refs

    script = marker.parent / "evil.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\ndef f():\n    return None\n")
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.open": _Payload(open, str(marker), "w"),
        # a project *function* that imports user code: not a class, refused
        "project function": _Payload(model_refs.resolve_model, f"{script}:f"),
        # nested inside a numpy object array (joblib's inner pickle stream)
        "object array": {"a": np.array([_Payload(os.system, f"touch {marker}")], dtype=object)},
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.open",
                                  "project function", "object array"])
def test_tampered_artifact_with_matching_manifest_is_refused_before_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    data = _joblib_bytes(_payloads(marker)[kind])
    _forge(tmp_path / "art", "h100", data)
    with pytest.raises(ExanteError, match=r"refusing to load .*h100\.joblib.*not") as ei:
        A.load_artifact("h100", tmp_path / "art", use_cache=False)
    assert "\n" not in str(ei.value)
    assert not marker.exists()


def test_plain_pickle_opcodes_are_checked_too(tmp_path):
    marker = tmp_path / "pwned"
    # protocol 0: GLOBAL + REDUCE, and INST (calls the class) on a project class
    for data in (pickle.dumps(_Payload(os.system, f"touch {marker}"), protocol=0),
                 b"(S'x'\nipredictor.lifecycle.scenario\nTrainingRun\n.",
                 b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."):
        with pytest.raises(UnsafePickleError):
            restricted_load(data)
    assert not marker.exists()


def test_calling_a_project_class_is_refused_but_its_state_is_not():
    from predictor.carbon.lifecycle import TrainingRun

    run = TrainingRun(1, 10, 2)
    assert restricted_load(_joblib_bytes({"run": run}))["run"] == run   # NEWOBJ + BUILD
    crafted = b"\x80\x04cpredictor.lifecycle.scenario\nTrainingRun\nK\x01K\nK\x02\x87R."
    with pytest.raises(UnsafePickleError, match="by calling it"):
        restricted_load(crafted)


def test_allowed_content_round_trips():
    from collections import OrderedDict

    obj = {"arr": np.arange(6.0).reshape(2, 3), "f": np.float32(1.5), "od": OrderedDict(a=1),
           "names": np.array(["x", "y"], dtype=object), "t": (1, "a", None, 2.5), "s": {1, 2}}
    back = restricted_load(_joblib_bytes(obj))
    np.testing.assert_array_equal(back["arr"], obj["arr"])
    assert back["f"] == np.float32(1.5) and back["od"] == obj["od"] and back["s"] == {1, 2}
    assert list(back["names"]) == ["x", "y"] and back["t"] == obj["t"]


def test_shipped_h100_artifact_loads_restricted_and_transfer_predicts():
    from torch import nn

    from predictor import predict

    art = A.load_artifact("h100", use_cache=False)
    assert type(art.model).__name__ == "CalibratedHardware"
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    p100 = predict(model, (32, 64), hardware="h100")
    pa100 = predict(model, (32, 64), hardware="a100")
    assert p100.energy_j > 0 and pa100.energy_j > 0 and pa100.time_s != p100.time_s


def test_sklearn_artifact_round_trips_restricted(tmp_path):
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = X @ [1.0, 2.0, 3.0]
    for est in (make_pipeline(StandardScaler(), RandomForestRegressor(5, random_state=0)),
                GradientBoostingRegressor(n_estimators=5)):
        est.fit(X, y)
        A.save_artifact(est, "hwx", tmp_path)
        back = A.load_artifact("hwx", tmp_path, use_cache=False).model
        np.testing.assert_allclose(back.predict(X), est.predict(X))


@pytest.mark.parametrize("setup,fragment", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no fitted model"),
])
def test_named_artifact_folder_is_checked_never_a_silent_fallback(tmp_path, monkeypatch,
                                                                 setup, fragment):
    folder = setup(tmp_path)
    with pytest.raises(ExanteError, match=fragment):
        A.load_artifact("h100", folder)                       # the argument
    monkeypatch.setenv(A.ARTIFACT_ENV, str(folder))
    with pytest.raises(ExanteError, match=f"{A.ARTIFACT_ENV} .*{fragment}"):
        A.load_artifact("h100")                               # the environment variable
    from torch import nn

    from predictor import predict

    with pytest.raises(ExanteError, match=fragment):
        predict(nn.Linear(4, 1), (2, 4), hardware="h100")
