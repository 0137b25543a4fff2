"""A catalogue GPU with no rows, predicted by the joint multi-GPU model (``joint.json``).

Its parameters are the joint model's shared ones carried to its datasheet
(:func:`predictor.engine.joint.gpu_theta`) with the corrections of the measured GPUs nearest to it by
datasheet (:meth:`predictor.engine.joint.JointPhysicsModel.corrections_for`); its interval is the
H100's widened, in quadrature, by the leave-one-GPU-out residual quantile of
``experiments/multigpu/run.py`` (stored in ``joint.json``; without it, the datasheet-distance
formula of :func:`predictor.engine.transfer.transfer_halfwidth`).  Every prediction says so, and
where its energy comes from (a power model in fractions of TDP and idle power learned on the
GPUs with power data)."""

from __future__ import annotations

import math

from predictor.engine.transfer import TransferredHardware, transfer_halfwidth

__all__ = ["joint_artifact"]

_CACHE: dict = {}


def _halfwidths(d: dict) -> dict:
    return {tuple(k.split("/", 1)): float(v) for k, v in d.items()}


def joint_artifact(spec, dst, artifact_dir=None):
    """An in-memory :class:`~predictor.artifacts.Artifact` for catalogue GPU ``spec`` built
    from the first ``joint.json`` found, or None when there is none."""
    from predictor.artifacts import Artifact, search_dirs
    from predictor.fit.joint_fit import JOINT_FILE, load_joint

    found = load_joint(artifact_dir)
    if found is None:
        return None
    jm, d = found
    key = (spec.key, d.get("training_data_digest"), d.get("created"))
    if key in _CACHE:
        return _CACHE[key]
    model = jm.physics_model(spec.key, dst)
    widen = d.get("transfer_halfwidth") or transfer_halfwidth(jm.reference, dst)
    gpus = ", ".join(jm.gpus_)
    label = (f"datasheet-driven: {spec.key} was never measured; parameters of the joint model "
             f"fitted on {gpus}, carried to its datasheet with the corrections of the measured "
             "GPUs nearest to it; energy: " + jm.energy_source(spec.key) + "; interval widened "
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
