"""The performance benchmark of issue 7 (bench/perf/run.py)."""
