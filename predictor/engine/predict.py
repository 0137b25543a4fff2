"""``predict(model, inputs, ...)``: GPU time (s) and total board energy (J) of one eager call.

The DESIGN.md §4 Python contract::

    p = predict(model, inputs, mode="inference", dtype="fp32", hardware="h100", optimizer=None)
    p.energy_j, p.time_s, p.energy_j_low, p.energy_j_high, p.layers, p.memory_gb

The engine is the physics model of eager PyTorch (host events + roofline GPU time + power,
calibrated on whole-model measurements).  One path:

1. **capture** (:mod:`predictor.engine.model_capture`): the model runs on the ``meta`` device,
   so no real computation runs and no weight is copied (parameters and buffers are swapped
   for ``meta`` placeholders only for the capture, the user's model is left untouched).  A
   forward that cannot run on ``meta`` (data-dependent control flow) is retried on the
   model's own device with zero inputs when the model is small (<= 50 M parameters), with a
   warning; otherwise an ``ExanteError``.  ``mode="train_step"`` captures in training mode.
   The estimated peak memory (:mod:`predictor.engine.memory`) is checked against the GPU's:
   the input and the weights before the capture, the whole estimate after it.
2. **workload** (:mod:`predictor.engine.workload`): the distinct layer configs with their calls,
   CUDA's fused fast paths, the trainable parameter tensors.
3. **lowering** (:mod:`predictor.engine.lowering`): host events and GPU kernels (FLOPs, bytes).
4. **engine**: the fitted :class:`~predictor.engine.calibrated.CalibratedHardware` of
   ``hardware`` (:mod:`predictor.artifacts`), or for a catalogue GPU without one its datasheet
   transfer (:mod:`predictor.engine.transfer`, :mod:`predictor.engine.joint_transfer`);
   without either, a clear ``ExanteError`` -- numbers are never guessed.
5. **Prediction** (:mod:`predictor.engine.prediction`): time and energy with their intervals,
   the per-layer split, warnings for everything predicted outside the measured ground.

``optimizer=None`` with ``mode="train_step"`` means ``"sgd"`` (SGD with momentum 0.9, the
profiler's default); an optimizer given with ``mode="inference"`` is ignored (noted in
``Prediction.warnings``).  Captures are cached per model object and input shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

from torch import nn

from predictor.artifacts import Artifact
from predictor.engine.calibrated import CalibratedHardware
from predictor.engine.layer_table import clear_feature_cache, features_of
from predictor.engine.memory import ESTIMATE_TOLERANCE, check_fits, estimate_memory
from predictor.engine.model_capture import (
    DEFAULT_TRAIN_OPTIMIZER,
    DTYPES,
    MEMORY_FORMATS,
    MODES,
    OPTIMIZERS,
    REAL_DEVICE_FALLBACK_MAX_PARAMS,
    autocast_inputs,
    capture_workload,
    captured,
    check_args,
    check_trainable,
    clear_capture_cache,
    input_bytes,
    meta_inputs,
    resolve_optimizer,
)
from predictor.engine.prediction import METHOD, Prediction
from predictor.engine.result import WorkloadPrediction
from predictor.engine.target import load_engine, resolve
from predictor.engine.workload import Workload, workload_from_capture
from profiling.errors import ExanteError
from profiling.features.api import UnsupportedLayerWarning

__all__ = ["predict", "Prediction", "capture_workload", "MODES", "DTYPES", "OPTIMIZERS",
           "MEMORY_FORMATS", "METHOD", "UnsupportedLayerWarning", "clear_cache",
           "DEFAULT_TRAIN_OPTIMIZER", "REAL_DEVICE_FALLBACK_MAX_PARAMS"]

log = logging.getLogger(__name__)


def clear_cache() -> None:
    """Drop the capture and per-layer feature caches."""
    clear_feature_cache()
    clear_capture_cache()


def _load_or_transfer(hardware: str, artifact_dir):
    """The artifact of ``hardware``; without one, a catalogue GPU's datasheet transfer from a
    measured GPU (:func:`predictor.engine.target.load_engine`)."""
    return load_engine(resolve(hardware), artifact_dir)


def _state_bytes(model: nn.Module) -> tuple[int, int]:
    """(bytes of the parameters and buffers, elements of the trainable parameters)."""
    seen, total, trainable = set(), 0, 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
        if isinstance(t, nn.Parameter) and t.requires_grad:
            trainable += t.numel()
    return int(total), int(trainable)


def predict(model: nn.Module, inputs, mode: str = "inference", dtype: str = "fp32",
            hardware: str = "h100", optimizer: str | None = None, *,
            memory_format: str = "contiguous", grad_scaler: bool = False,
            torch_version: str | None = None, artifact_dir=None,
            cache: bool = True) -> Prediction:
    """Predict the time (s) and total board energy (J) of one eager call on the whole batch,
    with the physics model of eager PyTorch of ``hardware``.

    Returns a :class:`Prediction`: ``energy`` and ``time`` are
    :class:`~predictor.engine.interval.Interval` s (also flat: ``energy_j``,
    ``energy_j_low`` ... ``time_s_high``), ``layers`` the per-layer split, ``warnings``
    everything predicted outside the measured ground, ``memory_gb`` the estimated peak.

    ``inputs``: a tensor or tuple of tensors including the batch dimension (any device,
    ``meta`` included), or a shape tuple (batch first) for a single float input.
    ``mode``: "inference" | "train_step"; ``dtype``: "fp32" | "bf16" | "fp16" (autocast);
    ``optimizer``: None | "sgd" | "adam" | "adamw" (train_step; None means "sgd").
    ``memory_format``: "contiguous" | "channels_last" (model and a 4-D input in NHWC).
    ``grad_scaler``: train_step with ``torch.amp.GradScaler`` (fp16 training).
    ``torch_version``: the torch version the call will run on (e.g. "2.4.1"), recorded in the
    workload and the prediction; the artifact's measured versions are in
    ``Prediction.torch_versions_modelled``.
    ``artifact_dir``: a folder with ``<hardware>.joblib``/``.json`` searched before
    ``$EXANTE_ARTIFACT_DIR`` and the package's ``predictor/artifacts/``.
    ``cache``: reuse the capture of the same model object when its structural fingerprint
    and the input shapes are unchanged (the per-config layer features are always cached).

    Raises :class:`ExanteError` for values outside these, a train_step of a model without
    trainable parameters, a workload whose estimated memory exceeds the GPU's, a hardware
    with neither an artifact nor a catalogue datasheet, and an artifact that is not a
    physics model.
    """
    if not isinstance(model, nn.Module):
        raise ExanteError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_args(mode, dtype, optimizer, memory_format, grad_scaler, torch_version)
    check_trainable(model, mode)
    notes: list[str] = []
    optimizer = resolve_optimizer(mode, optimizer, notes)
    args, batch = meta_inputs(inputs, memory_format)
    weights_bytes, trainable = _state_bytes(model)
    in_bytes = input_bytes(args)
    target = resolve(hardware)
    check_fits(in_bytes + weights_bytes, target.spec, "the input and the weights alone")
    args = autocast_inputs(args, dtype)
    art = load_engine(target, artifact_dir)
    if not isinstance(art.model, CalibratedHardware):
        raise ExanteError(
            f"the artifact of {hardware!r} ({art.path}) is not a physics model of eager PyTorch "
            f"(it holds a {type(art.model).__name__}); predict accepts only physics-model "
            "artifacts: refit it from whole-model rows (datasets/<hw>/models.csv + "
            "workloads.jsonl) with `exante fit --hardware <hw>`")
    cap = captured(model, args, dtype, mode == "train_step", notes, cache, memory_format)
    if not cap.layers:
        raise ExanteError("the model executed no layer (nothing to predict)")
    version = torch_version.strip() if torch_version else None
    w = workload_from_capture(model, cap.layers, mode=mode, dtype=dtype, batch=batch,
                              optimizer=optimizer, zero_cost_ops=cap.zero_cost,
                              notes=tuple(notes), memory_format=memory_format,
                              grad_scaler=grad_scaler, torch_version=version)
    mem = estimate_memory(w, weights_bytes=weights_bytes, trainable_numel=trainable,
                          inputs_bytes=in_bytes)
    fit_note = check_fits(mem.total_bytes, target.spec, f"largest part {mem.largest_part()}",
                          tolerance=ESTIMATE_TOLERANCE)
    if fit_note:
        notes.append(fit_note)
        warnings.warn(fit_note, UserWarning, stacklevel=2)
    log.debug("predict %s on %s (%s): %d layer configs, batch %d, %s %s",
              type(model).__name__, target.name, art.manifest.get("id"), len(w.layers), batch,
              mode, dtype)
    p = _predict_calibrated(art, w, notes)
    modelled = list(art.model.domain.get("torch_versions", ()))
    if version and modelled and version not in modelled:
        notes.append(f"torch {version} was never measured on {p.hardware} (measured: "
                     f"{', '.join(modelled)}); predicted as for those")
    return dataclasses.replace(p, memory_gb=mem.total_gb, memory_format=memory_format,
                               grad_scaler=grad_scaler, torch_version=version,
                               torch_versions_modelled=modelled)


def _predict_calibrated(art: Artifact, w: Workload, notes: list[str]) -> Prediction:
    """``predict`` of workload ``w`` through the artifact's
    :class:`~predictor.engine.calibrated.CalibratedHardware` (or a transferred one)."""
    ch: CalibratedHardware = art.model
    mode, dtype, optimizer = w.mode, w.dtype, w.optimizer
    if mode not in ch.modes:
        notes.append(f"mode {mode} was never measured on {ch.hardware} (fitted: "
                     f"{', '.join(ch.modes)}); predicted from the same physics, interval as fitted")
    if mode == "train_step" and optimizer not in ch.optimizers:
        notes.append(f"optimizer {optimizer} was never measured on {ch.hardware} (fitted: "
                     f"{', '.join(ch.optimizers) or 'none'}); its foreach kernels are counted "
                     "from torch.optim's algorithm")
    r = ch.predict_workload(w)
    notes.extend(r.notes)
    for msg in r.notes:
        warnings.warn(msg, UnsupportedLayerWarning if msg == r.unpriced_note else UserWarning,
                      stacklevel=4)
    unsupported = [{"type": w.layers[i].config.type, "names": list(w.layers[i].names),
                    "count": w.layers[i].count, "reason": why} for i, why in r.unpriced]
    if art.manifest.get("measured") is False:
        notes.append("artifact NOT fitted on measurements ("
                     f"{art.manifest.get('not_measured_reason') or 'synthetic or estimated data'}): "
                     "these numbers say nothing about real hardware")
    if r.regime == "host":
        notes.append("host-bound (launch-limited) workload: its time varies between host "
                     "machines; CUDA graphs or larger batches usually make it cheaper and stabler")
    ds = ch.datasheet
    T, E = r.time_s.value, r.energy_j.value
    return Prediction(
        energy=r.energy_j, time=r.time_s, energy_dynamic_j=E - ds.idle_w * T,
        power_w=r.power_w, hardware=ch.hardware, mode=mode, dtype=dtype, batch=w.batch,
        optimizer=optimizer, layers=_layer_rows(r), unsupported=unsupported, warnings=notes,
        method=METHOD,
        artifact={"id": art.manifest.get("id"), "sha256": art.manifest.get("sha256"),
                  "created": art.manifest.get("created"),
                  "training_data_digest": art.manifest.get("training_data_digest")},
        terms={"time_host_s": r.time_host_s, "time_gpu_s": r.time_gpu_s,
               "regime": r.regime, "host_bound": r.regime == "host",
               "idle_power_w": float(ds.idle_w)})


def _layer_rows(r: WorkloadPrediction) -> list[dict]:
    """The per-layer table: each row is its own layer config's (joined by position, never by
    display name), with its shape features (empty where its feature function failed: the
    engine names that layer in the warnings)."""
    rows = []
    for s in r.layers:
        x = s.layer
        f = features_of(x.config)[0] if x.supported else {}
        rows.append({**s.to_row(), "source": "physics", "supported": x.supported,
                     "features": dict(f)})
    return rows
