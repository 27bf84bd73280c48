"""Check a run against its model, its image size and the machine's memory before training.

Everything here happens on PyTorch's `meta` device: the model is built and one batch is pushed
through it without allocating a byte, so a run that cannot work (an image its pooling layers
shrink to nothing, a model that cannot fit in memory) is refused in well under a second, with a
message that names the option to change, instead of failing after minutes or swapping the
machine to a halt. Nothing is written before these checks pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from gradprobe.config import MAX_DEPTH, RunConfig
from gradprobe.errors import InputError
from gradprobe.models import build_model
from gradprobe.util.atomic import human_bytes

BYTES_PER_ELEMENT = 4  # float32 parameters and activations
# The estimate is a lower bound, so that no run that would fit is refused: per parameter the
# weight and its gradient (optimiser state comes on top), per image the output of every layer
# with weights (conv, linear, norm), which backward keeps (activations and their gradients come
# on top).
PARAMETER_COPIES = 2
MIN_CLASSES = 2  # a dataset with fewer is refused when it loads


@dataclass(frozen=True)
class RunFootprint:
    """What one training step of a run needs, estimated on the meta device."""

    parameters: int
    activation_elements_per_image: int  # outputs of every layer with weights, for one image
    minimum_bytes: int  # a lower bound: parameters, their gradients, one batch's layer outputs


def _available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (None where it cannot be asked)."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:  # Linux and most Unixes; the MPS device shares this memory too
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _layer_output_elements(model: nn.Module, images: torch.Tensor) -> int:
    """Sum of the output sizes of every module with its own parameters (meta: no memory)."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    layers = [module for module in model.modules()
              if any(True for _ in module.parameters(recurse=False))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return total


def check_run_fits(model_name: str, model_options: dict[str, object], *, num_classes: int,
                   in_channels: int, image_size: int, batch_size: int,
                   device: torch.device | str | None = "cpu") -> RunFootprint:
    """Refuse, with an InputError naming the fix, a run whose model cannot take its images or
    whose training step cannot fit in the memory free on `device` (None: not checked, the run
    trains on another machine); else return its footprint.
    """
    depth = model_options.get("depth")
    if isinstance(depth, int) and not isinstance(depth, bool) and depth > MAX_DEPTH:
        raise InputError(
            f"depth {depth:,} for {model_name} is beyond gradprobe's bound of {MAX_DEPTH:,} "
            "layers (building it alone would take minutes and gigabytes). Fix: choose a depth "
            f"of at most {MAX_DEPTH:,}; depths of 8 to 64 already show vanishing gradients."
        )
    with torch.device("meta"):
        model = build_model(model_name, num_classes=num_classes, in_channels=in_channels,
                            **model_options)  # type: ignore[arg-type]
        images = torch.empty(batch_size, in_channels, image_size, image_size)
        try:
            elements = _layer_output_elements(model, images[:1])
        except RuntimeError as error:
            raise InputError(
                f"{model_name} cannot take {image_size}x{image_size} images: its layers shrink "
                f"them to nothing ({str(error).splitlines()[0]}). Fix: use a larger "
                "--image-size (data.image_size in a study spec; 32 or more for the VGG and "
                "ResNet families), or a shallower model."
            ) from None
    parameters = sum(parameter.numel() for parameter in model.parameters())
    minimum = BYTES_PER_ELEMENT * (PARAMETER_COPIES * parameters + elements * batch_size)
    available = None if device is None else _available_bytes(torch.device(device))
    if available is not None and minimum > available:
        raise InputError(
            f"{model_name} at these options needs at least {human_bytes(minimum)} to train "
            f"({parameters:,} parameters; activations for a batch of {batch_size} "
            f"{image_size}x{image_size} images), more than the {human_bytes(available)} free on "
            f"{torch.device(device)}. Fix: lower --width, --depth, --image-size or "
            "--batch-size (in a study spec: model.width, the run's options.depth, "
            "data.image_size, train.batch_size)."
        )
    return RunFootprint(parameters, elements, minimum)


def _check_synthetic_fits(images: int, image_size: int) -> None:
    """The synthetic set is drawn in memory at once, uint8 (its splits copy it again)."""
    needed = images * 3 * image_size * image_size
    available = _available_bytes(torch.device("cpu"))
    if available is not None and needed > available:
        raise InputError(
            f"the synthetic dataset of {images:,} images at {image_size}x{image_size} needs at "
            f"least {human_bytes(needed)} of memory, more than the {human_bytes(available)} "
            "free. Fix: "
            "lower --images-per-class or --image-size (data.images_per_class, data.image_size "
            "in a study spec)."
        )


def check_run_config(config: RunConfig, *, here: bool = True) -> RunFootprint:
    """`check_run_fits` and `check_data` for a whole run config, before its data is loaded or
    anything written.

    The dataset is not loaded here, so the class count and channels are the fewest it could have
    (the synthetic set's are known): the memory estimate stays a lower bound, and the image-size
    check does not depend on either. The device is resolved as the trainer will, and `--amp`
    and the free memory checked against it, unless the run trains elsewhere (`here=False`: a Ray
    worker, whose devices this machine cannot see).
    """
    from gradprobe.train.device import resolve_device

    device = None
    if here:
        cores = available_cores()
        if config.train.threads > cores:  # more threads than cores only waits, and the count
            raise InputError(  # is part of the result, so it must be one this machine runs
                f"--threads (train.threads in a spec) is {config.train.threads:,} but this "
                f"machine has {cores} CPU core(s). Fix: use at most {cores} threads (1 suits "
                "gradprobe's small models).")
        device = resolve_device(config.train.device)
        if config.train.amp and device.type != "cuda":
            raise InputError("--amp needs a CUDA device (autocast + GradScaler); "
                             f"this run is on {device.type}. Drop --amp or use a GPU.")
    from gradprobe.data.preflight import check_data

    check_data(config.data, here=here)  # the loader's own refusals, without loading
    data = config.data
    if data.dataset == "synthetic" and here:
        _check_synthetic_fits(data.num_classes * data.images_per_class, data.image_size)
    num_classes = data.num_classes if data.dataset == "synthetic" else MIN_CLASSES
    return check_run_fits(config.model.name, config.model.builder_options(),
                          num_classes=num_classes, in_channels=1, image_size=data.image_size,
                          batch_size=config.train.batch_size, device=device)
