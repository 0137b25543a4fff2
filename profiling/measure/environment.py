"""Provenance of a measuring session: device, driver, power limit, software versions, date."""

from __future__ import annotations

import logging
import platform
from datetime import datetime, timezone

from profiling.measure.measurement import PROTOCOL_VERSION
from profiling.measure.metering import meter_info, opt_float
from profiling.meters.base import EnergyMeter

__all__ = ["environment_info"]

logger = logging.getLogger(__name__)


def environment_info(meter: EnergyMeter) -> dict:
    """Provenance for a dataset: device, driver, power limit, software versions, date (UTC).

    Never includes a hostname or user name.
    """
    info = meter_info(meter)
    env = {
        "gpu_name": info.get("gpu_name"),
        "driver": info.get("driver"),
        "power_limit_w": opt_float(info.get("power_limit_w")),
        "sm_clock_mhz": opt_float(info.get("sm_clock_mhz")),
        "temperature_c": opt_float(info.get("temperature_c")),
        "meter": getattr(meter, "name", None),
        "measured": bool(getattr(meter, "measured", True)),
        "torch_version": None,
        "cuda_version": None,
        "cudnn_version": None,
        "allow_tf32_matmul": None,
        "allow_tf32_cudnn": None,
        "python_version": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol_version": PROTOCOL_VERSION,
    }
    if info.get("estimated"):
        env["estimated"] = True
        env["rated_power_w"] = info.get("rated_power_w")
        env["rated_power_source"] = info.get("rated_power_source")
    if info.get("cpu_name"):
        env["cpu_name"] = info["cpu_name"]
    try:
        import torch  # lazy: reading provenance must not load torch (nor a CUDA context) by itself
    except ImportError:
        return env
    env["torch_version"] = str(torch.__version__)
    env["cuda_version"] = getattr(torch.version, "cuda", None)
    try:
        env["cudnn_version"] = torch.backends.cudnn.version()
    except (RuntimeError, AttributeError) as exc:  # cuDNN present but unusable
        logger.debug("cuDNN version unreadable: %s", exc)
        env["cudnn_version"] = None
    try:
        env["allow_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        env["allow_tf32_cudnn"] = bool(torch.backends.cudnn.allow_tf32)
    except AttributeError as exc:  # a torch build without these switches: left None
        logger.debug("TF32 flags unreadable: %s", exc)
    return env
