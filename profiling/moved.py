"""Where issue 19's layout move put each old ``profiling`` module (old path -> new path);
installed by ``profiling/__init__`` (:mod:`profiling.moved_modules`)."""

MOVED = {
    "profiling.capture_dtypes": "profiling.capture.dtypes",
    "profiling.capture_fastpath": "profiling.capture.fastpath",
    "profiling.capture_hooks": "profiling.capture.hooks",
    "profiling.capture_hparams": "profiling.capture.hparams",
    "profiling.capture_meta_reads": "profiling.capture.meta_reads",
    "profiling.capture_ops": "profiling.capture.ops",
    "profiling.capture_recorder": "profiling.capture.recorder",
    "profiling.dataset_txn": "profiling.dataset.txn",
    "profiling.feature_families": "profiling.features.families",
    "profiling.feature_table": "profiling.features.table",
    "profiling.layer_records": "profiling.capture.records",
    "profiling.profiler": "profiling.measure.profiler",
    "profiling.protocol": "profiling.measure.protocol",
    "profiling.reference_set": "profiling.dataset.reference_set",
    "profiling.replay": "profiling.measure.replay",
    "profiling.schema": "profiling.dataset.schema",
}
