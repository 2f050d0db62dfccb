"""What a metric's name says, for the figures: whether it is one layer's value of a per-layer family, whether it is
a schedule rather than a measurement, and how much it matters to a reader (the order panels and sections take).

The names are the probes' own (`tdlab.probes`): "grad/norm/<tensor>", "update/ratio/<tensor>",
"act/<layer>/<statistic>", "sharpness/block/<block>", "hessian/trace/<block>", ...
"""

from __future__ import annotations

import re

# prefixes whose metrics continue with "/<tensor or block>", each with a reader's name
PER_LAYER_PREFIXES = {
    "update/ratio": "update / parameter norm",
    "grad/norm": "gradient norm",
    "param/norm": "parameter norm",
    "update/norm": "update norm",
    "sharpness/block": "sharpness per block",
    "hessian/trace": "Hessian trace per block",
    "preconditioned-sharpness/block": "preconditioned sharpness per block",
}
# the activations probe's statistics ("act/<layer>/<statistic>"), in reading order
ACTIVATION_STATISTICS = {
    "dead": "dead units (fraction)",
    "mean": "activation mean",
    "var": "activation variance",
    "rel_var": "activation relative variance",
    "cosine": "activation cosine similarity",
}
# metrics set by the optimiser's schedule, not measured: their final value says nothing about the run
SCHEDULES = frozenset({"lr"})
# the scalar metrics a reader looks at first, in that order
HEADLINE = (
    "test/loss",
    "train/loss",
    "test/accuracy",
    "train/accuracy",
    "train/batch_loss",
    "sharpness",
    "preconditioned-sharpness",
    "hessian/trace",
    "noise/scale",
    "grad/norm",
    "update/ratio",
    "param/norm",
)


def per_layer(name: str) -> tuple[str, str] | None:
    """(family, layer) when `name` is one layer's value of a per-layer family, else None.

    Example:
        >>> per_layer("grad/norm/hidden.0.linear.weight"), per_layer("act/hidden.1/dead"), per_layer("grad/norm")
        (('grad/norm', 'hidden.0.linear.weight'), ('act/dead', 'hidden.1'), None)
    """
    parts = name.split("/")
    if parts[0] == "act" and len(parts) >= 3:
        return f"act/{parts[-1]}", "/".join(parts[1:-1])
    for prefix in PER_LAYER_PREFIXES:
        if name.startswith(prefix + "/"):
            return prefix, name[len(prefix) + 1 :]
    return None


def family_label(family: str) -> str:
    """A reader's name for a per-layer family, e.g. "gradient norm" for "grad/norm"."""
    if family.startswith("act/"):
        return ACTIVATION_STATISTICS.get(family[4:], f"activation {family[4:]}")
    return PER_LAYER_PREFIXES.get(family, family)


def family_rank(family: str) -> tuple[int, str]:
    """Sort key of per-layer families: the update ratio and the gradient first, then the activations."""
    order = [*PER_LAYER_PREFIXES, *(f"act/{s}" for s in ACTIVATION_STATISTICS)]
    return (order.index(family) if family in order else len(order), family)


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value: "hidden.2" before "hidden.10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def importance(name: str) -> tuple:
    """Sort key of metric names: the headline metrics in `HEADLINE` order, then other losses and accuracies,
    then the remaining scalars, then per-layer values (by family, then layer), schedules last.

    Example:
        >>> sorted(["lr", "grad/norm/b", "noise/snr", "train/loss", "test/loss"], key=importance)
        ['test/loss', 'train/loss', 'noise/snr', 'grad/norm/b', 'lr']
    """
    if name in SCHEDULES:
        return (5, natural_key(name))
    if name in HEADLINE:
        return (0, HEADLINE.index(name))
    if name.rsplit("/", 1)[-1] in ("loss", "accuracy"):
        return (1, natural_key(name))
    layered = per_layer(name)
    if layered is not None:
        return (3, family_rank(layered[0]), natural_key(layered[1]))
    return (2, natural_key(name))
