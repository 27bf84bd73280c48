"""The model registry: each family's builder, defaults and options, and `build_model`.

As in torchvision's `_api.py` (`register_model`, `list_models`, `get_model`), except that a
duplicate name raises instead of silently replacing (timm only warns). Options that combine
freely (norm, activation, init, width, residual) are arguments, not names: a builder is
registered once per architecture, and everything the rest of gradprobe needs to know about a
family -- its default norm, depth, stem, whether it has identity skips -- is recorded here, at
registration, so no caller builds a throw-away model or keeps its own table to find out.

A builder takes keyword arguments `num_classes`, `in_channels`, `width`, `norm` (a name, never
None: `build_model` fills in the family's default) and `activation`, plus every family option
named in its `defaults` ("depth", "stem", "residual"), resolved to the family's default when the
caller leaves it unset. It returns a model on which `probe_points.describe` has been called.

One builder may be registered under several names that differ only in their defaults: the
plain twins (`plain`, `plain18`, `plain34`, `plain_stack`) are their residual families with
`residual=False`, so `build_model("resnet", depth=20, residual=False)` is `build_model("plain",
depth=20)`. `residual_variant` and `residual_twin` match the twins through the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from gradprobe.errors import InputError
from gradprobe.models.init import INITS, init_weights
from gradprobe.models.layers import ACTIVATIONS, NORMS

Builder = Callable[..., nn.Module]

# Options every family takes, with the defaults a family inherits unless it names its own.
COMMON_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"width": 1.0, "norm": "none", "activation": "relu", "init": "kaiming"}
)
# Options only some families take; a family takes one if and only if its defaults name it.
FAMILY_OPTIONS: tuple[str, ...] = ("depth", "stem", "residual")


@dataclass(frozen=True)
class ModelFamily:
    """What the registry knows about one registered name."""

    name: str
    builder: Builder
    defaults: Mapping[str, Any]  # every option's default: COMMON_DEFAULTS + the family's own
    options: tuple[str, ...]  # the FAMILY_OPTIONS it accepts (depth, stem, residual)
    description: str = ""  # one line for listings

    @property
    def residual(self) -> bool | None:
        """Whether the family has identity skips by default; None if it has no such option."""
        return self.defaults.get("residual")


_FAMILIES: dict[str, ModelFamily] = {}


def register_model(
    name: str, *, defaults: Mapping[str, Any] | None = None, description: str = ""
) -> Callable[[Builder], Builder]:
    """Decorator registering `builder` under `name` with the family's `defaults`.

    `defaults` may override COMMON_DEFAULTS (e.g. norm "batch") and names the family options the
    builder accepts (depth, stem, residual) with their defaults. A name already taken raises
    ValueError, as does an unknown option name.
    """
    own = dict(defaults or {})
    unknown = set(own) - set(COMMON_DEFAULTS) - set(FAMILY_OPTIONS)
    if unknown:
        raise ValueError(
            f"register_model({name!r}): unknown default(s) {sorted(unknown)}; allowed: "
            f"{', '.join([*COMMON_DEFAULTS, *FAMILY_OPTIONS])}"
        )

    def decorator(builder: Builder) -> Builder:
        if name in _FAMILIES:
            raise ValueError(
                f"a model named {name!r} is already registered "
                f"({_FAMILIES[name].builder.__module__}); choose another name"
            )
        _FAMILIES[name] = ModelFamily(
            name=name,
            builder=builder,
            defaults=MappingProxyType({**COMMON_DEFAULTS, **own}),
            options=tuple(option for option in FAMILY_OPTIONS if option in own),
            description=description,
        )
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_FAMILIES)


def model_family(name: str) -> ModelFamily:
    """The registry's record of `name`; InputError listing the known names if there is none."""
    if name not in _FAMILIES:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _FAMILIES[name]


def same_architecture(name: str) -> list[str]:
    """Every registered name sharing `name`'s builder (itself included), sorted."""
    builder = model_family(name).builder
    return [other for other in list_models() if _FAMILIES[other].builder is builder]


def family_default(name: str, option: str) -> Any:
    """The value `option` takes in model `name` when the caller leaves it unset."""
    defaults = model_family(name).defaults
    if option not in defaults:
        raise InputError(f"model {name!r} has no {option} option; it has: {', '.join(defaults)}")
    return defaults[option]


def models_with_option(option: str) -> list[str]:
    """Registered names whose family accepts `option` (depth, stem or residual)."""
    return [name for name in list_models() if option in _FAMILIES[name].options]


def residual_variant(name: str, residual: bool) -> str:
    """The registered name of `name`'s architecture with (`True`) or without identity skips.

    `residual_variant("resnet", False) == "plain"`; `residual_variant("plain", False) ==
    "plain"`. Raises InputError for a family without a residual option, or one registered under
    a single name (then pass `residual=` as an option instead).
    """
    variant = _named_variant(name, residual)
    if variant is None:
        raise InputError(f"model {name!r} has no registered twin with residual={residual}; "
                         f"build it with the option residual={residual} instead")
    return variant


def _named_variant(name: str, residual: bool) -> str | None:
    family = model_family(name)
    if "residual" not in family.options:
        raise InputError(f"model {name!r} has no residual option (no plain/residual twin); "
                         f"choose one of: {', '.join(models_with_option('residual'))}")
    for candidate in (name, *same_architecture(name)):
        if _FAMILIES[candidate].defaults.get("residual") is residual:
            return candidate
    return None


def residual_twin(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The same network with its identity skips toggled, as (registered name, options).

    `options` are the model options a run was built with; the twin has the same options, with
    `residual` dropped where the twin's name says it (`("resnet", {"depth": 20})` ->
    `("plain", {"depth": 20})`). None for families without a residual option (VGG, MLP).
    """
    family = model_family(name)
    if "residual" not in family.options:
        return None
    residual = bool(options.get("residual", family.defaults["residual"]))
    twin_options = {key: value for key, value in options.items() if key != "residual"}
    twin = _named_variant(name, not residual)
    if twin is None:  # no name of its own: keep the name and say it with the option
        return name, {**twin_options, "residual": not residual}
    return twin, twin_options


def resolve_options(name: str, **given: Any) -> dict[str, Any]:
    """Every option of model `name`, the caller's where given (not None), else the family's.

    Raises InputError for an option the family does not take (e.g. depth for vgg16), naming the
    models that do take it.
    """
    family = model_family(name)
    for option in FAMILY_OPTIONS:
        if given.get(option) is not None and option not in family.options:
            raise InputError(
                f"model {name!r} has no {option} option (got {option}={given[option]!r}); leave "
                f"it unset, or choose a model that has one: "
                f"{', '.join(models_with_option(option))}"
            )
    return {option: default if given.get(option) is None else given[option]
            for option, default in family.defaults.items()}


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    width: float | None = None,
    norm: str | None = None,
    activation: str | None = None,
    init: str | None = None,
    depth: int | None = None,
    stem: str | None = None,
    residual: bool | None = None,
) -> nn.Module:
    """Build the registered model `name` with the shared options, initialised with `init`.

    Any option left None takes the family's default (`model_family(name).defaults`): norm
    "batch" for the resnets and their plain twins, "none" otherwise; activation "relu"; init
    "kaiming". `depth`, `stem` and `residual` apply only to families that have them. The model
    carries `probe_points` and `gradprobe_info` (see `probe_points.describe`). Raises
    `InputError` for an unknown name or an invalid option, listing the valid values.
    """
    family = model_family(name)
    options = resolve_options(name, width=width, norm=norm, activation=activation, init=init,
                              depth=depth, stem=stem, residual=residual)
    _check_common_options(num_classes, in_channels, options)
    if "residual" in options and not isinstance(options["residual"], bool):
        raise InputError(f"residual must be true or false, got {options['residual']!r}")
    init_name = options.pop("init")
    options["width"] = float(options["width"])
    model = family.builder(num_classes=num_classes, in_channels=in_channels, **options)
    init_weights(model, init_name, options["activation"])
    model.gradprobe_info.update({"name": name, "width": options["width"], "init": init_name})
    return model


def _check_common_options(num_classes: int, in_channels: int, options: Mapping[str, Any]) -> None:
    """Reject invalid shared options with a message naming the valid values."""
    for option, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{option} must be a positive integer, got {value!r}")
    width = options["width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
        raise InputError(
            f"width must be a positive number (a channel multiplier such as 0.25 or 1.0), "
            f"got {width!r}"
        )
    if options["norm"] not in NORMS:
        raise InputError(
            f"unknown norm {options['norm']!r}; use one of: {', '.join(NORMS)} (or leave it "
            "unset for the family's default)"
        )
    if options["activation"] not in ACTIVATIONS:
        raise InputError(
            f"unknown activation {options['activation']!r}; use one of: {', '.join(ACTIVATIONS)}"
        )
    if options["init"] not in INITS:
        raise InputError(f"unknown init {options['init']!r}; use one of: {', '.join(INITS)}")


def check_depth(name: str, depth: int, minimum: int, meaning: str) -> None:
    """Raise InputError unless `depth` is an integer >= `minimum`; `meaning` says what it counts."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < minimum:
        raise InputError(f"{name} depth must be an integer >= {minimum} ({meaning}), got {depth!r}")
