"""Batched greedy generation with the shared prompts: the one inference path of SFT checks, evaluation and scoring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from tatar.prompts import prompt_messages
from tatar.records import Task

ImageLike = Image.Image | str | Path


def load_image(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # a bomb is not an OSError: catch it by name
        raise ValueError(f"{image}: cannot read image ({exc})") from None


def prompt_text(processor, task: Task) -> str:
    return processor.apply_chat_template(prompt_messages(task), tokenize=False, add_generation_prompt=True)


def generate(model, processor, images: Sequence[ImageLike], task: Task | Sequence[Task], batch_size: int = 8,
             max_new_tokens: int = 256, progress: bool = False) -> list[str]:
    """Greedy completions (special tokens stripped), one per image, in input order.

    ``task`` is one task for all images or one per image. Prompts are left-padded so every row of a batch ends at
    its generation cue."""
    import torch

    tasks = [task] * len(images) if isinstance(task, str) else list(task)
    if len(tasks) != len(images):
        raise ValueError(f"generate: {len(images)} images but {len(tasks)} tasks")
    prompts = {t: prompt_text(processor, t) for t in set(tasks)}
    tokenizer = processor.tokenizer
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    outputs: list[str] = []
    for start in starts:
        batch = [load_image(im) for im in images[start:start + batch_size]]
        inputs = processor(text=[prompts[t] for t in tasks[start:start + batch_size]], images=batch,
                           padding=True, padding_side="left", return_tensors="pt").to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        outputs += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return outputs
