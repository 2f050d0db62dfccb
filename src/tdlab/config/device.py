"""Which torch device a config's `device` field names."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' means CUDA when available, else CPU; any other value is passed to `torch.device`.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
