"""Tiny manifest records for the teacher tests: 48 px images written to a folder, IQA and IAA (with and without
attribute notes), so the tests need neither the prepare stage nor downloads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from tatar.config import TeacherConfig
from tatar.hashing import sha256_file
from tatar.records import ATTRIBUTES, ManifestRecord

NOTES = {
    "visual_elements": "Warm amber tones and soft side light shape the frame.",
    "composition": "The subject sits near the left third with open space to the right.",
    "gestalt": "Repeated curves tie the foreground to the background.",
    "technical_execution": "Focus is accurate; highlights keep their detail.",
    "theme": "A quiet domestic moment of rest.",
    "emotion": "Calm and tender, with a nostalgic mood.",
    "originality": "A familiar viewpoint handled with care.",
    "overall": "A pleasing, coherent picture with a modest ambition.",
}
DISTORTIONS = {
    "clean": lambda im: im,
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "noise": lambda im: Image.fromarray(np.clip(np.asarray(im) + np.random.default_rng(0).normal(0, 25, (48, 48, 3)),
                                                0, 255).astype(np.uint8)),
    "jpeg": lambda im: _jpeg(im, 5),
    "dark": lambda im: ImageEnhance.Brightness(im).enhance(0.3),
    "grey": lambda im: ImageEnhance.Color(im).enhance(0.05),
}


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def base_image(size: int = 48) -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize((size, size))


def make_records(folder: Path, n_iqa: int = 6, n_iaa: int = 6) -> list[ManifestRecord]:
    """IQA records cycle through DISTORTIONS with spread scores; IAA records alternate notes / no notes."""
    folder.mkdir(parents=True, exist_ok=True)
    base = base_image()
    records = []
    for i in range(n_iqa + n_iaa):
        task = "iqa" if i < n_iqa else "iaa"
        name = list(DISTORTIONS)[i % len(DISTORTIONS)]
        path = folder / f"{task}_{i}_{name}.png"
        DISTORTIONS[name](base.rotate(90 * (i // len(DISTORTIONS)))).save(path)
        score = round(5 + (i * 37.3) % 90, 2)
        notes = dict(NOTES) if task == "iaa" and i % 2 == 0 else None
        records.append(ManifestRecord(id=f"tiny_{task}/{path.name}", image=path.name, root=str(folder), task=task,
                                      dataset=f"tiny_{task}", split="train", score=score, score_100=score,
                                      attributes=notes, sha256=sha256_file(path)))
    return records


def config(base_url: str, cache_dir: Path, **overrides) -> TeacherConfig:
    """A teacher config pointing at a test server, with fast timeouts."""
    return TeacherConfig(**{"base_url": base_url, "cache_dir": str(cache_dir), "concurrency": 8, "timeout_s": 5.0,
                            **overrides})


assert set(NOTES) == set(ATTRIBUTES)
