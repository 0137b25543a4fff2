"""predictor.search: design search on predicted energy -- model families and NAS spaces as specs
(:mod:`~predictor.search.generators`), :func:`~predictor.search.compare.compare` (designs
ranked by predicted energy, J), and the NAS objective :class:`~predictor.search.nas.EnergyObjective`
(many specs at once through the same lowering rules: :mod:`~predictor.search.nas_vectorised`).
"""
