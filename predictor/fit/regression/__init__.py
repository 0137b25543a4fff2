"""Per-layer regression, model-level composition and prediction intervals.

Everything here follows the scikit-learn estimator contract (``__init__`` stores parameters
only, ``fit`` returns ``self``, learned attributes end in ``_``, ``predict`` calls
``check_is_fitted``) so the pieces work with ``clone``, ``Pipeline`` and ``GridSearchCV``.

The model (DESIGN.md §4), in the order it is fitted:

1. **Physics constants** learned from the layer rows:

   * ``host_floor_s[mode]`` -- the per-call host floor of eager PyTorch: the 2 % quantile of
     the measured per-call time of eager layer rows of that mode.  Predictions are clipped
     from below with ``max(floor, prediction)`` (a tree cannot extrapolate under it anyway).
   * ``active_idle_power_w`` (P_ai) -- the board power while the GPU waits for the host:
     the 25 % quantile of ``power_w`` over the *host-bound band* (eager rows whose time is at
     most twice the floor of their mode).  A low quantile rather than the median because the
     energy above it must be >= 0 to be modelled in log space (below).

2. **Per-layer regressors** (:class:`LayerRegressor`), one sub-model per layer type, each in
   log space and *relative to a roofline prior*: ``log y = log prior(x) + f_type(x)`` where
   ``prior = θ0 + θ1·flops + θ2·bytes`` (non-negative, fitted per (mode, dtype, exec) by
   relative least squares) and ``f_type`` is a gradient-boosting / random-forest /
   sparse-polynomial model of the log1p features plus one-hots.  Trees cannot extrapolate;
   modelling the *ratio to a roofline* means that outside the training range the prediction
   still scales with FLOPs and bytes instead of flattening.  Two targets:

   * ``time_s`` per call;
   * ``energy_active_j = max(energy_j - P_ai·time_s, 0.02·P_ai·time_s)`` -- the energy above
     active idle (the floor keeps host-bound rows, whose value is noise around 0, in log
     space; their total energy is dominated by ``P_ai·time`` anyway).

   A layer's energy per call is then ``P_ai·time + energy_active``.  A *global* model over all
   types (no type information) predicts layer types with fewer than ``min_type_rows`` rows or
   never seen in fitting ("closest family"), and a *shape-only* global model (input/output
   numel, params, batch, dtype size) predicts layers that have no feature function at all.

3. **Optimizer step** (:class:`OptimizerStepRegressor`): ``train_step - forward_backward``
   differences of the same layer config, per optimizer, fitted as
   ``Δ = h·[params > 0] + k·params`` (non-negative, relative least squares).  A layer's
   train-step cost is ``forward_backward + Δ``; nothing constant is assumed about
   θ = E_train/E_inference -- it follows from the per-mode layer models and the params.

4. **Model-level terms** (:class:`ModelComposer`) from whole-model rows:
   ``T = a·Σt + a_opt·Σt_opt + b·n_calls + c`` (launch gaps, loss, zero_grad) and
   ``E = p·T + d·ΣE_active + d_opt·ΣE_opt_active`` (p ≈ P_ai: the whole model's wall time at
   active-idle power, plus the layers' dynamic energy with a fusion/additivity factor).
   Non-negative relative least squares (rows weighted by 1/y²), per (mode, dtype) with
   hierarchical shrinkage: each group's coefficients are pulled weakly towards its parent's
   (root: the physical prior a = a_opt = d = d_opt = 1, b = c = 0, p = P_ai), so a group with
   few rows stays physical.

5. **Intervals** (:class:`Uncertainty`): split-conformal on the log-ratio residuals
   ``log(y/ŷ)`` of whole-model rows predicted out-of-fold by grouped cross-validation (folds
   by model family; layer rows that appear only in held-out families are dropped from the
   fold's training data).  Separate residual pools for host-bound predictions (predicted
   power < ``host_power_factor · P_ai``) and GPU-bound ones, per mode, with fallbacks to
   pooled residuals when a pool is small.  When the dataset holds the same configuration
   measured in different sessions, the quantiles are widened by the cross-session spread
   (see :meth:`Uncertainty.add_cross_session`).

Layout (each module imports only the ones above it):

* :mod:`.design` -- feature columns, design matrix, base-estimator families, error metrics;
* :mod:`.nnls` -- non-negative relative least squares; :mod:`.physics_constants` -- host
  floor, active-idle power, energy above active idle;
* :mod:`.roofline` -- :class:`RooflinePrior`; :mod:`.layer_regressors` -- :class:`LayerRegressor`,
  :class:`OptimizerStepRegressor`; :mod:`.composer` -- :class:`ModelComposer`;
  :mod:`.uncertainty` -- :class:`Uncertainty`;
* :mod:`.training_rows` -- row cleaning, config keys, optimizer and cross-session pairs;
* :mod:`.hardware_model` -- :class:`HardwareModel`, :func:`model_level_frame`;
* :mod:`.cross_validation` -- :func:`compare_families`, :func:`cross_validate_models`;
* :mod:`.fitting` -- :func:`build_hardware_model`.

This package re-exports every name of the former single module (private helpers included,
e.g. ``_cat``, ``_config_groups``, ``_parse_counts``), so ``from predictor import regression
as R; R._cat`` keeps working.
"""

from predictor.fit.regression.composer import _ENERGY_TERMS, _TIME_TERMS, ModelComposer
from predictor.fit.regression.cross_validation import compare_families, cross_validate_models
from predictor.fit.regression.design import (
    _TINY,
    CATEGORIES,
    CORE_NUMERIC,
    FAMILIES,
    OPTIMIZERS,
    SHAPE_NUMERIC,
    _as_frame,
    _cat,
    _fit_quiet,
    _num,
    _types,
    design_matrix,
    error_metrics,
    make_base,
)
from predictor.fit.regression.fitting import _fallback_bounds, _fam_name, build_hardware_model
from predictor.fit.regression.hardware_model import (
    HardwareModel,
    LayerPredictions,
    _fit_core,
    model_level_frame,
)
from predictor.fit.regression.layer_regressors import (
    _TARGETS,
    LayerRegressor,
    OptimizerStepRegressor,
)
from predictor.fit.regression.nnls import _nnls_relative
from predictor.fit.regression.physics_constants import (
    _ACTIVE_IDLE_QUANTILE,
    _ENERGY_FLOOR_FRACTION,
    _HOST_BAND,
    _HOST_FLOOR_QUANTILE,
    _median_idle,
    _mode_floor,
    energy_active,
    estimate_active_idle_power,
    estimate_host_floor,
)
from predictor.fit.regression.roofline import RooflinePrior
from predictor.fit.regression.training_rows import (
    _config_groups,
    _config_keys,
    _key_table,
    _pairs_for_optimizer,
    _parse_counts,
    _session_ids,
    clean_layers,
    clean_models,
    cross_session_deviations,
)
from predictor.fit.regression.uncertainty import Uncertainty, _conformal_bounds

__all__ = [
    "CORE_NUMERIC",
    "SHAPE_NUMERIC",
    "CATEGORIES",
    "FAMILIES",
    "make_base",
    "design_matrix",
    "RooflinePrior",
    "LayerRegressor",
    "OptimizerStepRegressor",
    "ModelComposer",
    "Uncertainty",
    "HardwareModel",
    "compare_families",
    "error_metrics",
    "build_hardware_model",
    "estimate_host_floor",
    "estimate_active_idle_power",
    "energy_active",
    "model_level_frame",
    "cross_validate_models",
]
