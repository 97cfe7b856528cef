"""The synthetic IQA set, in the style of KADID-10k: pristine references x distortion types x levels.

Each distorted image's MOS (0-100) is a full-reference measure against its pristine reference:

    MOS = 100 * SSIM(ref, dist) * exp(-dE / 40)

SSIM (RGB, scikit-image) scores structural damage (blur, noise, blocking, pixelation); dE, the mean CIE76
colour difference in CIELAB, scores tone and colour shifts that SSIM barely sees (desaturation, exposure).
Level 1 is mild, level L severe; the MOS falls with the level for every distortion on every photograph (checked
for all nine photographs at 64 and 96 px), except that pixelation's block aliasing can invert one step.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from skimage.color import deltaE_cie76, rgb2lab
from skimage.metrics import structural_similarity

from tatar.config import SyntheticConfig
from tatar.data.checks import RawRow
from tatar.data.registry import SYNTHETIC_SCALE
from tatar.data.sources import crop_window, load_photo, resize, rng_for, save_png, to_uint8
from tatar.errors import ConfigValueError

DATASET = "synthetic_iqa"
DELTA_E_SCALE = 40.0

# distortion(image in [0, 1], strength t in (0, 1], rng) -> distorted image; t = level / levels.
Distortion = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(image))


def _from_pil(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def _gray(image: np.ndarray) -> np.ndarray:
    return (image @ np.array([0.299, 0.587, 0.114]))[..., None]


def gaussian_blur(image, t, rng):
    return _from_pil(_pil(image).filter(ImageFilter.GaussianBlur(3.0 * t * image.shape[0] / 96)))


def motion_blur(image, t, rng):
    # Horizontal camera shake: a centred line kernel of half-length ``half`` px, fractional at its ends so the
    # blur grows smoothly with t at any image size (no shift, no ties between levels).
    half = 4.0 * t * image.shape[0] / 96
    x = np.arange(-np.ceil(half), np.ceil(half) + 1)
    kernel = np.clip(half + 0.5 - np.abs(x), 0.0, 1.0)
    return ndimage.convolve1d(image, kernel / kernel.sum(), axis=1, mode="reflect")


def gaussian_noise(image, t, rng):
    return image + rng.normal(0.0, 0.2 * t, image.shape)


def jpeg(image, t, rng):
    buf = io.BytesIO()
    _pil(image).save(buf, format="JPEG", quality=int(round(60 * (1 / 30) ** t)))  # 30, 15, 8, 4, 2 at 5 levels
    return _from_pil(Image.open(buf))


def brighten(image, t, rng):
    return image ** (1.0 / (1.0 + 2.0 * t))


def darken(image, t, rng):
    return image ** (1.0 + 2.0 * t)


def desaturate(image, t, rng):
    gray = _gray(image)
    return gray + (image - gray) * (1.0 - t)


def contrast_decrease(image, t, rng):
    return 0.5 + (image - 0.5) * (1.0 - 0.8 * t)


def pixelate(image, t, rng):
    size = image.shape[0]
    small = max(2, int(round(size / (1 + 7 * t))))
    return _from_pil(_pil(image).resize((small, small), Image.BOX).resize((size, size), Image.NEAREST))


DISTORTIONS: dict[str, Distortion] = {
    f.__name__: f
    for f in (gaussian_blur, motion_blur, gaussian_noise, jpeg, brighten, darken, desaturate, contrast_decrease,
              pixelate)
}


def full_reference_mos(reference: np.ndarray, distorted: np.ndarray, reference_lab: np.ndarray | None = None) -> float:
    """MOS on 0-100 of ``distorted`` against its pristine ``reference`` (both uint8 RGB)."""
    ssim = structural_similarity(reference, distorted, channel_axis=2, data_range=255)
    reference_lab = rgb2lab(reference) if reference_lab is None else reference_lab
    delta_e = deltaE_cie76(reference_lab, rgb2lab(distorted)).mean()
    return float(np.clip(100.0 * max(ssim, 0.0) * np.exp(-delta_e / DELTA_E_SCALE), 0.0, 100.0))


def chosen_grid(cfg: SyntheticConfig, seed: int, source: str, crop: int) -> list[tuple[str, int]]:
    """The (distortion, level) pairs rendered for one reference: the full grid, or a seeded sample of
    ``iqa_per_source`` of it (every pair still occurs across references)."""
    grid = [(d, level) for d in cfg.iqa_distortions for level in range(1, cfg.iqa_levels + 1)]
    k = cfg.iqa_per_source or len(grid)
    if k >= len(grid):
        return grid
    picked = rng_for(seed, "iqa-grid", source, crop).permutation(len(grid))[:k]
    return [grid[i] for i in sorted(picked)]


def build_iqa(cfg: SyntheticConfig, seed: int, sources: list[str], split: str, root: Path) -> list[RawRow]:
    unknown = sorted(set(cfg.iqa_distortions) - set(DISTORTIONS))
    if unknown:
        raise ConfigValueError(f"data.synthetic.iqa_distortions: unknown {unknown}; "
                               f"available: {', '.join(DISTORTIONS)}")
    rows = []
    for source in sources:
        for crop in range(cfg.crops_per_source):
            window = crop_window(load_photo(source), crop, seed, source, square=True)
            reference = resize(window, (cfg.image_size, cfg.image_size))
            reference8 = to_uint8(reference)
            reference_lab = rgb2lab(reference8)
            for name, level in chosen_grid(cfg, seed, source, crop):
                rng = rng_for(seed, "iqa", source, crop, name, level)
                distorted8 = to_uint8(DISTORTIONS[name](reference, level / cfg.iqa_levels, rng))
                image = f"{split}/{source}_c{crop}_{name}_{level}.png"
                save_png(distorted8, root / image)
                mos = round(full_reference_mos(reference8, distorted8, reference_lab), 2)
                rows.append(RawRow(dataset=DATASET, task="iqa", split=split, image=image, root=root.as_posix(),
                                   score=mos, scale=SYNTHETIC_SCALE, where=f"synthetic {name} level {level}"))
    return rows
