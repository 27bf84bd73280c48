"""What the framework callbacks share: the missing-extra error and the scalars they log."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pandas as pd

from gradprobe.errors import InputError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or fail with the pip command that installs gradprobe's `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this gradprobe integration needs {module!r}, which is not installed; install it "
            f'with: pip install "gradprobe[{extra}]"'
        ) from err


def scalars_by_step(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None,
    layers: Sequence[str] | None,
    prefix: str,
) -> dict[int, dict[str, float]]:
    """`{step: {"prefix/metric/layer": value}}` for the chosen metrics and layers (None = all).

    Loggers get one scalar per (metric, layer): a 29-layer net with three metrics is already 87
    curves, so callers choose what to log.
    """
    if metrics is not None:
        frame = frame[frame["metric"].isin(list(metrics))]
    if layers is not None:
        frame = frame[frame["layer"].isin(list(layers))]
    scalars: dict[int, dict[str, float]] = {}
    for step, metric, layer, value in zip(
        frame["step"], frame["metric"], frame["layer"], frame["value"], strict=True
    ):
        scalars.setdefault(int(step), {})[f"{prefix}/{metric}/{layer}"] = float(value)
    return scalars


def name_tuple(chosen: Sequence[str] | None, what: str, argument: str) -> tuple[str, ...] | None:
    """`chosen` as a tuple (None stays None); a bare string is refused, not split into letters."""
    if chosen is None:
        return None
    if isinstance(chosen, str):
        raise InputError(
            f"{argument} must be a list of {what} names, not the string {chosen!r}; "
            f"write [{chosen!r}]"
        )
    return tuple(chosen)


def check_names(
    what: str, chosen: Sequence[str] | None, known: Sequence[str], argument: str
) -> None:
    """Raise when `chosen` names something the probe does not record (a typo logs nothing)."""
    if chosen is None:
        return
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise InputError(
            f"{argument} names {what} the probe does not record: {', '.join(unknown)}; "
            f"choose from {', '.join(known)}"
        )


def save_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy frame to Parquet, creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
