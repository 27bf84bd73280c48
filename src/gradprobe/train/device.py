"""Pick the device a run trains on."""

from __future__ import annotations

import torch

from gradprobe.errors import InputError


def resolve_device(requested: str) -> torch.device:
    """`auto` means CUDA when present, else Apple's MPS, else the CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but torch sees no CUDA device; "
                         "use --device auto or --device cpu.")
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InputError("--device mps was requested but MPS is not available here; "
                         "use --device auto or --device cpu.")
    return torch.device(requested)
