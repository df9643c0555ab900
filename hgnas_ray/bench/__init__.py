"""Benchmarks that measure the project against external ground truth (Ray-free core)."""
