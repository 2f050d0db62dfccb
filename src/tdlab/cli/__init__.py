"""The `tdlab` command line."""

import os

# libgomp (torch's OpenMP on Linux) lets a thread that waits at the end of a parallel region spin 300,000 times
# before it sleeps. On a machine shared with busy processes a spinning thread holds the core that the thread it
# waits for needs: 60 GD steps of a 78k-parameter MLP with the sharpness probe, on 2 cores beside 8 busy
# processes, ran 61x slower than alone (a fair share is 5x); with 10,000 spins 10x, and alone within the noise of
# the default (benchmarks/bench_contention.py). libgomp reads this once, when torch is loaded; a user's own
# setting wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from tdlab.cli.app import app  # noqa: E402  (after the environment is set)

__all__ = ["app"]
