"""Frozen configuration models, one per concern, written next to every result.

Config is passed, never read from globals: a run is fully described by a `RunConfig`, which is
serialised into the run directory's `config.json` and compared on resume.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Norm = Literal["none", "batch"]
Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid", "gelu"]
Init = Literal["default", "kaiming", "xavier", "orthogonal"]
Optimizer = Literal["sgd", "adam", "adamw"]
Scheduler = Literal["step", "cosine", "none"]
Device = Literal["auto", "cpu", "cuda", "mps"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    """Which architecture to build and with which options (see `gradprobe models`)."""

    name: str  # registry name, e.g. "vgg_deep", "resnet18", "plain18", "mlp"
    depth: int | None = None  # layers for families with a configurable depth; None = family default
    width: float = 1.0  # channel multiplier (0.25 for CPU studies)
    norm: Norm | None = None  # None = the family's own default (batch for resnets, none for vgg)
    activation: Activation = "relu"  # nonlinearity between layers
    init: Init = "kaiming"  # He (Kaiming normal) init, as in the assignment
    stem: Literal["imagenet", "cifar"] | None = None  # resnet/plain stem; None = "cifar"

    def builder_options(self) -> dict[str, Any]:
        """Keyword options for `build_model`, leaving family defaults where unset."""
        options = self.model_dump(exclude={"name"})
        return {k: v for k, v in options.items() if v is not None}


class DataConfig(_Frozen):
    """Which images, how they are prepared and split."""

    dataset: str = "synthetic"  # synthetic | fashion-mnist | cifar10 | path to an ImageFolder tree
    image_size: int = Field(64, ge=8, le=512)  # images are resized to image_size x image_size
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train / val / test fractions
    seed: int = 0  # seeds the split (and the synthetic generator): same seed, same images
    images_per_class: int = Field(600, ge=4)  # synthetic only
    num_classes: int = Field(3, ge=2, le=10)  # synthetic only
    max_train_images: int | None = Field(None, ge=1)  # cap the train split (quick presets)
    data_root: str | None = None  # where torchvision sets live (else $GRADPROBE_DATA, Debian's)
    download: bool = False  # let torchvision download a missing set
    augment: bool = False  # random crop with padding + horizontal flip (off, as in the assignment)

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(part <= 0 for part in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {value}")
        return value


class TrainConfig(_Frozen):
    """How to train: the assignment's defaults."""

    epochs: int = Field(15, ge=1)  # passes over the train split
    batch_size: int = Field(32, ge=1)  # images per optimiser step
    lr: float = Field(0.01, gt=0)  # initial learning rate
    momentum: float = Field(0.0, ge=0, lt=1)  # SGD momentum (the assignment used plain SGD)
    weight_decay: float = Field(0.0, ge=0)  # L2 penalty
    optimizer: Optimizer = "sgd"  # sgd | adam | adamw
    scheduler: Scheduler = "step"  # StepLR by default
    step_size: int = Field(5, ge=1)  # StepLR period in epochs
    gamma: float = Field(0.5, gt=0, le=1)  # StepLR decay factor
    seed: int = 0  # seeds weights, shuffling and augmentation
    device: Device = "auto"  # auto = cuda, else mps, else cpu
    amp: bool = False  # autocast + GradScaler on CUDA
    tensorboard: bool = False  # also write TensorBoard event files
    max_steps_per_epoch: int | None = Field(None, ge=1)  # cap steps per epoch (smoke tests)
    checkpoint_every: int = Field(0, ge=0)  # also checkpoint every N steps in an epoch (0 = off)
    warmup_epochs: float = Field(0.0, ge=0)  # linear lr warm-up over this many epochs (0 = off)


class ProbeConfig(_Frozen):
    """What the gradient probe records, and how often."""

    metrics: tuple[str, ...] = ("weight_grad_norm", "weight_grad_rms", "output_grad_norm")
    every: int = Field(1, ge=1)  # record every k-th optimiser step


class RunConfig(_Frozen):
    """Everything that defines one training run."""

    model: ModelConfig
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
