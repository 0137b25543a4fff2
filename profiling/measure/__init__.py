"""Measuring time (s) and energy (J) on a device, one procedure for everything (DESIGN.md §2).

Modules (imports flow down): ``measurement`` (Window, Measurement), ``metering`` (one checked
window read), ``idle`` / ``environment`` (idle power, provenance), ``protocol`` (the procedure:
``measure``); ``workload`` (ReplayCall + shared helpers), ``graphs`` (CUDA-graph execution),
``layer_replay`` (one layer alone), ``replay`` (the whole model, the reference; re-exports the
builders); ``session`` (ProfileSession, open_meter), ``profile_result`` (ProfileResult),
``whole_model`` (measure_whole_model), ``profiler`` (profile_model). This package imports nothing.
"""
