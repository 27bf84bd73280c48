"""The embedded default dataset: shapes rendered procedurally in memory.

Classes differ only by shape and spatial structure. Foreground and background colours are drawn
independently from one distribution that is symmetric about mid-grey, and texture and noise have
zero mean, so every class has the same expected image pixel by pixel: colour and mean brightness
carry no label information and a linear classifier on raw pixels stays near chance, while a small
CNN that learns edges and their arrangement separates the classes (tests/test_data.py shows both).
Nuisance variation: position, scale, rotation, colours, a sinusoidal background texture, noise.

Rendering is vectorised: each shape is a signed distance function evaluated on coordinate grids
of a whole chunk of images at once, with a one-pixel anti-aliased edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradprobe.data.seeds import torch_generator

Tensor = torch.Tensor
_CHUNK = 2048  # images rendered together: bounds the float32 working set (~20 arrays of n*H*W)


def _box(u: Tensor, v: Tensor, cu: float, cv: float, half_u: float, half_v: float) -> Tensor:
    """Signed distance (Chebyshev approximation) to an axis-aligned box; negative inside."""
    return torch.maximum((u - cu).abs() - half_u, (v - cv).abs() - half_v)


def _stripes(coordinate: Tensor, period: float) -> Tensor:
    """Negative on the middle half of every period along `coordinate`: parallel bars."""
    phase = torch.remainder(coordinate / period + 0.25, 1.0)
    return ((phase - 0.5).abs() - 0.25) * period


def _disc(u: Tensor, v: Tensor) -> Tensor:
    return torch.hypot(u, v) - 0.9


def _ring(u: Tensor, v: Tensor) -> Tensor:
    return (torch.hypot(u, v) - 0.7).abs() - 0.22


def _cross(u: Tensor, v: Tensor) -> Tensor:
    return torch.minimum(_box(u, v, 0, 0, 0.95, 0.28), _box(u, v, 0, 0, 0.28, 0.95))


def _square(u: Tensor, v: Tensor) -> Tensor:
    """A square outline (frame)."""
    return (torch.maximum(u.abs(), v.abs()) - 0.66).abs() - 0.18


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    """Equilateral triangle, circumradius 0.95, apex up: the largest of three edge distances."""
    inradius = 0.95 / 2
    edges = [(math.cos(a), math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
    distances = [-(nx * u - ny * v) - inradius for nx, ny in edges]  # -v: image rows grow down
    return torch.maximum(torch.maximum(distances[0], distances[1]), distances[2])


def _stripes_h(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(_box(u, v, 0, 0, 0.85, 0.85), _stripes(v, 0.57))


def _stripes_v(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(_box(u, v, 0, 0, 0.85, 0.85), _stripes(u, 0.57))


def _checker(u: Tensor, v: Tensor) -> Tensor:
    wave = 2 * math.pi / 0.85  # two cells per side
    pattern = -torch.sin(wave * u) * torch.sin(wave * v) / wave  # ~distance near the cell edges
    return torch.maximum(_box(u, v, 0, 0, 0.85, 0.85), pattern)


def _two_blobs(u: Tensor, v: Tensor) -> Tensor:
    return torch.minimum(torch.hypot(u - 0.5, v), torch.hypot(u + 0.5, v)) - 0.4


def _l_shape(u: Tensor, v: Tensor) -> Tensor:
    return torch.minimum(_box(u, v, -0.55, 0, 0.25, 0.85), _box(u, v, 0, 0.6, 0.8, 0.25))


# Class order is part of the dataset's identity: label i is SHAPES[i].
SHAPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "disc": _disc,
    "ring": _ring,
    "cross": _cross,
    "square": _square,
    "triangle": _triangle,
    "stripes_h": _stripes_h,
    "stripes_v": _stripes_v,
    "checker": _checker,
    "two_blobs": _two_blobs,
    "l_shape": _l_shape,
}
GENERATOR_VERSION = 1  # bump when rendering changes: it is part of the split fingerprint


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def render_shapes(
    sdf: Callable[[Tensor, Tensor], Tensor], count: int, image_size: int, generator: torch.Generator
) -> Tensor:
    """`count` images (count, 3, S, S) uint8 of one shape under random nuisance parameters."""
    n, size = count, image_size
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0  # in [-1, 1]
    y, x = centres.view(1, size, 1), centres.view(1, 1, size)

    scale = _uniform(generator, 0.3, 0.5, n, 1, 1)  # shape radius / half the image
    room = 0.92 - scale  # keep the shape (nearly) inside the frame
    cx = _uniform(generator, -1, 1, n, 1, 1) * room
    cy = _uniform(generator, -1, 1, n, 1, 1) * room
    angle = _uniform(generator, -math.pi / 6, math.pi / 6, n, 1, 1)  # +-30 deg keeps h/v stripes
    cos, sin = torch.cos(angle), torch.sin(angle)
    dx, dy = x - cx, y - cy  # (n, S, S)
    u = (dx * cos + dy * sin) / scale
    v = (dy * cos - dx * sin) / scale
    pixel = 2.0 / size
    mask = (0.5 - sdf(u, v) * scale / pixel).clamp_(0.0, 1.0)  # (n, S, S), anti-aliased edge

    # Colours: luminances with a guaranteed contrast of random sign, plus independent tints.
    # The procedure is symmetric under x -> 1 - x, so E[foreground] = E[background] = 0.5.
    lum_bg = _uniform(generator, 0.1, 0.9, n, 1)
    contrast = _uniform(generator, 0.3, 0.6, n, 1)
    sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -1.0, 1.0)
    lum_fg = lum_bg + sign * contrast
    lum_fg = torch.where((lum_fg < 0.05) | (lum_fg > 0.95), lum_bg - sign * contrast, lum_fg)
    background = (lum_bg + _uniform(generator, -0.15, 0.15, n, 3)).clamp_(0, 1)  # (n, 3)
    foreground = (lum_fg + _uniform(generator, -0.15, 0.15, n, 3)).clamp_(0, 1)

    # Background texture: one random plane wave of small amplitude (zero mean over the phase).
    amplitude = _uniform(generator, 0.0, 0.1, n, 1, 1)
    direction = _uniform(generator, 0.0, 2 * math.pi, n, 1, 1)
    frequency = _uniform(generator, 1.5, 5.0, n, 1, 1) * math.pi
    phase = _uniform(generator, 0.0, 2 * math.pi, n, 1, 1)
    texture = amplitude * torch.sin(
        frequency * (x * torch.cos(direction) + y * torch.sin(direction)) + phase
    )
    noise_std = _uniform(generator, 0.02, 0.06, n, 1, 1, 1)
    noise = torch.randn(n, 1, size, size, generator=generator).mul_(noise_std)  # luminance noise

    # Composite with few full-size passes: bg + mask * (fg - bg) + texture * (1 - mask) + noise.
    mask = mask.unsqueeze(1)  # (n, 1, S, S)
    gray = texture.unsqueeze(1).mul_(1 - mask).add_(noise)  # (n, 1, S, S): channel-shared terms
    contrast_rgb = (foreground - background).view(n, 3, 1, 1)
    image = torch.addcmul(background.view(n, 3, 1, 1), mask, contrast_rgb)
    image.add_(gray)  # (n, 3, S, S)
    return image.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def generate_synthetic(
    num_classes: int, images_per_class: int, image_size: int, seed: int
) -> tuple[Tensor, Tensor, list[str]]:
    """All images (N, 3, S, S) uint8, labels (N,) int64 and class names, class by class.

    Class c draws from its own generator seeded by (seed, c), so its images do not depend on how
    many other classes there are.
    """
    names = list(SHAPES)[:num_classes]
    images = torch.empty((num_classes * images_per_class, 3, image_size, image_size),
                         dtype=torch.uint8)
    for class_index, name in enumerate(names):
        generator = torch_generator("synthetic", GENERATOR_VERSION, seed, class_index)
        base = class_index * images_per_class
        for start in range(0, images_per_class, _CHUNK):
            count = min(_CHUNK, images_per_class - start)
            images[base + start : base + start + count] = render_shapes(
                SHAPES[name], count, image_size, generator
            )
    labels = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(images_per_class)
    return images, labels, names
