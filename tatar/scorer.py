"""Score images with a trained checkpoint: the Python API ``tatar.Scorer`` and the ``tatar score`` command.

    from tatar import Scorer
    for r in Scorer("data/models/grpo").score(["photos/"], task="iaa"):
        print(r.image, r.score, r.think)

Generation is the shared greedy path (``tatar.inference``, the prompts of ``tatar.prompts``), or vLLM when asked
for on a GPU. Parsing is strict (``tatar.parsing``): a text without a single number in its last ``<answer>`` gives
``score=None``, never a guess. ``readout="expected"`` reads the answer's tens digit as its expectation under the
model's probabilities (``tatar.readout``); the raw text stays the greedy one. An image that cannot be read gives a
result with ``error`` set, and the others are still scored.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import get_args

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tatar.atomic_write import atomic_open, write_text
from tatar.inference import Completion, ImageLike, complete, load_image, prompt_text
from tatar.parsing import parse_answer, think_text, word_count
from tatar.readout import Readout, digit_ids, expected_score, tens_index
from tatar.records import Task

DEFAULT_CHECKPOINT = "data/models/grpo"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
TASKS: tuple[str, ...] = get_args(Task)


class ScoreResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str  # the file as given or found (or "<image N>" for an in-memory image)
    task: Task
    score: float | None  # 0-100; None when the image was unreadable or the answer did not parse
    think: str  # the rationale inside <think> ('' when the model answered directly)
    think_words: int
    raw: str  # the generated text as decoded
    error: str | None = None  # why the image could not be scored at all

    @property
    def parse_failure(self) -> bool:
        return self.error is None and self.score is None

    @classmethod
    def from_completion(cls, image: str, task: Task, completion: Completion) -> ScoreResult:
        text, think, score = completion.text, think_text(completion.text), parse_answer(completion.text)
        if score is not None:
            score = expected_score(score, completion.tens_probs)  # unchanged without probabilities (greedy)
        return cls(image=image, task=task, score=score, think=think, think_words=word_count(think), raw=text)

    @classmethod
    def unreadable(cls, image: str, task: Task, error: str) -> ScoreResult:
        return cls(image=image, task=task, score=None, think="", think_words=0, raw="", error=error)


def expand_images(items: Iterable[ImageLike]) -> list[ImageLike]:
    """Files as given, folders expanded (recursively, sorted) to their image files; in-memory images pass.

    A named file is kept whatever its suffix or state, so a missing or corrupt file is reported, not skipped."""
    out: list[ImageLike] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            out += sorted(p for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def _name(item: ImageLike, index: int) -> str:
    return f"<image {index}>" if isinstance(item, Image.Image) else str(item)


def _check_task(task: str) -> Task:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task  # type: ignore[return-value]


class Scorer:
    """A loaded checkpoint that scores images for one task at a time.

    ``checkpoint``: a checkpoint folder (``data/models/{sft,grpo}``), a ``base.json`` reference folder or a hub
    id. ``batch_size`` images go through the model at once; with ``use_vllm`` (an optional extra, GPUs only)
    it is how many images are handed to vLLM per call, whose own scheduler batches inside, so use hundreds.
    """

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, *, batch_size: int = 8,
                 max_new_tokens: int = 256, dtype: str = "auto", device: str | None = None,
                 use_vllm: bool = False, readout: Readout = "greedy"):
        if readout not in get_args(Readout):
            raise ValueError(f"readout must be one of {', '.join(get_args(Readout))}, got {readout!r}")
        self.checkpoint = str(checkpoint)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.readout = readout
        self._generate = (_vllm_generator(self.checkpoint, max_new_tokens, readout) if use_vllm
                          else self._transformers_generator(dtype, device))

    def _transformers_generator(self, dtype: str, device: str | None) -> Callable[[list, Task], list[Completion]]:
        import torch

        from tatar.modeling import load_model_and_processor

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor = load_model_and_processor(self.checkpoint, dtype=dtype, device=device)
        tens_probs = readout_digits(processor.tokenizer, self.checkpoint, self.readout) is not None
        return lambda images, task: complete(model, processor, images, task, batch_size=self.batch_size,
                                             max_new_tokens=self.max_new_tokens, tens_probs=tens_probs)

    def score(self, images: ImageLike | Sequence[ImageLike], task: str = "iqa",
              progress: bool = False) -> list[ScoreResult]:
        """One result per image (folders expanded), in order; unreadable images give a result with ``error``."""
        task = _check_task(task)
        items = expand_images([images] if isinstance(images, (str, Path, Image.Image)) else images)
        results: list[ScoreResult | None] = [None] * len(items)
        with _progress_bar(progress, len(items), f"scoring {task.upper()}") as advance:
            for start in range(0, len(items), self.batch_size):
                readable = []  # (index, image): read per chunk, so memory stays flat on large benchmarks
                for i, item in enumerate(items[start:start + self.batch_size], start):
                    try:
                        readable.append((i, load_image(item)))
                    except ValueError as exc:
                        results[i] = ScoreResult.unreadable(_name(item, i), task, str(exc))
                completions = self._generate([im for _, im in readable], task) if readable else []
                for (i, _), completion in zip(readable, completions, strict=True):
                    results[i] = ScoreResult.from_completion(_name(items[i], i), task, completion)
                advance(min(self.batch_size, len(items) - start))
        return results  # type: ignore[return-value]


def _vllm_generator(checkpoint: str, max_new_tokens: int,
                    readout: Readout = "greedy") -> Callable[[list, Task], list[Completion]]:
    """Greedy generation through vLLM with the same chat-templated prompts as the transformers path; for the
    expected readout it also asks for the top-20 log-probabilities per token (vLLM's default ``max_logprobs``)."""
    from tatar.modeling import ModelLoadError, resolve_model

    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise ModelLoadError("vLLM was asked for (use_vllm) but is not installed: pip install 'tatar[vllm]' "
                             "on a GPU machine, or turn use_vllm off") from None
    from transformers import AutoProcessor

    location = resolve_model(checkpoint)
    processor = AutoProcessor.from_pretrained(location)
    digits = readout_digits(processor.tokenizer, checkpoint, readout)
    llm = LLM(model=location, limit_mm_per_prompt={"image": 1}, seed=0)
    sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, logprobs=20 if digits else None)

    def run(images: list, task: Task) -> list[Completion]:
        prompt = prompt_text(processor, task)
        outputs = llm.generate([{"prompt": prompt, "multi_modal_data": {"image": im}} for im in images],
                               sampling, use_tqdm=False)
        return [vllm_completion(o.outputs[0], processor.tokenizer, digits) for o in outputs]

    return run


def readout_digits(tokenizer, checkpoint: str, readout: Readout) -> list[int] | None:
    """The digit token ids the expected readout reads (None for greedy); checked when the checkpoint loads, so
    ``tatar score`` and ``evaluate`` stop before generating anything."""
    from tatar.modeling import ModelLoadError

    if readout != "expected":
        return None
    if (ids := digit_ids(tokenizer)) is None:
        raise ModelLoadError(f"{checkpoint}: the expected readout needs one token per digit 0-9, which its "
                             "tokenizer lacks; use readout greedy")
    return ids


def vllm_completion(output, tokenizer, digits: list[int] | None) -> Completion:
    """A vLLM ``CompletionOutput`` as a ``Completion``: digits missing from the top log-probabilities at the tens
    token count as probability 0."""
    pos = tens_index(tokenizer, output.token_ids) if digits else None
    if pos is None:
        return Completion(output.text)
    top = output.logprobs[pos]
    return Completion(output.text, tuple(math.exp(top[d].logprob) if d in top else 0.0 for d in digits))


class _progress_bar:
    """``with _progress_bar(on, total, label) as advance: advance(n)`` - a rich bar, or nothing when off."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn())
            self.task = self.progress.add_task(label, total=total)

    def __enter__(self) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        self.progress.start()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


# ------------------------------------------------------------------------------------------ tatar score
FIELDS = ("image", "task", "score", "think_words", "think", "error", "raw")


def write_results(results: Sequence[ScoreResult], output: Path) -> None:
    """``.json``: a list of objects; ``.csv``: one row per image (columns ``FIELDS``)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.model_dump(include=set(FIELDS)) for r in results]
    if output.suffix.lower() == ".json":
        write_text(output, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    else:
        with atomic_open(output, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)


def results_table(results: Sequence[ScoreResult], rationale_chars: int = 160):
    from rich.markup import escape
    from rich.table import Table

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= rationale_chars else text[:rationale_chars - 1] + "…"

    table = Table(title=f"{len(results)} images")
    table.add_column("file", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("think words", justify="right")
    table.add_column("rationale (raw text on a parse failure)")
    for r in results:
        if r.error:
            table.add_row(r.image, "[red]unreadable[/red]", "-", f"[red]{escape(r.error)}[/red]")
        elif r.score is None:
            table.add_row(r.image, "[yellow]parse failure[/yellow]", str(r.think_words),
                          f"[dim]{escape(short(r.raw))}[/dim]")
        else:
            table.add_row(r.image, f"{r.score:.2f}", str(r.think_words), escape(short(r.think)))
    return table


def score_cli(images: Sequence[Path], task: str, checkpoint: Path, output: Path | None, batch_size: int = 8,
              max_new_tokens: int = 256, use_vllm: bool = False, readout: str = "greedy") -> int:
    """``tatar score``: exit 0 when at least one image was scored (unreadable ones are listed, not fatal),
    1 when none could be, 2 on bad arguments or a checkpoint that cannot be loaded."""
    from rich.console import Console

    from tatar.modeling import ModelLoadError

    console, err = Console(), Console(stderr=True, soft_wrap=True)  # errors unwrapped: greppable
    if task not in TASKS:
        err.print(f"[red]--task must be one of {', '.join(TASKS)}, got {task!r}[/red]")
        return 2
    if readout not in get_args(Readout):
        err.print(f"[red]--readout must be one of {', '.join(get_args(Readout))}, got {readout!r}[/red]")
        return 2
    if output is not None and output.suffix.lower() not in (".json", ".csv"):
        err.print(f"[red]--output {output}: use a .json or .csv file name[/red]")
        return 2
    items = expand_images(images)
    if not items:
        err.print(f"[red]no image files in {', '.join(map(str, images))} (suffixes: "
                  f"{' '.join(sorted(IMAGE_SUFFIXES))})[/red]")
        return 2
    try:
        scorer = Scorer(checkpoint, batch_size=batch_size, max_new_tokens=max_new_tokens, use_vllm=use_vllm,
                        readout=readout)
    except ModelLoadError as exc:
        err.print(f"[red]checkpoint: {exc}[/red]")
        return 2
    results = scorer.score(items, task=task, progress=True)
    console.print(results_table(results))
    unreadable = [r for r in results if r.error]
    failures = sum(r.parse_failure for r in results)
    console.print(f"{len(results) - len(unreadable) - failures} scored, {failures} parse failure(s), "
                  f"{len(unreadable)} unreadable")
    for r in unreadable:
        err.print(f"[red]unreadable:[/red] {r.error}")
    if output is not None:
        write_results(results, output)
        console.print(f"wrote {output}")
    return 0 if len(unreadable) < len(results) else 1
