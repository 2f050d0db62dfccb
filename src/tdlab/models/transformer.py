"""A small causal transformer language model, as researchers train them: PyTorch's own fused attention.

The model is `nn.TransformerEncoder` with a causal mask over token and position embeddings, and an output layer
tied to the token embedding (Press & Wolf 2017). Its attention runs through `F.scaled_dot_product_attention`
(flash or memory-efficient kernels where available), which has no double backward: tdlab's oracles select the
math backend for second-order queries (`tdlab.oracles.differentiable_kernels`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CausalTransformer(nn.Module):
    """Decoder-only language model: logits[b, t] = W_E h_L[b, t] + c, h_0 = E[tokens] + P[positions].

    Args:
        vocab_size: number of tokens V.
        d_model: width of the residual stream.
        num_heads: attention heads per layer (divides d_model).
        num_layers: pre-norm transformer layers (`nn.TransformerEncoderLayer(norm_first=True)`).
        max_length: longest sequence (positions are learned).
        dim_feedforward: hidden width of the MLP of each layer (default 4 d_model).
        dropout: dropout probability inside the layers.
        tie_weights: the output layer shares the token embedding matrix.

    `forward(input_ids, attention_mask=None)` takes (B, T) token ids and an optional (B, T) mask (1 = real
    token, 0 = padding) and returns (B, T, V) logits; position t attends to positions <= t only.

    Example:
        >>> model = CausalTransformer(vocab_size=11, d_model=8, num_heads=2, num_layers=1, max_length=6)
        >>> model(torch.randint(0, 11, (3, 5))).shape
        torch.Size([3, 5, 11])
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        max_length: int = 64,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"num_heads: expected a divisor of d_model = {d_model}, got {num_heads}")
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_length, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward or 4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        if tie_weights:
            self.head.weight = self.tokens.weight

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)
        h = self.tokens(input_ids) + self.positions(positions)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=h.device, dtype=h.dtype)
        padding = None if attention_mask is None else attention_mask == 0
        h = self.encoder(h, mask=causal, src_key_padding_mask=padding, is_causal=True)
        return self.head(self.norm(h))
