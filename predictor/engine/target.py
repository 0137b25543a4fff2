"""The hardware of one prediction, resolved once, and the engine that prices it.

``predict(hardware="t4")`` names the GPU once; :func:`resolve` turns the name into its
catalogue entry and datasheet (peaks in FLOP/s, bandwidth in B/s, power in W), and every
later step (memory check, artifact choice, datasheet transfer) takes the resolved
:class:`Target` instead of looking the name up again.  :func:`load_engine` returns the
artifact whose physics model prices the call: the GPU's own fitted one, else the joint
multi-GPU model's datasheet-driven parameters, else the datasheet transfer of the nearest
measured GPU (:mod:`predictor.engine.transfer`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from predictor.artifacts import Artifact, available_hardware, load_artifact
from predictor.carbon.hardware import HardwareSpec, lookup
from predictor.engine.physics import Datasheet
from predictor.engine.transfer import datasheet_of, transferred_artifact
from profiling.errors import ExanteError

__all__ = ["Target", "resolve", "load_engine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """``name`` as the caller gave it; its catalogue ``spec`` (None for an artifact id the
    catalogue does not know); its ``datasheet`` (None unless a GPU with the numbers a
    datasheet transfer needs)."""

    name: str
    spec: HardwareSpec | None
    datasheet: Datasheet | None
    #: why a catalogue device has no datasheet transfer ("" when it has one or is unknown)
    no_datasheet: str = ""


def resolve(hardware: str) -> Target:
    """Resolve ``hardware`` (catalogue key, name or alias, or a private artifact id) once."""
    try:
        spec = lookup(hardware)
    except ExanteError:
        log.debug("%r is not in the catalogue: an artifact id only", hardware)
        return Target(hardware, None, None)
    try:
        ds = datasheet_of(spec)
    except ExanteError as exc:
        log.debug("no datasheet transfer to %s: %s", spec.key, exc)
        return Target(hardware, spec, None, str(exc))
    return Target(hardware, spec, ds)


def load_engine(target: Target, artifact_dir=None) -> Artifact:
    """The artifact of ``target``: its own under the given name; else, for a catalogue GPU
    with a datasheet, the joint model or a datasheet transfer (labelled in every prediction's
    warnings); else :func:`~predictor.artifacts.load_artifact`'s clear ``ExanteError``."""
    fitted = available_hardware(artifact_dir)
    if target.name not in fitted and target.datasheet is not None and target.spec is not None:
        return transferred_artifact(target.spec, artifact_dir, dst=target.datasheet)
    if target.no_datasheet and target.spec is not None and target.spec.key not in fitted:
        note = f" (catalogue note: {target.spec.notes})" if target.spec.notes else ""
        raise ExanteError(f"{target.no_datasheet}{note}; no fitted model for it either. "
                          "Predict a GPU whose datasheet is complete (`exante calc "
                          "--list-hardware`), or measure this one (`exante sweep`, then "
                          "`exante fit --hardware " + target.spec.key + "`)")
    return load_artifact(target.name, artifact_dir)
