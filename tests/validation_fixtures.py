"""Rationale records for the validation tests: valid IQA/IAA rows to copy and break, and small test images."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from tatar.parsing import format_score, format_target, word_count

IQA_THINK = ("In this {subject}, fine detail is slightly soft and edges look a little smeared, while smooth areas "
             "stay clean and free of grain. The flaw is minor at normal viewing size, so the technical quality is "
             "good though not flawless.")
IAA_THINK = ("Looking first at the visual elements of this {subject}, amber tones and soft side light give the frame "
             "a gentle palette. Turning to the composition, the subject sits near a rule-of-thirds point with open "
             "space beside it. Taken together, the parts form a unified gestalt in which shapes echo each other. On "
             "technical execution, focus is accurate and the exposure holds detail in the highlights. Thematically, "
             "the picture tells a quiet domestic story about rest. Its emotion is calm and tender, with a nostalgic "
             "mood. As for originality, the viewpoint is familiar rather than inventive. Overall, the strengths "
             "outweigh the weaknesses and the image is pleasing.")
# An IAA narrative long enough but touching only theme, emotion and originality.
# Eight distinct sentences (a copied one would be degenerate) that touch theme, emotion and originality only.
NARROW = ("The subject is a cat asleep on a chair by the window. The cat is curled up with its paws tucked in. "
          "A sleeping pet on a chair is the only subject of this picture. The chair is old and the cat is young. "
          "Its emotion is calm and its mood quiet, and the viewpoint is unusual for such a subject. "
          "The calm mood suits a lazy afternoon at home. The unusual viewpoint looks up at the sleeper from the "
          "floor. Such a quiet moment is rarely shown from so low a point of view, which keeps it from feeling "
          "dull to anyone who sees it.")
SUBJECTS = ("portrait", "street scene", "landscape", "close-up", "still life", "harbour view", "garden",
            "interior", "market stall", "mountain pass", "beach", "workshop", "kitchen", "forest path", "bridge",
            "train station", "library", "rooftop", "river bank", "farmyard", "cathedral", "playground", "desert",
            "lighthouse", "orchard", "parade", "stadium", "vineyard", "glacier", "courtyard")


def row(id: str, task: str = "iqa", score: float = 72.35, think: str | None = None, subject: int = 0,
        **overrides) -> dict:
    """A valid rationale row (as the teacher stage writes it); ``overrides`` replace fields afterwards."""
    think = think if think is not None else (IQA_THINK if task == "iqa" else IAA_THINK).format(
        subject=SUBJECTS[subject])  # distinct subjects keep rationales unique
    record = {
        "id": id, "task": task, "dataset": f"synthetic_{task}", "image": f"{id}.png", "root": "images",
        "score_100": score, "attributes": None,
        "teacher": {"model": "tatar-reference-teacher", "prompt_version": "v1", "temperature": 0.3, "top_p": 0.8,
                    "max_tokens": 140},
        "raw": format_target(think, score), "think": think, "answer": format_score(score),
        "think_words": word_count(think), "cache_key": f"key-{id}",
    }
    record.update(copy.deepcopy(overrides))
    return record


def photo(size: int = 96) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    return (resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def save_image(path: Path, kind: str = "sharp") -> Path:
    """The astronaut photo, ``sharp`` or ``blurred`` (heavy Gaussian blur), as PNG."""
    image = Image.fromarray(photo())
    if kind == "blurred":
        image = image.filter(ImageFilter.GaussianBlur(4))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
