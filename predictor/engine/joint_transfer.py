"""A catalogue GPU with no rows, predicted by the joint multi-GPU model (``joint.json``).

Its parameters are the joint model's shared ones carried to its datasheet
(:func:`predictor.engine.joint.gpu_theta`) with the corrections of the measured GPUs nearest to it by
datasheet, but the shared host costs of a generic machine
(:meth:`predictor.engine.joint.JointPhysicsModel.corrections_for`); its interval is the
H100's widened, in quadrature, by the leave-one-GPU-out residual quantile of
``experiments/multigpu/run.py`` (stored in ``joint.json``; without it, the datasheet-distance
formula of :func:`predictor.engine.transferred.transfer_halfwidth`).  Every prediction says so, and
where its energy comes from (a power model in fractions of TDP and idle power learned on the
GPUs with power data)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from predictor.artifacts import Artifact, search_dirs
from predictor.carbon.hardware import HardwareSpec
from predictor.engine.joint import JointPhysicsModel
from predictor.engine.physics import Datasheet
from predictor.engine.transferred import TransferredHardware, transfer_halfwidth
from profiling.errors import ExanteError

__all__ = ["joint_artifact", "load_joint", "JOINT_FILE"]

log = logging.getLogger(__name__)

#: the joint model's file in an artifact folder (written by predictor.fit.joint_fit)
JOINT_FILE = "joint.json"

_CACHE: dict = {}


def _halfwidths(d: dict) -> dict:
    return {tuple(k.split("/", 1)): float(v) for k, v in d.items()}


def load_joint(artifact_dir=None) -> tuple[JointPhysicsModel, dict] | None:
    """(model, manifest-like dict) of the first ``joint.json`` in the artifact search
    folders, or None."""
    for d in search_dirs(artifact_dir):
        f = Path(d) / JOINT_FILE
        if f.is_file():
            data = json.loads(f.read_text(encoding="utf-8"))
            return JointPhysicsModel.from_dict(data["model"]), data
    return None


def joint_artifact(spec: HardwareSpec, dst: Datasheet, artifact_dir=None) -> Artifact | None:
    """An in-memory :class:`~predictor.artifacts.Artifact` for catalogue GPU ``spec``
    (datasheet ``dst``) built from the first ``joint.json`` found, or None when there is
    none."""
    found = load_joint(artifact_dir)
    if found is None:
        return None
    jm, d = found
    key = (spec.key, d.get("training_data_digest"), d.get("created"))
    if key in _CACHE:
        return _CACHE[key]
    log.debug("joint model parameters for %s", spec.key)
    model = jm.physics_model(spec.key, dst)
    widen = d.get("transfer_halfwidth")
    if not widen:
        if jm.reference is None:
            raise ExanteError(f"{JOINT_FILE} has no reference datasheet and no transfer "
                              "half-width; refit it with `exante fit --joint`")
        widen = transfer_halfwidth(jm.reference, dst)
    gpus = ", ".join(jm.gpus_)
    label = (f"datasheet-driven: {spec.key} was never measured; parameters of the joint model "
             f"fitted on {gpus}, carried to its datasheet with the corrections of the measured "
             "GPUs nearest to it (host costs: a generic machine's); energy: "
             + jm.energy_source(spec.key) + "; interval widened "
             f"x/÷{math.exp(widen['gpu']):.2f} GPU-bound, x/÷{math.exp(widen['host']):.2f} "
             "host-bound (in quadrature; "
             + (d.get("transfer_halfwidth_source") or "datasheet-distance formula") + ")")
    dtype_notes = {}
    if "bf16" not in spec.peak_tflops:
        dtype_notes["bf16"] = (f"{spec.key} has no bf16 in its datasheet: the bf16 prediction "
                               "uses its 16-bit peak, i.e. what fp16 autocast would run")
    info = {"datasheet": dst.__dict__, "transferred_from": "joint", "joint_gpus": jm.gpus_,
            "energy_source": jm.energy_source(spec.key), "transfer_halfwidth": widen}
    th = TransferredHardware(spec.key, model, float(d.get("coverage", 0.9)),
                             _halfwidths(d["reference_halfwidth"]),
                             dict(d.get("reference_domain") or {}), info, source="joint",
                             widen=dict(widen), label=label, dtype_notes=dtype_notes)
    path = next(p / JOINT_FILE for p in search_dirs(artifact_dir) if (p / JOINT_FILE).is_file())
    digest = d.get("training_data_digest") or ""
    man = {"hardware": spec.key, "id": f"{spec.key}-joint-{digest[:12]}",
           "transferred_from": "joint", "measured": True, "training_data_digest": digest,
           "created": d.get("created"), "sha256": None,
           "method": "datasheet-driven parameters of the joint multi-GPU physics model "
                     "(predictor.engine.joint)",
           "interval": {"coverage": th.coverage, "transfer_halfwidth_log": widen}}
    out = Artifact(model=th, manifest=man, path=path)
    _CACHE[key] = out
    return out
