"""profiling.dataset: the dataset contract (DESIGN.md §3) -- columns (:mod:`.columns`), cells,
row builders (:mod:`.rows`), atomic locked CSV tables (:mod:`.schema`, the one import for the
contract), atomic files (:mod:`.atomic`), all-or-nothing writes (:mod:`.txn`) and the H100
reference set's workload definitions (:mod:`.reference_set`).
"""
