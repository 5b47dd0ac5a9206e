"""Benchmarks of the pipeline on the local stack (``bench/run``; see bench/README.md)."""
