"""A small residual network with BatchNorm (He et al. 2016), for images or 1-D signals."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """x + BN(conv(relu(BN(conv(x))))), then ReLU: the basic block of He et al. (2016), at constant width."""

    def __init__(self, width: int, conv: type[nn.Module], norm: type[nn.Module]):
        super().__init__()
        self.conv1 = conv(width, width, 3, padding=1, bias=False)
        self.norm1 = norm(width)
        self.conv2 = conv(width, width, 3, padding=1, bias=False)
        self.norm2 = norm(width)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.norm1(self.conv1(x)))
        return self.relu(x + self.norm2(self.conv2(h)))


class ResNet(nn.Module):
    """Stem (conv, BatchNorm, ReLU), `num_blocks` residual blocks of `width` channels, global average pooling,
    a linear classifier.

    Args:
        in_channels: channels of the input.
        num_classes: outputs.
        width: channels of every block.
        num_blocks: residual blocks.
        dims: 2 for images (N, C, H, W), 1 for signals (N, C, L).

    Example:
        >>> import torch
        >>> ResNet(1, 10, width=4, num_blocks=1)(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, num_blocks: int = 2, dims: int = 2):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims: expected 1 (signals) or 2 (images), got {dims!r}")
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.stem = nn.Sequential(conv(in_channels, width, 3, padding=1, bias=False), norm(width), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(width, conv, norm) for _ in range(num_blocks)))
        self.head = nn.Sequential(pool, nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))
