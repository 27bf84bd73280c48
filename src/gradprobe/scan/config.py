"""The scan's configuration: a frozen pydantic model, like every other config in gradprobe.

An architecture name is a set of options of the registry's conv stack (`SCAN_MODEL`): "plain"
and "residual" differ only in the `residual` option, "_bn" adds batch norm. Which families
exist, and what their defaults are, is the registry's business, not the scan's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gradprobe.config import MAX_DEPTH, Activation, Init

DEFAULT_SCAN_DIR = Path("runs/scan")  # where `gradprobe scan` writes when not told
SCAN_MODEL = "plain_stack"  # the registry's constant-width conv stack; `residual` adds skips
Architecture = Literal["plain", "plain_bn", "residual", "residual_bn"]
ARCHITECTURE_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {"residual": False, "norm": "none"},
    "plain_bn": {"residual": False, "norm": "batch"},
    "residual": {"residual": True, "norm": "none"},
    "residual_bn": {"residual": True, "norm": "batch"},
}
MIN_DEPTH = 2  # a stem conv and at least one more
CHANNELS = 32  # the stack's channels at width 1.0 (gradprobe.models.stacks.CHANNELS)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScanConfig(_Frozen):
    """What `gradprobe scan` measures: every architecture x activation x init x depth x seed.
    Each field's description is its `--help` text."""

    architectures: tuple[Architecture, ...] = Field(
        ("plain", "plain_bn", "residual", "residual_bn"), min_length=1,
        description="conv stacks: plain or residual, with or without batch norm (_bn)")
    depths: tuple[int, ...] = Field((8, 16, 32, 64), min_length=1,
                                    description="conv layers per network")
    activations: tuple[Activation, ...] = Field(("relu",), min_length=1,
                                                description="the nonlinearity after every conv")
    inits: tuple[Init, ...] = Field(("kaiming",), min_length=1,
                                    description="weight init (see gradprobe.models.init)")
    seeds: int = Field(3, ge=1, le=10_000, strict=True,
                       description="independent networks (and batches) per configuration; the "
                       "scan reports their median")
    batches: int = Field(1, ge=1, le=10_000, strict=True,
                         description="random batches per network; values are averaged over them")
    batch_size: int = Field(32, ge=2, le=1 << 16, strict=True,
                            description="images per batch (batch norm needs two)")
    image_size: int = Field(16, ge=4, le=1024, strict=True,
                            description="Gaussian images of image_size x image_size")
    width: float = Field(1.0, gt=0, le=16, strict=True,
                         description="channel multiplier: 1.0 = 32 channels")
    num_classes: int = Field(10, ge=2, le=1_000_000, strict=True,
                             description="random labels in [0, num_classes)")
    in_channels: int = Field(3, ge=1, le=1024, strict=True, description="image channels")

    @field_validator("depths")
    @classmethod
    def _depths_count_convs(cls, depths: tuple[int, ...]) -> tuple[int, ...]:
        for depth in depths:
            if depth < MIN_DEPTH:
                raise ValueError(f"scan depth {depth} is below {MIN_DEPTH}; give depths as "
                                 "conv-layer counts, e.g. 8 16 32 64")
            if depth > MAX_DEPTH:  # the bound `train` and `models` apply, before anything is built
                raise ValueError(f"scan depth {depth:,} is beyond gradprobe's bound of "
                                 f"{MAX_DEPTH:,} layers (building it alone would take minutes "
                                 "and gigabytes); depths of 8 to 64 already show vanishing "
                                 "gradients")
        return depths

    def model_options(self, architecture: str, activation: str, init: str,
                      depth: int) -> dict[str, Any]:
        """`build_model` options of one scanned network (model `SCAN_MODEL`)."""
        return {**ARCHITECTURE_OPTIONS[architecture], "activation": activation, "init": init,
                "depth": depth, "width": self.width}


class TheoryConfig(_Frozen):
    """What `gradprobe scan --theory` draws: predicted profiles of zoo models, no training."""

    models: tuple[str, ...] = Field((SCAN_MODEL,), min_length=1,
                                    description="zoo models (see `gradprobe models`)")
    # bounded like `train`'s; None = each family's default
    depths: tuple[Annotated[int, Field(ge=1, le=MAX_DEPTH)], ...] | None = Field(
        None, description="depths, for families with a depth option")
    activations: tuple[Activation, ...] = Field(("relu",), min_length=1,
                                                description="nonlinearities")
    inits: tuple[Init, ...] = Field(("kaiming",), min_length=1, description="weight inits")
    width: float = Field(1.0, gt=0, le=16, description="channel multiplier")
    image_size: int = Field(32, ge=8, description="decides only where pooling happens")
