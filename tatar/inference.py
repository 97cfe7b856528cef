"""Batched greedy generation with the shared prompts: the one inference path of SFT checks, evaluation and scoring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Completion:
    text: str  # special tokens stripped
    tens_probs: tuple[float, ...] | None = None  # P(digit 0..9) at the answer's tens token (tatar.readout)


def generate(model, processor, images: Sequence[ImageLike], task: Task | Sequence[Task], batch_size: int = 8,
             max_new_tokens: int = 256, progress: bool = False) -> list[str]:
    """Greedy completions (special tokens stripped), one per image, in input order."""
    return [c.text for c in complete(model, processor, images, task, batch_size, max_new_tokens, progress)]


def complete(model, processor, images: Sequence[ImageLike], task: Task | Sequence[Task], batch_size: int = 8,
             max_new_tokens: int = 256, progress: bool = False, tens_probs: bool = False) -> list[Completion]:
    """Greedy completions, one per image, in input order; with ``tens_probs`` each also carries the digit
    probabilities where its answer's tens digit was generated (None when it has no such token).

    ``task`` is one task for all images or one per image. Prompts are left-padded so every row of a batch ends at
    its generation cue."""
    import torch
    from transformers import LogitsProcessorList

    from tatar.readout import digit_ids, tens_index

    tasks = [task] * len(images) if isinstance(task, str) else list(task)
    if len(tasks) != len(images):
        raise ValueError(f"generate: {len(images)} images but {len(tasks)} tasks")
    prompts = {t: prompt_text(processor, t) for t in set(tasks)}
    tokenizer = processor.tokenizer
    digits = digit_ids(tokenizer) if tens_probs else None
    if tens_probs and digits is None:
        raise ValueError("the expected-score readout needs one token per digit 0-9, which this tokenizer lacks; "
                         "use the greedy readout")
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    outputs: list[Completion] = []
    for start in starts:
        batch = [load_image(im) for im in images[start:start + batch_size]]
        inputs = processor(text=[prompts[t] for t in tasks[start:start + batch_size]], images=batch,
                           padding=True, padding_side="left", return_tensors="pt").to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        capture = _DigitProbs(digits) if digits else None
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id,
                                 logits_processor=LogitsProcessorList([capture] if capture else []))
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        if capture is None:
            outputs += [Completion(text) for text in texts]
            continue
        probs = torch.stack(capture.steps, dim=1)  # (rows, generated steps, 10)
        for row, text in enumerate(texts):
            pos = tens_index(tokenizer, new_tokens[row].tolist())
            outputs.append(Completion(text, tuple(probs[row, pos].tolist()) if pos is not None else None))
    return outputs


class _DigitProbs:
    """A logits processor that records, at every generated step, each row's probability of the digits 0-9
    (after the other processors, as greedy decoding sees them) and changes nothing."""

    def __init__(self, ids: list[int]):
        self.ids, self.steps = ids, []

    def __call__(self, input_ids, scores):
        import torch

        self.steps.append(torch.softmax(scores.float(), dim=-1)[:, self.ids].cpu())
        return scores
