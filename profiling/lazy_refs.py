"""MODEL_REF schemes whose builders live in modules imported on first use (torch-free).

``LAZY_REF_SCHEMES[scheme] = "package.module"``: resolving ``scheme:...`` imports that module,
which registers the builder with :func:`profiling.model_refs.register_ref_scheme`. Packages
declare their schemes here instead of importing torch when they are imported, so that
``exante --help`` starts without torch.
"""

LAZY_REF_SCHEMES: dict[str, str] = {}
