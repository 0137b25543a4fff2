"""predictor.engine: the one prediction path -- the calibrated physics model of eager PyTorch.

:func:`~predictor.engine.predict.predict` captures the model on ``meta``
(:mod:`~predictor.engine.model_capture`), builds a :class:`~predictor.engine.workload.Workload`,
lowers it through the registered rules (:mod:`predictor.engine.rules`,
:func:`~predictor.engine.lowering.lower`) to host events and GPU kernels (FLOPs, bytes), and
prices them with the fitted :class:`~predictor.engine.calibrated.CalibratedHardware` of the GPU
(:mod:`~predictor.engine.physics`: host time + roofline GPU time + per-unit power, conformal
intervals) -- or, for a GPU without its own artifact, the joint model or datasheet transfer
(:mod:`~predictor.engine.target`, :mod:`~predictor.engine.transfer`,
:mod:`~predictor.engine.joint_transfer`) -- into a :class:`~predictor.engine.prediction.Prediction`
(time in s, energy in J, each an :class:`~predictor.engine.interval.Interval`).  Fitting lives in
:mod:`predictor.fit`; the map of the code is ``docs/INTERNALS.md``.
"""
