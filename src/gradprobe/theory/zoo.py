"""Predictions for any model of the zoo, from its registry description (`predict_for_config`).

The chain of weight layers, their fans, the norm after each and the pooling between them are
read off the model itself, built on PyTorch's "meta" device (shapes only: no memory, no random
numbers) and traced once with forward hooks; the theory proper (`gain`, `moments`, `predict`)
stays torch-free. Torch is imported only when this function runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gradprobe.theory.gain import Layer
from gradprobe.theory.predict import NoPrediction, Prediction, predict_chain

DEFAULT_IMAGE_SIZE = 32  # the spatial size only decides where pooling happens


def predict_for_config(
    model_name: str,
    model_options: Mapping[str, Any],
    *,
    in_channels: int = 3,
    image_size: int = DEFAULT_IMAGE_SIZE,
    num_classes: int = 10,
) -> Prediction | NoPrediction:
    """Predicted per-layer output-gradient gain at initialisation of zoo model `model_name`.

    `model_options` are `build_model` options (depth, width, norm, activation, init, residual,
    ...); unset ones take the family's defaults from the registry. Shortcut convs are left out;
    a transition across a pooling layer (VGG's maxpools, the global pool before the classifier)
    gets no gain. `num_classes` sets the head's fan-out (it enters Xavier's variance). Raises
    InputError for an unknown model or option, as `build_model` does.
    """
    layers, pooled_before, info = describe_chain(model_name, model_options, in_channels,
                                                 image_size, num_classes)
    return predict_chain(layers, info["activation"], info["init"], residual=info["residual"],
                         pooled_before=frozenset(pooled_before))


def describe_chain(
    model_name: str, model_options: Mapping[str, Any], in_channels: int, image_size: int,
    num_classes: int = 10,
) -> tuple[list[Layer], set[int], dict[str, Any]]:
    """The main-path weight layers of a zoo model, the indices of those fed through a pooling
    layer, and the model's `gradprobe_info` plus "shapes" (layer name -> its input and output
    shapes for a batch of 2)."""
    options = {key: value for key, value in model_options.items() if value is not None}
    init = options.pop("init", None) or _default_init(model_name)
    try:
        layers, pooled, info = _walk_cached(model_name, tuple(sorted(options.items())),
                                            in_channels, image_size, num_classes)
    except TypeError:  # an unhashable option value: walk it uncached
        layers, pooled, info = _walk(model_name, tuple(options.items()), in_channels,
                                     image_size, num_classes)
    # copies: callers may change what they get; the init does not change the walk
    return list(layers), set(pooled), {**info, "shapes": dict(info["shapes"]), "init": init}


def _walk(model_name: str, options: tuple[tuple[str, Any], ...], in_channels: int,
          image_size: int, num_classes: int) -> tuple[list[Layer], set[int], dict[str, Any]]:
    """describe_chain's walk of the model on the meta device, whatever its init."""
    import torch
    from torch import nn

    from gradprobe.models import build_model

    with torch.device("meta"):
        model = build_model(model_name, in_channels=in_channels, num_classes=num_classes,
                            **{**dict(options), "init": "default"})
    info = dict(model.gradprobe_info)
    modules = dict(model.named_modules())
    points = [point for point in model.probe_points if point.kind != "shortcut"]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def remember(name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
                 ) -> None:
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))  # (input, output)

        return hook

    handles = [modules[point.name].register_forward_hook(remember(point.name))
               for point in points]
    try:
        model(torch.empty(2, in_channels, image_size, image_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    info["shapes"] = shapes  # layer name -> (input shape, output shape)
    norm_after = _norms_after(model, [point.name for point in points])
    layers, pooled_before = [], set()
    for index, point in enumerate(points):
        module = modules[point.name]
        area = module.weight[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        out_channels = module.weight.shape[0]
        layers.append(Layer(point.name, module.weight[0].numel(), out_channels * area,
                            out_channels, norm_after[point.name], module.bias is not None))
        if index and shapes[point.name][0] != shapes[points[index - 1].name][1]:
            pooled_before.add(index)  # the input is not the previous layer's output shape
    return layers, pooled_before, info


# A study's init experiments share their architectures: each is walked (~0.1 s) once.
_walk_cached = functools.lru_cache(maxsize=64)(_walk)


def _default_init(model_name: str) -> str:
    from gradprobe.models import family_default

    return str(family_default(model_name, "init"))


def _norms_after(model: Any, names: list[str]) -> dict[str, str]:
    """The norm that follows each weight layer, read in module (= forward) order."""
    from torch import nn

    result = dict.fromkeys(names, "none")
    current = None
    for name, module in model.named_modules():
        if name in result:
            current = name
        elif current and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            result[current] = "batch"
            current = None
    return result
