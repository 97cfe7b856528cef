"""Cheap, classical image measures that ground the reference teacher's rationales in the pixels.

IQA: sharpness, noise, blockiness, exposure, contrast, colourfulness, turned into per-defect severities in [0, 1].
IAA: a saliency map gives the subject's position (rule of thirds), size and isolation, the balance of visual
weight, and the palette's harmony (hue concentration) and temperature.
Measures run on a copy downscaled to at most ``MAX_SIDE`` pixels (about a millisecond each), except blockiness,
which needs the native 8-px grid and reads a native-resolution centre crop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

MAX_SIDE = 256
BLOCK = 8  # JPEG block size


@dataclass(frozen=True)
class Pixels:
    small: np.ndarray  # float RGB in [0, 1], longest side at most MAX_SIDE
    crop: np.ndarray  # float luminance of a native-resolution centre crop (block artefacts survive only here)


def load_rgb(data: bytes) -> Pixels:
    """Decode encoded image bytes once into the two RGB-derived views the measures need."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
    w, h = im.size
    # Start on the 8-px grid so JPEG block borders stay where the blockiness measure looks for them.
    left, top = (max(0, (w - MAX_SIDE) // 2) // BLOCK) * BLOCK, (max(0, (h - MAX_SIDE) // 2) // BLOCK) * BLOCK
    crop = im.crop((left, top, min(w, left + MAX_SIDE), min(h, top + MAX_SIDE)))
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    return Pixels(small=np.asarray(im, dtype=np.float32) / 255.0,
                  crop=_luma(np.asarray(crop, dtype=np.float32) / 255.0))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at ``lo``, 1 at ``hi`` (either direction), clipped."""
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------- IQA
@dataclass(frozen=True)
class QualityMeasures:
    sharpness: float  # high-frequency share of the gradient energy
    noise: float  # Immerkaer's noise sigma estimate, 0-1 intensity units
    blockiness: float  # gradient at 8-px block borders over gradient inside blocks (1 = none)
    brightness: float  # mean luminance
    highlights: float  # share of pixels clipped to white
    shadows: float  # share of pixels crushed to black
    contrast: float  # RMS contrast (std of luminance)
    colourfulness: float  # Hasler and Suesstrunk, 0-255 units

    def severities(self) -> dict[str, float]:
        """How bad each technical defect looks, 0 (absent) to 1 (severe); thresholds set on distorted photos."""
        return {
            "blur": _ramp(self.sharpness, 0.5, 0.12),
            "noise": _ramp(self.noise, 0.028, 0.06),
            "compression": _ramp(self.blockiness, 1.15, 1.6),
            "overexposure": max(_ramp(self.brightness, 0.6, 0.85), _ramp(self.highlights, 0.1, 0.4)),
            "underexposure": max(_ramp(self.brightness, 0.3, 0.1), _ramp(self.shadows, 0.15, 0.5)),
            "low_contrast": _ramp(self.contrast, 0.12, 0.04),
            "dull_colour": _ramp(self.colourfulness, 20.0, 4.0),
        }


def quality_measures(pixels: Pixels) -> QualityMeasures:
    rgb = pixels.small
    gray = _luma(rgb)
    gy, gx = np.gradient(gray)
    grad_energy = float(np.mean(gx**2 + gy**2)) + 1e-8
    lap = ndimage.laplace(gray)
    sharpness = float(np.mean(lap**2)) / grad_energy / 4.0  # about 0.8-1.7 for crisp photos, < 0.4 blurred

    # Immerkaer (1996): a Laplacian-difference kernel cancels image structure and keeps noise.
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    resp = ndimage.convolve(gray, kernel)[1:-1, 1:-1]
    noise = float(np.sqrt(np.pi / 2) * np.mean(np.abs(resp)) / 6.0)

    blockiness = _block_ratio(pixels.crop)

    r, g, b = (rgb[..., i] * 255.0 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))

    return QualityMeasures(
        sharpness=sharpness,
        noise=noise,
        blockiness=blockiness,
        brightness=float(gray.mean()),
        highlights=float(np.mean(gray > 0.98)),
        shadows=float(np.mean(gray < 0.02)),
        contrast=float(gray.std()),
        colourfulness=colourfulness,
    )


# ------------------------------------------------------------------------------------ IQA, per region
GRID = 3  # the frame is read as a 3 x 3 grid of regions: (row, col), (0, 0) top left
DEFECTS = ("blur", "noise", "compression", "overexposure", "underexposure", "low_contrast", "dull_colour")


@dataclass(frozen=True)
class Spot:
    """Where one technical factor shows in the frame."""

    worst: tuple[int, int]  # the region where the defect is most visible
    best: tuple[int, int]  # the region where it is least visible (the factor is at its best)
    spread: float  # share of regions where it is at least half as visible as in the worst one (1 = everywhere)


@dataclass(frozen=True)
class QualityView:
    """Everything the reference teacher's IQA writing draws on, per image: how bad each defect is (``severity``,
    0-1, the thresholds set on distorted photos), a finer-grained ``soft`` grade of the same factors that still
    tells clean images apart (0 = as good as photos get, 1 = at the defect threshold or worse), and ``spots``."""

    severity: dict[str, float]
    soft: dict[str, float]
    spots: dict[str, Spot]


def _soft(sharpness, noise, blockiness, brightness, highlights, shadows, contrast, colourfulness) -> dict[str, float]:
    """Wide ramps from "excellent" to each defect's threshold; they order factors where severities are all 0."""
    return {
        "blur": _ramp(sharpness, 1.3, 0.3),
        "noise": _ramp(noise, 0.004, 0.045),
        "compression": _ramp(blockiness, 1.0, 1.4),
        "overexposure": max(_ramp(brightness, 0.45, 0.8), _ramp(highlights, 0.0, 0.25)),
        "underexposure": max(_ramp(brightness, 0.45, 0.15), _ramp(shadows, 0.0, 0.3)),
        "low_contrast": _ramp(contrast, 0.3, 0.06),
        "dull_colour": _ramp(colourfulness, 60.0, 8.0),
    }


def _cells(a: np.ndarray, align: int = 1) -> list[tuple[tuple[int, int], np.ndarray]]:
    """The GRID x GRID regions of ``a``; inner borders rounded down to multiples of ``align``."""
    h, w = a.shape[:2]
    ys, xs = ((np.linspace(0, n, GRID + 1) // align * align).astype(int) for n in (h, w))
    ys[-1], xs[-1] = h, w
    return [((r, c), a[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]) for r in range(GRID) for c in range(GRID)]


def _spot(badness: dict[tuple[int, int], float]) -> Spot:
    worst = max(badness, key=lambda k: (badness[k], -k[0], -k[1]))
    best = min(badness, key=lambda k: (badness[k], k[0], k[1]))
    top = badness[worst]
    spread = float(np.mean([v >= 0.5 * top for v in badness.values()])) if top > 1e-6 else 0.0
    return Spot(worst=worst, best=best, spread=spread)


def quality_view(pixels: Pixels) -> QualityView:
    """Global severities plus, per factor, the region where it is worst and best and how far it spreads."""
    m = quality_measures(pixels)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    gray = _luma(pixels.small)
    gy, gx = np.gradient(gray)
    grad, lap = gx**2 + gy**2, ndimage.laplace(gray) ** 2
    resid = np.abs(ndimage.convolve(gray, kernel)) * (np.sqrt(np.pi / 2) / 6.0)
    r, g, b = (pixels.small[..., i] * 255.0 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    stack = np.stack([gray, grad, lap, resid, rg, yb], axis=-1)

    local: dict[tuple[int, int], dict[str, float]] = {}
    energy: dict[tuple[int, int], float] = {}
    for cell, block in _cells(stack):
        cg, cgrad, clap, cres, crg, cyb = (block[..., i] for i in range(6))
        energy[cell] = float(cgrad.mean())
        local[cell] = _soft(
            sharpness=float(clap.mean()) / (float(cgrad.mean()) + 1e-8) / 4.0, noise=float(cres.mean()),
            blockiness=m.blockiness, brightness=float(cg.mean()), highlights=float(np.mean(cg > 0.98)),
            shadows=float(np.mean(cg < 0.02)), contrast=float(cg.std()),
            colourfulness=float(np.hypot(crg.std(), cyb.std()) + 0.3 * np.hypot(crg.mean(), cyb.mean())))
    # Blur shows where there is structure to smear, noise where the surface is flat: weigh regions accordingly.
    median = float(np.median(list(energy.values()))) + 1e-8
    textured = {k for k, e in energy.items() if e >= 0.5 * median}
    flat = sorted(energy, key=energy.get)[: max(3, len(energy) // 2)]
    blocks = {cell: _block_ratio(crop) for cell, crop in _cells(pixels.crop, align=BLOCK)}
    spots = {}
    for defect in DEFECTS:
        badness = {k: v[defect] for k, v in local.items()}
        if defect == "blur":
            badness = {k: v for k, v in badness.items() if k in textured} or badness
        elif defect == "noise":
            badness = {k: badness[k] for k in flat}
        elif defect == "compression":
            badness = blocks
        spots[defect] = _spot(badness)
    return QualityView(severity=m.severities(), soft=_soft(**vars(m)), spots=spots)


def _block_ratio(luma: np.ndarray) -> float:
    """Gradient across 8-px block borders over gradient inside blocks (1 = no blocking)."""
    dx, dy = np.abs(np.diff(luma, axis=1)), np.abs(np.diff(luma, axis=0))
    border_x = dx[:, BLOCK - 1 :: BLOCK].mean() if dx.shape[1] >= BLOCK else 0.0
    border_y = dy[BLOCK - 1 :: BLOCK, :].mean() if dy.shape[0] >= BLOCK else 0.0
    return float((border_x + border_y) / (dx.mean() + dy.mean() + 1e-8))


# ---------------------------------------------------------------------------------------------- IAA
HUE_NAMES = ((20, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (260, "blue"),
             (300, "purple"), (340, "magenta"), (360, "red"))


@dataclass(frozen=True)
class AestheticMeasures:
    subject_x: float  # saliency centroid, 0 (left) .. 1 (right)
    subject_y: float  # 0 (top) .. 1 (bottom)
    thirds_distance: float  # centroid to the nearest rule-of-thirds point, in image diagonals
    subject_size: float  # share of the frame that is salient
    isolation: float  # saliency inside the subject region over outside (>1: stands out)
    balance: float  # 1 = visual weight evenly split left/right and top/bottom, 0 = all on one side
    harmony: float  # hue concentration of saturated pixels, 0 (every hue) .. 1 (one hue)
    dominant_hue: str
    warmth: float  # share of saturated pixels with warm hues
    saturation: float
    brightness: float

    @property
    def placement(self) -> str:
        if self.thirds_distance < 0.08:
            return "thirds"
        if abs(self.subject_x - 0.5) < 0.08 and abs(self.subject_y - 0.5) < 0.08:
            return "centre"
        return "edge" if max(abs(self.subject_x - 0.5), abs(self.subject_y - 0.5)) > 0.25 else "off-centre"

    @property
    def side(self) -> str:
        dx, dy = self.subject_x - 0.5, self.subject_y - 0.5
        if abs(dx) >= abs(dy):
            return "right" if dx > 0 else "left"
        return "bottom" if dy > 0 else "top"


def _hue_name(degrees: float) -> str:
    return next(name for limit, name in HUE_NAMES if degrees < limit)


def aesthetic_measures(pixels: Pixels) -> AestheticMeasures:
    rgb = pixels.small
    h, w = rgb.shape[:2]
    gray = _luma(rgb)
    # Saliency: smoothed edge density plus colour distinctness from the mean colour.
    smooth = max(1.0, min(h, w) / 24)
    edges = ndimage.gaussian_filter(np.hypot(*np.gradient(gray)), smooth)
    distinct = ndimage.gaussian_filter(np.linalg.norm(rgb - rgb.reshape(-1, 3).mean(0), axis=-1), smooth)
    sal = edges / (edges.max() + 1e-8) + distinct / (distinct.max() + 1e-8)
    mass = sal.sum() + 1e-8
    # The subject: the most salient pixels; its centroid is where the eye lands.
    region = sal > 0.5 * sal.max()
    peak = sal * region
    ys, xs = np.mgrid[0:h, 0:w]
    cx = float((peak * xs).sum() / (peak.sum() + 1e-8) / max(w - 1, 1))
    cy = float((peak * ys).sum() / (peak.sum() + 1e-8) / max(h - 1, 1))
    thirds = min(np.hypot(cx - tx, cy - ty) for tx in (1 / 3, 2 / 3) for ty in (1 / 3, 2 / 3)) / np.sqrt(2)
    inside, outside = sal[region].mean(), sal[~region].mean() if (~region).any() else 1e-8
    left, top = sal[:, : w // 2].sum() / mass, sal[: h // 2].sum() / mass
    balance = 1.0 - max(abs(2 * left - 1), abs(2 * top - 1))

    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / (mx + 1e-8), 0.0)
    hue = _hues(rgb, mx, mn)
    weight = sat * (mx > 0.1)
    total = weight.sum() + 1e-8
    vec = (weight * np.exp(1j * np.deg2rad(hue))).sum() / total
    mean_hue = float(np.rad2deg(np.angle(vec)) % 360)
    warm = (hue < 70) | (hue >= 330)
    grey = float(np.mean(sat < 0.08))  # share of colourless pixels: a greyscale image has no palette to speak of
    return AestheticMeasures(
        subject_x=cx, subject_y=cy, thirds_distance=float(thirds), subject_size=float(region.mean()),
        isolation=float(inside / (outside + 1e-8)), balance=float(balance),
        harmony=float(abs(vec)) if grey < 0.95 else 1.0,
        dominant_hue=_hue_name(mean_hue) if grey < 0.95 else "grey", warmth=float((weight * warm).sum() / total),
        saturation=float(sat.mean()), brightness=float(gray.mean()),
    )


def _hues(rgb: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """HSV hue in degrees (0 for grey pixels)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.where(mx - mn > 1e-6, mx - mn, 1.0)
    hue = np.where(mx == r, (g - b) / d % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return np.where(mx - mn > 1e-6, hue * 60.0, 0.0)
