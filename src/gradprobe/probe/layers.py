"""Which modules the probe watches, what kind each is, and which modules are activations.

Depth (forward-execution order) is not known here: it is found by the probe's hooks during the
first training-mode forward pass, because registration order need not be execution order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from gradprobe.errors import InputError

LayerSelector = (
    None | str | Sequence[type[nn.Module]] | Sequence[str] | Callable[[str, nn.Module], bool]
)
ALL_LAYERS = "all"  # layers="all": every module with a trainable parameter of its own

# Every convolution (transposed too: a UNet's upsampling path), Linear, recurrent layer
# (nn.RNN/LSTM/GRU: their weight_ih_l*/weight_hh_l*) and attention (its in_proj_weight, which
# no Linear submodule holds). Embeddings and normalisation layers are opt-in (layers="all"):
# their "weight" is a lookup table or a per-channel scale, not a layer the gradient flows back
# through.
DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.RNNBase, nn.MultiheadAttention,
)

# Elementwise nonlinearities from torch.nn: the first of these to run after a probed layer is
# "the activation after the layer" for activation_mean, activation_std and dead_fraction.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Threshold,
)


@dataclass(frozen=True)
class LayerInfo:
    """A probed layer: its `named_modules()` name, its kind, and its depth.

    `kind` is the model's declared kind ("conv", "linear", "shortcut" for gradprobe's zoo),
    else "conv" for a convolution, "linear" for nn.Linear, or the lower-cased class name.
    `depth` is the layer's index in forward-execution order, 0 nearest the input, found in
    the first training-mode forward pass with gradients enabled; -1 until the layer has run.
    """

    name: str
    kind: str
    depth: int


@dataclass(frozen=True)
class SelectedLayer:
    """A module chosen for probing, before its depth is known."""

    name: str
    kind: str
    module: nn.Module


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel, DataParallel or torch.compile.

    Layer names are those of the wrapped module ("conv1", not "module.conv1"), so tables from a
    DDP run and a single-process run line up.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return unwrap(model.module)
    # torch.compile's wrapper: hooks go on the original module, which its compiled code calls.
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module):
        return unwrap(original)
    return model


def kind_of(module: nn.Module) -> str:
    """The kind of a module: "conv" (transposed too), "linear", "recurrent" (nn.RNN, LSTM,
    GRU), or its lower-cased class name."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.RNNBase):
        return "recurrent"
    return type(module).__name__.lower()


def has_own_parameter(module: nn.Module) -> bool:
    """Whether `module` has a trainable parameter of its own (not only in submodules)."""
    return any(param.requires_grad for param in module.parameters(recurse=False))


def unprobed_weighted_modules(
    model: nn.Module, selected: Sequence[SelectedLayer]
) -> list[tuple[str, nn.Module]]:
    """Modules with a trainable parameter of their own that are not probed, in
    `named_modules()` order (the root module included, named "(root)")."""
    chosen = {id(layer.module) for layer in selected}
    return [
        (name or "(root)", module) for name, module in model.named_modules()
        if id(module) not in chosen and has_own_parameter(module)
    ]


def select_layers(model: nn.Module, layers: LayerSelector = None) -> list[SelectedLayer]:
    """The modules of `model` to probe, in `named_modules()` order.

    `layers` is None (the model's `probe_points` when it declares them, else every module of
    `DEFAULT_LAYER_TYPES`: Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear, RNN/LSTM/GRU and
    MultiheadAttention), "all" (every module with a trainable parameter of its own:
    the defaults plus Embedding, LayerNorm, BatchNorm, ... and custom modules), a sequence of
    module types, a sequence of module names, or a predicate `(name, module) -> bool`.
    """
    modules = dict(model.named_modules())
    if layers is None and hasattr(model, "probe_points"):
        chosen = [
            SelectedLayer(point.name, point.kind, _module(modules, point.name))
            for point in model.probe_points
        ]
    else:
        predicate = _predicate(layers, modules)
        chosen = [
            SelectedLayer(name, kind_of(module), module)
            for name, module in modules.items()
            if name and predicate(name, module)
        ]
    if not chosen:
        raise InputError(
            f"no layer of {type(model).__name__} matches layers={layers!r}; pass module types "
            "(e.g. [nn.Conv2d]), names from model.named_modules(), or a predicate (name, module)"
        )
    return chosen


def _module(modules: dict[str, nn.Module], name: str) -> nn.Module:
    if name not in modules or not name:
        known = ", ".join(name for name in list(modules)[1:9])
        raise InputError(
            f"the model has no submodule named {name!r}; use names from "
            f"model.named_modules(), e.g. {known}"
        )
    return modules[name]


def _predicate(
    layers: LayerSelector, modules: dict[str, nn.Module]
) -> Callable[[str, nn.Module], bool]:
    if layers is None:
        return lambda _name, module: isinstance(module, DEFAULT_LAYER_TYPES)
    if layers == ALL_LAYERS:
        return lambda _name, module: has_own_parameter(module)
    if callable(layers) and not isinstance(layers, type):
        return layers
    if isinstance(layers, (str, type)) or not isinstance(layers, Sequence):
        raise InputError(
            f"layers={layers!r} is not a list; pass 'all', a list of module types or names, "
            "or a predicate (name, module) -> bool"
        )
    if all(isinstance(item, type) and issubclass(item, nn.Module) for item in layers):
        types = tuple(layers)
        return lambda _name, module: isinstance(module, types)
    if all(isinstance(item, str) for item in layers):
        names = {name: _module(modules, name) for name in layers}
        return lambda name, _module_: name in names
    raise InputError(
        f"layers={layers!r} mixes kinds of items; pass only module types or only module names"
    )
