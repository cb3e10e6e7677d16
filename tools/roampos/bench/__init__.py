"""Benchmarks behind `make bench`: each section returns (metric, value, target) rows."""
