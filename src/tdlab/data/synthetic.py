"""Synthetic regression tasks with a known teacher, so that risks can be compared with closed forms."""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from tdlab.data.dataset import Dataset

TEACHERS = ("linear", "mlp")
_NORMALISATION_SAMPLES = 4096


def synthetic_regression(
    n_train: int = 1000,
    n_test: int = 1000,
    in_features: int = 10,
    out_features: int = 1,
    noise: float = 0.1,
    teacher: str = "linear",
    seed: int = 0,
    *,
    teacher_width: int = 100,
) -> Dataset:
    """Teacher-student regression: x ~ N(0, I_d), y = f*(x) + noise * eps with eps ~ N(0, I_out), on train and
    test alike (so the Bayes risk is noise^2 per output).

    Teachers, each output with unit signal variance E[f*_k(x)^2] = 1:
        "linear": f*(x) = B^T x, columns of B uniform on the unit sphere (exactly E[f*_k^2] = |B_k|^2 = 1);
            `info["beta"]` holds B, shape (d, out).
        "mlp": f*(x) = c * A^T tanh(W x / sqrt(d)) / sqrt(k), W (k, d) and A (k, out) standard Gaussian,
            k = `teacher_width` (a random two-layer network, as in the teacher-student setting of Gardner &
            Derrida 1989 / Saad & Solla 1995); c makes the mean square of each output 1 over 4096 fresh
            inputs.
    `info["noise"]` holds the noise level. Same seed, same teacher and data. The draws happen in the order
    X_train, X_test, teacher, normalisation inputs, train noise, test noise (so X_train depends only on the
    seed, n_train and in_features).

    Example:
        >>> data = synthetic_regression(n_train=50, n_test=20, in_features=5, noise=0.0)
        >>> torch.allclose(data.X_train @ data.info["beta"], data.y_train, atol=1e-6)
        True
    """
    for field_name, value, minimum in (
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("in_features", in_features, 1),
        ("out_features", out_features, 1),
        ("teacher_width", teacher_width, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{field_name}: expected an integer >= {minimum}, got {value!r}")
    if teacher not in TEACHERS:
        raise ValueError(f"teacher: expected one of {', '.join(map(repr, TEACHERS))}, got {teacher!r}")
    if noise < 0:
        raise ValueError(f"noise: expected a non-negative number, got {noise!r}")
    randn = functools.partial(torch.randn, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    X_train, X_test = randn(n_train, in_features), randn(n_test, in_features)
    info: dict[str, object] = {"noise": float(noise)}
    if teacher == "linear":
        beta = randn(in_features, out_features)
        beta = beta / beta.norm(dim=0, keepdim=True)
        info["beta"] = beta.float()

        def f_star(x: Tensor) -> Tensor:
            return x @ beta

    else:
        W, A = randn(teacher_width, in_features), randn(teacher_width, out_features)

        def hidden(x: Tensor) -> Tensor:
            return torch.tanh(x @ W.T / math.sqrt(in_features)) @ A / math.sqrt(teacher_width)

        scale = hidden(randn(_NORMALISATION_SAMPLES, in_features)).square().mean(dim=0).rsqrt()

        def f_star(x: Tensor) -> Tensor:
            return scale * hidden(x)

    y_train = f_star(X_train) + noise * randn(n_train, out_features)
    y_test = f_star(X_test) + noise * randn(n_test, out_features)
    return Dataset(
        X_train.float(),
        y_train.float(),
        X_test.float(),
        y_test.float(),
        task="regression",
        num_classes=None,
        name=f"synthetic-{teacher}",
        info=info,
    )


def gaussian_linear(n: int, d: int, noise: float = 0.1, seed: int = 0, n_test: int = 1000) -> Dataset:
    """The linear model of least-squares theory: y = x^T beta + noise * eps, x ~ N(0, I_d), |beta| = 1,
    eps ~ N(0, 1); n training and `n_test` test examples (`synthetic_regression` with a linear teacher and one
    output). The ridgeless least-squares risk of Hastie et al. (2022; isotropic, r = 1, sigma = noise)
    is its closed form; `info["beta"]` and `info["noise"]` hold beta and sigma.

    Example:
        >>> data = gaussian_linear(n=40, d=20, noise=0.5, seed=1)
        >>> data.X_train.shape, data.y_train.shape, round(data.info["beta"].norm().item(), 6)
        (torch.Size([40, 20]), torch.Size([40, 1]), 1.0)
    """
    data = synthetic_regression(n, n_test, d, 1, noise, "linear", seed)
    return dataclasses.replace(data, name="gaussian-linear")
