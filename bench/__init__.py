"""``make bench``: side-by-side ratios, results in docs/benchmarks.md (see bench/run.py)."""
