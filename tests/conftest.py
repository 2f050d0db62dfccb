import matplotlib
import torch
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")

# One thread per test process (torch and NumPy's BLAS): on a 2-core machine with `pytest -n 2`, more threads only
# fight each other.
torch.set_num_threads(1)
threadpool_limits(1)
