"""The model registry: name -> builder, and `build_model`, the one way to get a zoo model.

As in torchvision's `_api.py` (`register_model`, `list_models`, `get_model`), except that a
duplicate name raises instead of silently replacing (timm only warns). Options that combine
freely (norm, activation, init, width) are arguments, not names: a builder is registered once
per architecture and `build_model` validates and applies the shared options.

A builder is a function taking keyword arguments `num_classes`, `in_channels`, `width`, `norm`
(None = the family's default) and `activation`, plus `depth` and/or `stem` if the family has
them; `build_model` finds out which from the builder's signature and rejects a non-None `depth`
or `stem` for a family without it. The builder returns a model on which
`gradprobe.models.probe_points.describe` has been called.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch import nn

from gradprobe.errors import InputError
from gradprobe.models.init import INITS, init_weights
from gradprobe.models.layers import ACTIVATIONS, NORMS

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under `name`; a name already taken raises ValueError."""

    def decorator(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(
                f"a model named {name!r} is already registered ({_BUILDERS[name].__module__}); "
                "choose another name"
            )
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_BUILDERS)


def _models_with_option(option: str) -> list[str]:
    return [
        name for name in list_models() if option in inspect.signature(_BUILDERS[name]).parameters
    ]


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    norm: str | None = None,
    activation: str = "relu",
    init: str = "kaiming",
    depth: int | None = None,
    stem: str | None = None,
) -> nn.Module:
    """Build the registered model `name` with the shared options, initialised with `init`.

    `norm=None` takes the family's default ("batch" for resnet*/plain*, "none" otherwise);
    `depth` and `stem` apply only to families that have them (None = the family's default).
    The model carries `probe_points` and `gradprobe_info` (see `probe_points.describe`).
    Raises `InputError` for an unknown name or an invalid option, listing the valid values.
    """
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    builder = _BUILDERS[name]
    _check_common_options(num_classes, in_channels, width, norm, activation, init)
    options: dict[str, object] = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "width": float(width),
        "norm": norm,
        "activation": activation,
    }
    accepted = inspect.signature(builder).parameters
    for option, value in (("depth", depth), ("stem", stem)):
        if option in accepted:
            options[option] = value
        elif value is not None:
            raise InputError(
                f"model {name!r} has no {option} option (got {option}={value!r}); leave it unset, "
                f"or choose a model that has one: {', '.join(_models_with_option(option))}"
            )
    model = builder(**options)
    init_weights(model, init, activation)
    model.gradprobe_info.update({"name": name, "width": float(width), "init": init})
    return model


def _check_common_options(
    num_classes: int,
    in_channels: int,
    width: float,
    norm: str | None,
    activation: str,
    init: str,
) -> None:
    """Reject invalid shared options with a message naming the valid values."""
    for option, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{option} must be a positive integer, got {value!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
        raise InputError(
            f"width must be a positive number (a channel multiplier such as 0.25 or 1.0), "
            f"got {width!r}"
        )
    if norm is not None and norm not in NORMS:
        raise InputError(
            f"unknown norm {norm!r}; use one of: {', '.join(NORMS)} (or leave it unset for the "
            "family's default)"
        )
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; use one of: {', '.join(ACTIVATIONS)}")
    if init not in INITS:
        raise InputError(f"unknown init {init!r}; use one of: {', '.join(INITS)}")


def check_depth(name: str, depth: int, minimum: int, meaning: str) -> None:
    """Raise InputError unless `depth` is an integer >= `minimum`; `meaning` says what it counts."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < minimum:
        raise InputError(f"{name} depth must be an integer >= {minimum} ({meaning}), got {depth!r}")
