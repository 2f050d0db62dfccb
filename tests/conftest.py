import matplotlib
import pytest
import torch
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")

# One thread per test process (torch and NumPy's BLAS): on a 2-core machine with `pytest -n 2`, more threads only
# fight each other.
torch.set_num_threads(1)
threadpool_limits(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Put the thread count back after each test (a sweep run in-process sets its own)."""
    yield
    torch.set_num_threads(1)
