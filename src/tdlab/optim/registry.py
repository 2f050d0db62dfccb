r"""The one registry of optimisers: every algorithm tdlab trains with, by name, for `tdlab train` (a YAML config's
`optimizer: {name: ..., lr: ..., ...}`), sweeps, the ensembles and the catalogue.

Each algorithm is defined once: `torch.optim`'s class where torch has it, tdlab's own otherwise, whose docstring
holds its lecture form (formula and source). torch's, in the lectures' notation (g the gradient, eta = lr, lambda =
weight_decay, which adds lambda w to g except in AdamW):

- sgd, `torch.optim.SGD` (Robbins & Monro 1951; Polyak 1964; Sutskever et al. 2013): b_1 = g_1,
  b_t = mu b_{t-1} + (1 - tau) g_t; w <- w - eta b (w <- w - eta (g + mu b) with nesterov).
- adam, `torch.optim.Adam` (Kingma & Ba 2015): m <- beta1 m + (1 - beta1) g, v <- beta2 v + (1 - beta2) g^2;
  w <- w - eta m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t).
- adamw, `torch.optim.AdamW` (Loshchilov & Hutter 2019): Adam, and w <- (1 - eta lambda) w outside it.
- rmsprop, `torch.optim.RMSprop` (Tieleman & Hinton 2012): v <- alpha v + (1 - alpha) g^2;
  w <- w - eta g / (sqrt(v) + eps).
- adagrad, `torch.optim.Adagrad` (Duchi, Hazan & Singer 2011): G <- G + g^2; w <- w - eta g / (sqrt(G) + eps).

tdlab's own: sgdw (`SGDW`, decoupled weight decay), proximal-gd (`ProximalGD`, ISTA with an L1 penalty),
projected-gd (`ProjectedGD`, onto a ball or a box named by plain values), newton (`NewtonCG`, Newton-CG on
Hessian-vector products), trust-region (`TrustRegion`, Steihaug-CG trust region), and the lectures' own forms
lecture-momentum, lecture-nesterov, lecture-adagrad, lecture-rmsprop, lecture-adam (`tdlab.optim.reference`), which
run the pure reference rules and say how they relate to torch's.

Names are spelt with hyphens; an underscore is read as a hyphen (`proximal_gd` is `proximal-gd`). An entry may
carry a multi-tensor form (`tdlab.optim.multi_tensor`), which the ensembles run on stacked members; `stacked_names()`
lists those. An optimiser whose class sets `needs_closure = True` is stepped with a closure by `tdlab.train.fit`, one
that sets `create_graph = True` gets gradients that keep their graph (for Hessian-vector products).

To add an optimiser, write a `torch.optim.Optimizer` subclass (docstring: its formula and source) and one
`register` line below; it is then a `name` of every optimiser section.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from tdlab.optim import multi_tensor
from tdlab.optim.multi_tensor import MultiTensorRule
from tdlab.optim.newton import NewtonCG
from tdlab.optim.projected import ProjectedGD
from tdlab.optim.proximal import ProximalGD
from tdlab.optim.reference import LectureAdagrad, LectureAdam, LectureMomentum, LectureNesterov, LectureRMSProp
from tdlab.optim.trust_region import TrustRegion
from tdlab.optim.weight_decay import SGDW

_NOT_HYPERPARAMETERS = ("self", "params", "lr")


@dataclass(frozen=True)
class Registered:
    """A registered optimiser: its name, its class, and its multi-tensor form for stacked members (or None)."""

    name: str
    cls: type[torch.optim.Optimizer]
    stacked: MultiTensorRule | None = None

    @property
    def hyperparameters(self) -> dict[str, inspect.Parameter]:
        """The keyword arguments of the class besides `params` and `lr`."""
        parameters = inspect.signature(self.cls).parameters
        return {name: p for name, p in parameters.items() if name not in _NOT_HYPERPARAMETERS}


OPTIMIZERS: dict[str, Registered] = {}


def register(name: str, cls: type[torch.optim.Optimizer], stacked: MultiTensorRule | None = None) -> None:
    """Register `cls` under `name` (hyphenated), with its multi-tensor form if it has one."""
    if name in OPTIMIZERS:
        raise ValueError(f"name: {name!r} is already registered ({OPTIMIZERS[name].cls.__name__})")
    OPTIMIZERS[name] = Registered(name, cls, stacked)


register("sgd", torch.optim.SGD, MultiTensorRule(multi_tensor.sgd))
register("adam", torch.optim.Adam, MultiTensorRule(multi_tensor.adam, step_in_state=True))
register("adamw", torch.optim.AdamW, MultiTensorRule(multi_tensor.adamw, step_in_state=True))
register("rmsprop", torch.optim.RMSprop)
register("adagrad", torch.optim.Adagrad)
register("sgdw", SGDW, MultiTensorRule(multi_tensor.sgdw))
register("proximal-gd", ProximalGD)
register("projected-gd", ProjectedGD)
register("newton", NewtonCG)
register("trust-region", TrustRegion)
register("lecture-momentum", LectureMomentum)
register("lecture-nesterov", LectureNesterov)
register("lecture-adagrad", LectureAdagrad)
register("lecture-rmsprop", LectureRMSProp)
register("lecture-adam", LectureAdam)


def names() -> list[str]:
    """The registered names, in registration order."""
    return list(OPTIMIZERS)


def stacked_names() -> list[str]:
    """The names whose entry has a multi-tensor form (what the ensembles train)."""
    return [name for name, entry in OPTIMIZERS.items() if entry.stacked is not None]


def canonical_name(name: str) -> str:
    """The registered spelling of `name` (underscores read as hyphens), or ValueError listing the names.

    Example:
        >>> canonical_name("proximal_gd")
        'proximal-gd'
    """
    spelt = name.replace("_", "-") if isinstance(name, str) else name
    if spelt not in OPTIMIZERS:
        raise ValueError(f"optimizer.name: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return spelt


def lookup(name: str) -> Registered:
    """The registry entry of `name`."""
    return OPTIMIZERS[canonical_name(name)]


def _check_type(field: str, value: Any, default: Any) -> None:
    """A ValueError when a config value plainly has the wrong type for its argument (judged by the default)."""
    if isinstance(default, bool):
        expected, ok = "true or false", isinstance(value, bool)
    elif isinstance(default, int | float):
        expected, ok = "a number", isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        expected = f"a list of {len(default)} numbers"
        ok = isinstance(value, list | tuple) and len(value) == len(default)
    else:
        return
    if not ok:
        raise ValueError(f"optimizer.{field}: expected {expected}, got {value!r}")


_ALIASES = {"learning rate": "lr", "epsilon": "eps", "beta": "betas"}


def _field_of(message: str, fields: Iterable[str]) -> str | None:
    """The argument an optimiser's error message is about: its "field: ..." prefix, else the first argument named."""
    prefix = re.match(r"([A-Za-z_][\w]*)(\[\d+\])?:", message)
    if prefix is not None and (prefix.group(1) in fields or prefix.group(1) == "lr"):
        return prefix.group(1)
    lowered = message.lower()
    for field in sorted([*fields, "lr"], key=len, reverse=True):
        if re.search(rf"\b{re.escape(field)}\b", lowered):
            return field
    return next((field for alias, field in _ALIASES.items() if alias in lowered), None)


def build_optimizer(name: str, params: Iterable[Any], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """The optimiser registered as `name` on `params`, with learning rate `lr` and keyword arguments `kwargs`.

    `kwargs` are checked against the class's signature first; every error is a ValueError naming the field of the
    optimiser section: `optimizer.name: expected one of ...`, `optimizer.momentum: not an argument of Adam; ...`,
    `optimizer.projection: required by ProjectedGD`, `optimizer.betas: ...`.

    Example:
        >>> w = torch.zeros(3, requires_grad=True)
        >>> type(build_optimizer("proximal_gd", [w], lr=0.1, l1=0.01)).__name__
        'ProximalGD'
        >>> build_optimizer("adam", [w], lr=0.1, momentum=0.9)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: optimizer.momentum: not an argument of Adam; allowed: betas, eps, ...
    """
    entry = lookup(name)
    allowed = entry.hyperparameters
    for field in kwargs:
        if field not in allowed:
            raise ValueError(
                f"optimizer.{field}: not an argument of {entry.cls.__name__}; allowed: {', '.join(allowed) or 'none'}"
            )
    for field, parameter in allowed.items():
        if parameter.default is inspect.Parameter.empty and field not in kwargs:
            raise ValueError(f"optimizer.{field}: required by {entry.cls.__name__}")
        if field in kwargs:
            _check_type(field, kwargs[field], parameter.default)
    try:
        return entry.cls(params, lr=lr, **kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        field = _field_of(message, allowed)
        if field is not None and message.startswith(f"{field}:"):
            message = message[len(field) + 1 :].lstrip()
        raise ValueError(f"optimizer.{field}: {message}" if field else f"optimizer: {message}") from None
