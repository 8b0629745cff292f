"""Benchmarks against the peers (`make bench`); figures go to docs/benchmarks.md."""
