"""Life-cycle energy and CO2 of a model: architecture search + training + inference.

The model (seed 004 §3.4–3.8, seed 002 §3.1, DESIGN.md §5)::

    I      = f(M, PT) · PUE                         energy of one inference (per sample)
    T      = Σ_epochs Σ_steps E_train_step(batch)   ≈ E · D · I · θ   (seed 004: T ∝ E·D·I·θ)
    θ      = E_train_step(b) / E_inference(b)       at the same batch b (shown in the report)
    CT     = Σ_h T_h                                architecture search / tuning trials
    E_life = CT + T + I · e                         e = number of requests served
    CO2eq  = E_life · EF  (+ M, SCI's embodied carbon, seed 002 Eq. 1)

Instead of multiplying a per-sample inference energy by θ, the per-call energies come from
``predictor.engine.predict`` (DESIGN.md §4) for each distinct (mode, batch, dtype, optimizer): a
training run costs ``epochs × Σ_steps E_train_step(per-GPU batch) × gpus``; serving costs
``Σ_calls E_inference(batch)``. θ is then reported, not assumed.

Accounting choices (also listed in the report's ``notes``):

- **Batches.** Steps per epoch follow PyTorch: ``DataLoader(drop_last=False)`` gives
  ``ceil(dataset_size / batch_size)`` steps, the last one partial; its cost is predicted
  separately at its own batch size (one more cached predict call), not rounded up.
  ``drop_last=True`` drops it. Serving ``requests`` at ``batch_size`` works the same way.
- **GPUs.** ``gpus > 1`` means data-parallel (DDP): ``batch_size`` is the global batch. When
  it divides evenly, each GPU runs the step at ``batch_size / gpus`` on
  ``ceil(dataset_size / gpus)`` samples (``DistributedSampler`` padding). When it does not, the
  rule is ``numpy.array_split``'s: each global batch of B samples gives ``B mod gpus`` GPUs
  ``ceil(B / gpus)`` samples and the others ``floor(B / gpus)``; an epoch is
  ``floor(dataset_size / B)`` such steps plus the remainder (unless ``drop_last``) split the
  same way; GPUs left with 0 samples are counted idle-free (not charged). Each distinct per-GPU
  batch is predicted once and multiplied by its GPU count; gradient all-reduce and other
  communication are ignored.
- **Tokens.** ``dataset_tokens`` (CLI ``--tokens``) instead of ``dataset_size``: samples =
  ``ceil(tokens / tokens per sample)``, tokens per sample = the element count of the per-sample
  input (the sequence length for token-id inputs ``--input 512``).
- **Energy.** ``energy_j`` is GPU board energy (eager PyTorch, as the predictor defines it).
  ``energy_kwh = energy_j / 3.6e6 / gpu_share_of_server × PUE``; ``gpu_share_of_server`` is off
  (1.0) unless given (seed 002 Table 1 measured 0.74: :data:`predictor.carbon.regions.GPU_SHARE_OF_SERVER`).
- **Intervals.** A stage total is a sum of many steps of the same predicted per-call energy, so
  the prediction errors of one configuration are fully correlated across its steps: low/high
  scale linearly (sum of lows, sum of highs). Stages are also summed low-with-low and
  high-with-high (conservative; they share the same predictor). The interval's nominal
  coverage is the predictor's.
- **Embodied carbon** (optional): ``embodied_kg`` is the embodied CO2 of the hardware that holds
  ``Scenario.gpus`` GPUs, amortised over ``hardware_lifetime_h`` per GPU-hour used:
  ``M = embodied_kg × GPU-hours / (gpus × hardware_lifetime_h)`` (SCI's M = TE · TS · RS).
- Not included: data loading, evaluation passes, checkpointing, idle gaps between trials,
  start-up, networking and storage.

Defaults: PUE 1.58 (seed 004 §3.4, Uptime Institute 2020 average), grid intensity of the world
average 475 gCO2eq/kWh (seed 000 §4.1) when no region or value is given — see
:mod:`predictor.carbon.regions`.

Scenario files (TOML, :func:`load_scenario`)
--------------------------------------------
::

    model = "mlp:in=100,depth=10,width=100,out=1"   # MODEL_REF (required)
    input = "100"                 # per-sample shape "3x224x224", an int, or a list (required)
    input_dtype = "int64"         # optional: float32 (default) | float16 | bfloat16 | int64 | int32
    hardware = "h100"             # predictor hardware id
    pue = 1.58                    # data-centre PUE (>= 1)
    region = "aws:us-east-1"      # or: intensity_g_per_kwh = 120.0   (default: world average)
    gpus = 1                      # default GPU count of every run; size of the embodied hardware
    embodied_kg = 1500.0          # optional, with hardware_lifetime_h = 35040
    gpu_share_of_server = 0.74    # optional whole-server factor (seed 002 Table 1)
    memory_format = "contiguous"  # or "channels_last" (model and a 4-D input in NHWC)
    torch_version = "2.4.1"       # optional: the torch version the runs use (recorded)

    [[training]]                  # one or more; the first is labelled "final" unless labelled
    epochs = 10
    dataset_size = 100000
    batch = 32
    optimizer = "adam"            # sgd | adam | adamw
    dtype = "fp32"                # fp32 | bf16 | fp16 (autocast)
    # gpus = 4, label = "...", drop_last = false, grad_scaler = true (fp16 GradScaler)

    [search]                      # evenly spread trials (SearchPlan.from_trials) ...
    trials = 20
    epochs = [1, 10]              # an int, or [low, high] spread evenly over the trials
    dataset_fraction = [0.1, 1.0] # optional [low, high] fraction of dataset_size
    batch = 32                    # batch, dataset_size, optimizer, dtype, gpus, drop_last and
    dataset_size = 100000         # epochs default to the first [[training]] run's
    seed = 0                      # pairs epochs with fractions when both are ranges
    # ... or explicit trials instead of `trials`:  [[search.runs]]  with [[training]]'s keys

    [inference]
    requests = 1e6                # number of samples served (e in seed 004)
    batch = 1
    dtype = "fp32"                # fp32 | bf16 | fp16

Unknown keys are an error naming the accepted ones. :func:`dump_scenario` writes a Scenario
back as TOML (search trials written out as ``[[search.runs]]``).

Modules (imports flow down this list): ``scenario`` (the plans and their validation),
``report`` (StageReport, LifecycleReport), ``composition`` (:func:`estimate`), ``scenario_io``
(CLI arguments, TOML and dicts in; TOML out). This package re-exports their public names.
"""

from __future__ import annotations

from predictor.carbon.lifecycle.composition import estimate
from predictor.carbon.lifecycle.report import LifecycleReport, StageReport
from predictor.carbon.lifecycle.scenario import (
    DTYPES,
    INPUT_DTYPES,
    OPTIMIZERS,
    STAGES,
    InferencePlan,
    Scenario,
    SearchPlan,
    TrainingRun,
)
from predictor.carbon.lifecycle.scenario_io import (
    SCENARIO_OVERRIDES,
    SCENARIO_REFUSED,
    dump_scenario,
    load_scenario,
    samples_from_tokens,
    scenario_from_args,
    scenario_from_dict,
    scenario_overrides,
)

__all__ = ["DTYPES", "INPUT_DTYPES", "OPTIMIZERS", "SCENARIO_OVERRIDES", "SCENARIO_REFUSED",
           "STAGES", "InferencePlan", "LifecycleReport", "Scenario", "SearchPlan", "StageReport",
           "TrainingRun", "dump_scenario", "estimate", "load_scenario", "samples_from_tokens",
           "scenario_from_args", "scenario_from_dict", "scenario_overrides"]
