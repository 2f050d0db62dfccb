"""Closed forms, pure NumPy (SciPy where it helps): one function per formula, each with its source."""
