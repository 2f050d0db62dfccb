"""The `tdlab` command line."""

import os

# libgomp (torch's OpenMP on Linux) lets a thread that waits at the end of a parallel region spin 300,000 times
# before it sleeps. On a machine shared with busy processes a spinning thread holds the core that the thread it
# waits for needs. Measured on 2 cores at load average 8-10 (other tdlab processes), `tdlab run edge-of-stability`
# (13 s alone), two rounds: 543 and 600 s with 10,000 spins (the earlier setting), 161 and 237 s with PASSIVE (idle
# threads sleep at once), 208 and 324 s on one thread; beside 8 pinned busy loops (benchmarks/bench_contention.py) the
# default spinning was 61x slower than alone, a fair share 5x. libgomp reads this once, when torch is loaded; a
# user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tdlab.cli.app import app  # noqa: E402  (after the environment is set)

__all__ = ["app"]
