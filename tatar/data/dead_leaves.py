"""Procedural training scenes for the embedded default: the dead-leaves model (opaque discs dropped on top of each
other, radii distributed as r^-3), the scene camera texture charts use because its statistics are scale-invariant
like natural images'. Five photographs give the tiny model few kinds of content to tell distortions apart on;
these add flat regions with sharp edges at every scale and other palettes (NOTES.md, issue 16)."""

from __future__ import annotations

from colorsys import hsv_to_rgb

import numpy as np

PREFIX = "dead_leaves_"
SEED_BASE = 1_000_003  # any fixed base: a scene depends only on its index
SUBJECT = "an abstract pattern of overlapping coloured discs"


def names(count: int) -> list[str]:
    return [f"{PREFIX}{k}" for k in range(count)]


def index_of(name: str) -> int | None:
    """The scene index of a ``dead_leaves_<k>`` name, else None."""
    suffix = name.removeprefix(PREFIX)
    return int(suffix) if name.startswith(PREFIX) and suffix.isdigit() else None


def dead_leaves(index: int, size: int = 512) -> np.ndarray:
    """Scene ``index`` as RGB uint8 (size x size): discs of radius 6 px to size/2.5 until 99.5% of the frame is
    covered, hues around three per scene, lit by a gentle gradient."""
    rng = np.random.default_rng(SEED_BASE + index)
    canvas = np.zeros((size, size, 3))
    covered = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size]
    rmin, rmax = 6.0, size / 2.5
    hues = rng.uniform(size=3)
    uncovered = covered.size  # counted as discs land: a mean over the frame per disc was most of the cost
    while uncovered > 0.005 * covered.size:
        # inverse CDF of p(r) ~ r^-3 on [rmin, rmax]
        r = (rmin ** -2 - rng.uniform() * (rmin ** -2 - rmax ** -2)) ** -0.5
        cy, cx = rng.uniform(0, size, 2)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        if y1 <= y0 or x1 <= x0:
            continue
        disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        visible = disc & ~covered[y0:y1, x0:x1]  # earlier discs lie on top
        hue = (rng.choice(hues) + rng.normal(0, 0.04)) % 1.0
        canvas[y0:y1, x0:x1][visible] = hsv_to_rgb(hue, rng.beta(1.5, 2.5), rng.beta(2.5, 1.8))
        covered[y0:y1, x0:x1] |= visible
        uncovered -= int(visible.sum())
    gy, gx = rng.normal(0, 0.25, 2)
    light = 1.0 + gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
    return (np.clip(canvas * light[..., None], 0, 1) * 255 + 0.5).astype(np.uint8)
