"""Small SFT fixtures: a rationale corpus and synthetic test manifests with generated images, written into a
project folder laid out like the pipeline's (data/corpus, data/manifests/test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from tatar.hashing import sha256_file
from tatar.parsing import format_score, word_count
from tatar.records import ManifestRecord, RationaleRecord, TeacherIdentity, write_jsonl

IQA_FACTORS = ["blur smears the edges and fine texture", "grain and noise cover the flat areas",
               "compression leaves blocking around the edges", "the exposure clips the highlights"]
IAA_SENTENCES = [
    "The visual elements are a bold shape and a {adj} palette that hold the eye.",
    "The composition places the subject off centre and leading lines guide the gaze.",
    "Light is soft, contrast is moderate and the colours stay natural.",
    "It reads as calm and {adj}, inviting the viewer to linger.",
    "Overall the aesthetic appeal is {level}, pleasant but never striking.",
]
ADJ = ["warm", "muted", "vivid", "harmonious"]
LEVELS = ["modest", "fair", "good", "high"]
TEACHER = TeacherIdentity(model="fixture", prompt_version="v1", temperature=0.0, top_p=1.0, max_tokens=500)


def make_image(path: Path, seed: int, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    base = np.zeros((size, size, 3), np.float32)
    base[..., 0] = np.linspace(0, 255, size)[None, :]
    base[..., 1] = np.linspace(255, 0, size)[:, None]
    base[..., 2] = 255 * rng.random()
    base += rng.normal(0, 40 * rng.random(), base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3 * rng.random()))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def iqa_think(i: int) -> str:
    factor = IQA_FACTORS[i % len(IQA_FACTORS)]
    return (f"The main technical factor here is that {factor}, which lowers the perceived sharpness. "
            f"Other distortions are mild, so the quality stays {LEVELS[i % 4]} rather than severely degraded.")


def iaa_think(i: int) -> str:
    return " ".join(s.format(adj=ADJ[i % 4], level=LEVELS[(i // 4) % 4]) for s in IAA_SENTENCES)


def write_corpus(root: Path, n_per_task: int) -> list[RationaleRecord]:
    """``n_per_task`` IQA and IAA rationale records with images under ``root/data/synthetic``."""
    records = []
    for task, think in (("iqa", iqa_think), ("iaa", iaa_think)):
        for i in range(n_per_task):
            image = f"train/{task}_{i}.png"
            make_image(root / "data/synthetic" / image, seed=2 * i + (task == "iaa"))
            score = round(10 + 80 * i / max(1, n_per_task - 1), 2)
            text = think(i)
            records.append(RationaleRecord(
                id=f"fixture/{image}", task=task, dataset="fixture", image=image, root="data/synthetic",
                score_100=score, teacher=TEACHER, raw=text, think=text, answer=format_score(score),
                think_words=word_count(text), cache_key=f"{task}{i}"))
    write_jsonl(root / "data/corpus/corpus.jsonl", records)
    return records


def write_test_manifests(root: Path, n_per_task: int) -> None:
    for task in ("iqa", "iaa"):
        rows = []
        for i in range(n_per_task):
            image = f"test/{task}_{i}.png"
            path = make_image(root / "data/synthetic" / image, seed=10_000 + i + (task == "iaa") * 500)
            rows.append(ManifestRecord(id=f"synthetic/{image}", image=image, root="data/synthetic", task=task,
                                       dataset=f"synthetic_{task}", split="test", score=50.0, score_100=50.0,
                                       sha256=sha256_file(path)))
        write_jsonl(root / f"data/manifests/test/synthetic_{task}.jsonl", rows)
