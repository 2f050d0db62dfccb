"""Refuse a model that cannot fit in memory before allocating it, rather than failing (or swapping) halfway.

The model of a `model` section is first built under PyTorch's fake-tensor mode, where every tensor has a shape
and a dtype but no storage and no random draw is made (the global generator is left as it was), so its size is
exact for any architecture of the registry and costs no memory. Training holds at least the weights and their
gradients, plus the buffers (e.g. the fixed features of a random-features model); when that exceeds the memory
available on the run's device (`psutil.virtual_memory().available` on the CPU, `torch.cuda.mem_get_info` on CUDA),
the build stops with one ValueError naming the model's size fields and the estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import psutil
import torch
from torch import nn

GB = 1e9


def training_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of the weights, their gradients and the buffers of `model`, with floating tensors in `dtype`.

    Example:
        >>> training_bytes(nn.Linear(10, 2), torch.float32)  # (20 + 2) weights, and as many gradients
        176
    """

    def size(tensor: torch.Tensor) -> int:
        itemsize = dtype.itemsize if tensor.is_floating_point() else tensor.element_size()
        return tensor.numel() * itemsize

    weights = sum(size(p) for p in model.parameters())
    return 2 * weights + sum(size(b) for b in model.buffers())


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (bytes), or None where it cannot be read (MPS, other accelerators)."""
    if device.type == "cpu":
        return psutil.virtual_memory().available
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


_SIZES: dict[Hashable, tuple[int, int] | None] = {}  # estimates by architecture key, for this process


def _estimate(build: Callable[[], nn.Module], dtype: torch.dtype, key: Hashable | None) -> tuple[int, int] | None:
    """(training bytes, parameter count) of a storage-less build, or None where fake tensors cannot build it;
    remembered under `key` when one is given."""
    if key is not None and key in _SIZES:
        return _SIZES[key]
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode():
            shape = build()
    except (RuntimeError, NotImplementedError):
        size = None
    else:
        size = (training_bytes(shape, dtype), sum(p.numel() for p in shape.parameters()))
    if key is not None:
        if len(_SIZES) >= 256:
            _SIZES.clear()
        _SIZES[key] = size
    return size


def check_fits(
    build: Callable[[], nn.Module],
    device: torch.device,
    dtype: torch.dtype,
    fields: dict[str, object],
    key: Hashable | None = None,
) -> None:
    """Build a storage-less copy of the model with `build` and raise ValueError if training it needs more memory
    than `device` has free; `fields` (the model section) are named in the message. `key`, when given, names the
    architecture (equal keys build equal shapes, whatever their seeds): it is estimated once per process, so the
    members of an ensemble pay for one fake build, not one each.

    A model that the fake-tensor mode cannot build (an operation it does not support) is not estimated: its real
    build goes ahead as before.
    """
    size = _estimate(build, dtype, key)
    if size is None:
        return
    needed, count = size
    free = available_bytes(device)
    if free is not None and needed > free:
        sizes = ", ".join(f"{k}={v}" for k, v in fields.items() if isinstance(v, int) and not isinstance(v, bool))
        raise ValueError(
            f"model: ({sizes}) has {count:,} parameters and needs about {needed / GB:,.1f} GB in {dtype} for its "
            f"weights, gradients and buffers, more than the {free / GB:,.1f} GB free on {device}; make it smaller"
        )
