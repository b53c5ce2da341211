"""Builders of random-weight models for tests and benchmarks (nothing here is downloaded)."""
