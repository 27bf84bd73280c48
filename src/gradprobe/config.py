"""Frozen configuration models, one per concern, written next to every result.

Config is passed, never read from globals: a run is fully described by a `RunConfig`, which is
serialised into the run directory's `config.json` and compared on resume. Each field's default
and description live here only: the CLI builds its flags and `--help` from these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from gradprobe.metrics import default_run_metrics, list_metrics

Norm = Literal["none", "batch"]
Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid", "gelu"]
Init = Literal["default", "kaiming", "xavier", "orthogonal"]
Optimizer = Literal["sgd", "adam", "adamw"]
Scheduler = Literal["step", "cosine", "none"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Stem = Literal["imagenet", "cifar"]
Executor = Literal["local", "ray"]


def _known_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in list_metrics()]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known metrics: "
                         f"{', '.join(list_metrics())}")
    return names


# An annotation, not a field validator, so a spec's `probe:` section checks names the same way.
MetricNames = Annotated[tuple[str, ...], AfterValidator(_known_metrics)]


def _numbers_only(value: Any) -> Any:
    """Numbers only, as in every other number field: not `true`, not "0.7"."""
    if isinstance(value, (list, tuple)) and any(isinstance(part, (bool, str)) for part in value):
        raise ValueError(f"split fractions must be numbers, got {list(value)}")
    return value


Fractions = Annotated[tuple[float, float, float], BeforeValidator(_numbers_only)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Bounds on the numbers that become resources (time, memory, files). Every number field is also
# strict: `true` is not 1 and "3" is not 3 (a YAML `lr: [true]` once trained with lr 1.0).
SEED_LIMIT = 2**32  # numpy's and torch's seeding take seeds in [0, 2^32)
# Built before anything is measured, so bounded first: a depth of 10^8 would spend minutes and
# gigabytes creating modules. 2,048 is far past the deepest network in the literature this tool
# reproduces (ResNet-1202, He et al. 2016).
MAX_DEPTH = 2048
MAX_EPOCHS = 100_000  # a day per epoch would still be 270 years: beyond is a typo
MAX_THREADS = 1024  # a static bound; the preflight also refuses more threads than cores
MAX_BATCH_SIZE = 1 << 20
MAX_WIDTH = 64.0  # channel multiplier; the memory preflight refuses what does not fit
MAX_IMAGES_PER_CLASS = 1_000_000
MAX_STEPS = 1 << 40  # step counts (probe cadence, checkpoint cadence, step caps)


def _seed(default: int, description: str) -> Any:
    return Field(default, ge=0, lt=SEED_LIMIT, strict=True, description=description)


class ModelConfig(_Frozen):
    """Which architecture to build and with which options (see `gradprobe models`)."""

    name: str = Field(description="registry name, e.g. vgg_deep, resnet18, plain18, mlp")
    # bounded by the preflight (MAX_DEPTH), whose message names the model and the fix
    depth: int | None = Field(None, strict=True, description="layers, for families with a "
                              "configurable depth (default: the family's)")
    width: float = Field(1.0, le=MAX_WIDTH, strict=True, allow_inf_nan=False,
                         description="channel multiplier (0.125-0.25 for CPU studies)")
    norm: Norm | None = Field(None, description="normalisation (default: the family's: batch "
                              "for resnets, none for VGG/MLP)")
    activation: Activation = Field("relu", description="nonlinearity between layers")
    init: Init = Field("kaiming", description="weight init (He/Kaiming normal, as in the "
                       "assignment)")
    stem: Stem | None = Field(None, description="resnet/plain stem (default: cifar)")
    residual: bool | None = Field(None, description="identity skips, for the resnet/plain "
                                  "families (default: the family's: true for resnet*, false "
                                  "for plain*)")

    def builder_options(self) -> dict[str, Any]:
        """Keyword options for `build_model`, leaving family defaults where unset."""
        options = self.model_dump(exclude={"name"})
        return {k: v for k, v in options.items() if v is not None}


class DataConfig(_Frozen):
    """Which images, how they are prepared and split."""

    dataset: str = Field("synthetic", description="synthetic, digits, fashion-mnist, cifar10, or a "
                         "path to an ImageFolder tree")
    image_size: int = Field(64, ge=8, le=512, strict=True, description="images are resized to "
                            "image_size x image_size pixels")
    split: Fractions = Field((0.7, 0.15, 0.15), description="train / val / test fractions")
    seed: int = _seed(0, "seed of the split (and of the synthetic generator): same seed, same "
                      "images")
    images_per_class: int = Field(600, ge=4, le=MAX_IMAGES_PER_CLASS, strict=True,
                                  description="synthetic only")
    num_classes: int = Field(3, ge=2, le=10, strict=True, description="synthetic only")
    max_train_images: int | None = Field(None, ge=1, strict=True,
                                         description="cap the train split")
    max_images: int | None = Field(None, ge=3, strict=True, description="cap the whole dataset, "
                                   "every split (class proportions kept): CPU-sized "
                                   "Fashion-MNIST/CIFAR-10")
    data_root: str | None = Field(None, description="where torchvision sets live (else "
                                  "$GRADPROBE_DATA, then Debian's)")
    download: bool = Field(False, description="let torchvision download a missing set")
    augment: bool = Field(False, description="random crop with padding + horizontal flip")

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(part <= 0 for part in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {value}")
        return value


class TrainConfig(_Frozen):
    """How to train: the assignment's defaults."""

    epochs: int = Field(15, ge=1, le=MAX_EPOCHS, strict=True,
                        description="passes over the train split")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE, strict=True,
                            description="images per optimiser step")
    # inf is allowed: the run diverges at its first step, a result (not a resource)
    lr: float = Field(0.01, gt=0, strict=True, description="initial learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, strict=True, description="SGD momentum (the "
                            "assignment used plain SGD)")
    weight_decay: float = Field(0.0, ge=0, strict=True, allow_inf_nan=False,
                                description="L2 penalty")
    optimizer: Optimizer = Field("sgd", description="optimiser")
    scheduler: Scheduler = Field("step", description="learning-rate schedule")
    step_size: int = Field(5, ge=1, le=MAX_EPOCHS, strict=True,
                           description="StepLR period in epochs")
    gamma: float = Field(0.5, gt=0, le=1, strict=True, description="StepLR decay factor")
    seed: int = _seed(0, "seeds weights, shuffling and augmentation")
    device: Device = Field("auto", description="auto = cuda, else mps, else cpu")
    # CPU reductions (conv, matmul, sums) split their work by thread count, so the count is part
    # of the result: a run's numbers must not depend on the executor or the machine's load.
    threads: int = Field(1, ge=1, le=MAX_THREADS, strict=True, description="torch CPU threads "
                         "of the run; part of the result, so fixed (1 suits these small models)")
    amp: bool = Field(False, description="mixed precision (autocast + GradScaler) on CUDA")
    tensorboard: bool = Field(False, description="also write TensorBoard event files")
    max_steps_per_epoch: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True,
                                            description="cap steps per epoch (smoke tests)")
    checkpoint_every: int = Field(0, ge=0, le=MAX_STEPS, strict=True, description="also "
                                  "checkpoint every N steps inside an epoch (0 = off)")
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS, strict=True, allow_inf_nan=False,
                                 description="linear learning-rate warm-up over this "
                                 "many epochs (0 = off, as in the assignment)")
    grad_clip: float | None = Field(None, gt=0, strict=True, allow_inf_nan=False,
                                    description="clip the global gradient L2 norm "
                                    "(all trainable parameters) to this value before each "
                                    "optimiser step, after the probe records (default: off)")


class ProbeConfig(_Frozen):
    """What the gradient probe records, and how often."""

    metrics: MetricNames = Field(default_run_metrics(), description="probe metrics to record")
    every: int = Field(1, ge=1, le=MAX_STEPS, strict=True,
                       description="record every k-th optimiser step")
    diagnostic_every: int = Field(10, ge=1, le=MAX_STEPS, strict=True,
                                  description="record the diagnostic metrics "
                                  "(dead_fraction, activation_mean, activation_std, "
                                  "update_ratio) only every k-th recorded step: they cost "
                                  "far more than the gradient norms on a CPU (1 = every step)")


class RunConfig(_Frozen):
    """Everything that defines one training run."""

    model: ModelConfig
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()


class ExecutionConfig(_Frozen):
    """Who trains a study's runs. Never changes a run's numbers (see `TrainConfig.threads`)."""

    jobs: int = Field(1, ge=1, le=MAX_THREADS, strict=True,
                      description="runs at once in a local process pool")
    executor: Executor = Field("local", description="local (this machine) or ray (a Ray "
                               "cluster, one task per run)")
    ray_address: str | None = Field(None, description="an existing Ray cluster's address "
                                    "(default: start a local Ray)")


class ZooConfig(_Frozen):
    """The head and input size `gradprobe models` builds to count and summarise the zoo."""

    num_classes: int = Field(10, ge=1, le=1_000_000, strict=True,
                             description="classes of the head")
    image_size: int = Field(32, ge=8, le=4096, strict=True,
                            description="input size of the per-layer summary")
