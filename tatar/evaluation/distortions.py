"""SRCC per distortion, for benchmarks whose published file names say what each image shows.

Papers on synthetic-distortion sets report this table: which distortions a model ranks and which it does not. Two
figures per distortion: the SRCC over all its images (across reference scenes, where a no-reference model must
also judge how much a distortion costs each scene) and the mean SRCC within each reference (does the score fall
as the distortion strengthens?). File names read:

- KADID-10k: ``I<reference>_<type>_<level>.png`` (``I03_17_02.png``: scene 3, type 17 = darken, level 2), with the 25
  type codes of the dataset's paper (Lin, Hosu, Saupe 2019);
- the embedded synthetic set: ``<photograph>_c<crop>_<distortion>_<level>.png`` (``tatar.data.synthetic_iqa``).

A benchmark gets the table only when every image's name parses the same way; any other benchmark has none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

if TYPE_CHECKING:  # metrics.py imports this module for EvalMetrics
    from tatar.evaluation.metrics import Prediction

KADID_TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift", "color_quantization",
    "color_saturation_1", "color_saturation_2", "jpeg2000", "jpeg", "white_noise", "white_noise_color_component",
    "impulse_noise", "multiplicative_noise", "denoise", "brighten", "darken", "mean_shift", "jitter",
    "non_eccentricity_patch", "pixelate", "quantization", "color_block", "high_sharpen", "contrast_change",
)


def _kadid_type(code: str) -> str | None:
    index = int(code) - 1
    return KADID_TYPES[index] if 0 <= index < len(KADID_TYPES) else None


def _synthetic_distortion(name: str) -> str | None:
    from tatar.data.synthetic_iqa import DISTORTIONS  # here: the metrics alone need no scikit-image

    return name if name in DISTORTIONS else None


# (file-name pattern, distortion name from the pattern's ``distortion`` group or None when it is not one)
NAMINGS: tuple[tuple[re.Pattern, Callable[[str], str | None]], ...] = (
    (re.compile(r"^I(?P<reference>\d{2})_(?P<distortion>\d{2})_(?P<level>\d{2})\.png$"), _kadid_type),
    (re.compile(r"^(?P<reference>.+_c\d+)_(?P<distortion>[a-z][a-z0-9_]*)_(?P<level>\d+)\.png$"),
     _synthetic_distortion),
)


class Distorted(NamedTuple):
    reference: str
    distortion: str
    level: int


def parse_name(image: str, naming: int) -> Distorted | None:
    pattern, distortion_name = NAMINGS[naming]
    match = pattern.match(PurePath(image).name)
    distortion = match and distortion_name(match["distortion"])
    return Distorted(match["reference"], distortion, int(match["level"])) if distortion else None


def parse_names(images: Sequence[str]) -> list[Distorted] | None:
    """What each image shows, by the first naming that reads every name; None when none does."""
    for naming in range(len(NAMINGS)):
        parsed = []
        for image in images:  # stop at the first name this naming cannot read (authentic sets: the first)
            if (distorted := parse_name(image, naming)) is None:
                break
            parsed.append(distorted)
        else:
            if parsed:
                return parsed
    return None


class DistortionSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int  # images of this distortion with a parsed prediction
    srcc: float | None  # over all of them, across references
    within_reference_srcc: float | None  # mean over references where it is defined
    references: int  # references with at least two parsed images of this distortion
    undefined: int  # of those, how many have constant predictions or labels (left out of the mean)


def by_distortion(predictions: Sequence[Prediction]) -> dict[str, DistortionSummary]:
    """Per distortion, in order of first appearance; empty when the image names do not say the distortion."""
    named = parse_names([p.image for p in predictions])
    if named is None:
        return {}
    groups: dict[str, dict[str, list[Prediction]]] = {}
    for p, d in zip(predictions, named, strict=True):
        if p.pred is not None:
            groups.setdefault(d.distortion, {}).setdefault(d.reference, []).append(p)
    out = {}
    for distortion, by_reference in groups.items():
        flat = [p for ps in by_reference.values() for p in ps]
        within = [_srcc(ps) for ps in by_reference.values() if len(ps) >= 2]
        defined = [r for r in within if r is not None]
        out[distortion] = DistortionSummary(
            n=len(flat), srcc=_srcc(flat),
            within_reference_srcc=float(np.mean(defined)) if defined else None, references=len(within),
            undefined=len(within) - len(defined))
    return out


def _srcc(predictions: Sequence[Prediction]) -> float | None:
    """Tie-aware SRCC; None when either side is constant (as ``metrics.correlations``)."""
    x, y = [p.pred for p in predictions], [p.score_100 for p in predictions]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(stats.spearmanr(x, y).statistic)
