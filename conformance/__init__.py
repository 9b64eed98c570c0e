"""Conformance suites: check zmesh against vector files (ours and public ones)."""
