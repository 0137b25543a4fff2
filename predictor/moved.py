"""Where issue 19's layout move put each old ``predictor`` module (old path -> new path).

Installed by ``predictor/__init__`` through :func:`profiling.moved_modules.install`: the old
paths still import, with a DeprecationWarning.  Old paths that are now packages
(``predictor.fit``, ``predictor.carbon``, ``predictor.cli``) forward their old public names
from the package ``__init__``.
"""

MOVED = {
    "predictor.autocast": "predictor.engine.autocast",
    "predictor.calc": "predictor.carbon.calc",
    "predictor.calibrate": "predictor.fit.calibrate",
    "predictor.calibrate_cli": "predictor.cli.calibrate",
    "predictor.calibrated": "predictor.engine.calibrated",
    "predictor.cli_checks": "predictor.cli.checks",
    "predictor.cli_help": "predictor.cli.help",
    "predictor.cli_output": "predictor.cli.output",
    "predictor.compare": "predictor.search.compare",
    "predictor.generators": "predictor.search.generators",
    "predictor.hardware": "predictor.carbon.hardware",
    "predictor.joint": "predictor.engine.joint",
    "predictor.joint_fit": "predictor.fit.joint_fit",
    "predictor.joint_transfer": "predictor.engine.joint_transfer",
    "predictor.lifecycle": "predictor.carbon.lifecycle",
    "predictor.llm": "predictor.carbon.llm",
    "predictor.lowering": "predictor.engine.lowering",
    "predictor.memory": "predictor.engine.memory",
    "predictor.model_capture": "predictor.engine.model_capture",
    "predictor.nas": "predictor.search.nas",
    "predictor.physics": "predictor.engine.physics",
    "predictor.predict": "predictor.engine.predict",
    "predictor.prediction": "predictor.engine.prediction",
    "predictor.progress": "predictor.cli.progress",
    "predictor.serve": "predictor.cli.serve",
    "predictor.timing": "predictor.carbon.timing",
    "predictor.transfer": "predictor.engine.transfer",
    "predictor.whole_model": "predictor.fit.datasets",
    "predictor.workload": "predictor.engine.workload",
}

_GONE = ("the per-layer regression engine was removed in issue 19: predictor.predict() runs the "
         "calibrated physics engine; the per-layer regressor survives only inside `exante bench "
         "irene` (predictor.bench.layer_regressor)")
REMOVED = {
    "predictor.predict_regression": _GONE,
    "predictor.regression": _GONE,
}
"""Old module paths that no longer exist (old path -> why): importing one is a clear error."""
