"""Source photographs of the embedded default: scikit-image's bundled colour photographs and matplotlib's sample
portrait (both ship inside the installed packages, so they load offline) and procedural dead-leaves scenes
(``dead_leaves_<k>``, tatar.data.dead_leaves), plus the small image helpers the synthetic builders share (seeded
RNGs, crops, resizing, PNG writing)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from tatar.atomic_write import write_bytes
from tatar.data import dead_leaves
from tatar.errors import ConfigValueError

PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skdata.astronaut,
    "chelsea": skdata.chelsea,
    "coffee": skdata.coffee,
    "rocket": skdata.rocket,
    "hubble_deep_field": skdata.hubble_deep_field,
    "immunohistochemistry": skdata.immunohistochemistry,
    "retina": skdata.retina,
    "motorcycle_left": lambda: skdata.stereo_motorcycle()[0],
    "motorcycle_right": lambda: skdata.stereo_motorcycle()[1],
    "grace_hopper": lambda: _matplotlib_sample("grace_hopper.jpg"),
}
# The two motorcycle photographs are one scene from two viewpoints: they must fall on the same side of the split.
SCENES = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
# What each photograph shows, for the IAA "theme" attribute.
SUBJECTS = {
    "astronaut": "a formal portrait of an astronaut in a spacesuit before a flag",
    "chelsea": "a close portrait of a tabby cat",
    "coffee": "a still life of a cup of coffee on a saucer",
    "rocket": "a rocket standing on its launch pad",
    "hubble_deep_field": "a deep-space field of distant galaxies",
    "immunohistochemistry": "a stained tissue section under the microscope",
    "retina": "a photograph of the back of an eye, the retina and its vessels",
    "motorcycle_left": "a motorcycle parked in a cluttered workshop",
    "motorcycle_right": "a motorcycle parked in a cluttered workshop",
    "grace_hopper": "a formal portrait of a naval officer in dress uniform",
}


def _matplotlib_sample(name: str) -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def split_sources(sources: list[str], test_sources: list[str]) -> tuple[list[str], list[str]]:
    """(train, test) photograph names; train and test never share a scene."""
    unknown = sorted(set(sources) - set(PHOTOS))
    if unknown:
        raise ConfigValueError(f"data.synthetic.sources: unknown photographs {unknown}; available: {', '.join(PHOTOS)}")
    outside = sorted(set(test_sources) - set(sources))
    if outside:
        raise ConfigValueError(f"data.synthetic.test_sources {outside} are not in data.synthetic.sources")
    test = [s for s in sources if s in test_sources]
    train = [s for s in sources if s not in test_sources]
    shared = {SCENES.get(s, s) for s in train} & {SCENES.get(s, s) for s in test}
    if shared:
        raise ConfigValueError(f"data.synthetic: scene(s) {sorted(shared)} on both sides of the train/test split; "
                         f"put all of {[s for s in sources if SCENES.get(s, s) in shared]} in test_sources or none")
    if not train or not test:
        raise ConfigValueError("data.synthetic: need at least one training and one test photograph")
    return train, test


def subject(name: str) -> str:
    """What a source shows, for the IAA "theme" attribute."""
    return dead_leaves.SUBJECT if dead_leaves.index_of(name) is not None else SUBJECTS[name]


@cache
def load_photo(name: str) -> np.ndarray:
    """RGB uint8 photograph or dead-leaves scene (read-only: callers copy)."""
    index = dead_leaves.index_of(name)
    photo = dead_leaves.dead_leaves(index) if index is not None else np.ascontiguousarray(PHOTOS[name]()[..., :3])
    photo.setflags(write=False)
    return photo


def rng_for(seed: int, *keys) -> np.random.Generator:
    """An RNG that depends only on the seed and the keys (not on build order or Python's hash salt)."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def crop_window(photo: np.ndarray, index: int, seed: int, name: str, square: bool) -> np.ndarray:
    """Crop ``index`` of a photograph: 0 is the whole frame (centre square if ``square``), others a seeded
    window of 60-95% of it, so several crops give several scenes per photograph."""
    h, w = photo.shape[:2]
    if index == 0:
        scale = 1.0
    else:
        scale = rng_for(seed, "crop", name, index).uniform(0.6, 0.95)
    ch, cw = (int(min(h, w) * scale),) * 2 if square else (int(h * scale), int(w * scale))
    rng = rng_for(seed, "crop-pos", name, index)
    y = (h - ch) // 2 if index == 0 else int(rng.integers(0, h - ch + 1))
    x = (w - cw) // 2 if index == 0 else int(rng.integers(0, w - cw + 1))
    return photo[y:y + ch, x:x + cw]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float RGB [0, 1] resized to (width, height) with Lanczos (deterministic)."""
    src = image if image.dtype == np.uint8 else to_uint8(image)
    return np.asarray(Image.fromarray(src).resize(size, Image.LANCZOS), dtype=np.float64) / 255.0


def save_png(image: np.ndarray, path: Path) -> None:
    """Write a float [0, 1] or uint8 RGB array as PNG; same pixels give the same bytes (no metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(image if image.dtype == np.uint8 else to_uint8(image)).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
