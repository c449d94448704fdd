"""Benchmark harness: the submission endpoint beside three baselines (`python -m bench.run`)."""
