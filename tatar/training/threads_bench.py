"""``tatar bench threads``: SFT steps of the tiny model with torch's default threading against explicit thread
counts, on an idle machine and with a competing process on the same cores; prints the figures side by side.

Each setting runs in a fresh subprocess (torch fixes its thread pool at start), with ``TATAR_CPU_THREADS`` set as a
user would set it. The competitor is the same workload at torch's default threading, like a second stage or a
teacher sharing the cores."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

# An IAA target of the default's length (~190 words): the narrative, then the answer.
SENTENCE = "The warm light falls softly across the balanced frame and its quiet background"
NARRATIVE = "<think>" + " ".join([SENTENCE] * 15) + "</think><answer>64.20</answer>"


def tiny_sft_batch(examples: int = 8, iaa: int = 0):
    """The tiny model in training mode and one SFT batch of ``examples`` (random images): answer-only IQA examples,
    the last ``iaa`` of them IAA with a narrative; the loss is on the targets only, as in SFT."""
    import numpy as np
    from PIL import Image

    from tatar.config import ModelConfig
    from tatar.modeling import build_tiny_model, load_from_config
    from tatar.prompts import conversation

    cfg = ModelConfig()
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(cfg.tiny, tmp, cfg.min_pixels, cfg.max_pixels)
        model, processor = load_from_config(tmp, cfg)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(examples)]
    targets = [("iqa", "<answer>55.26</answer>")] * (examples - iaa) + [("iaa", NARRATIVE)] * iaa
    texts = [processor.apply_chat_template(conversation(task, target), tokenize=False) for task, target in targets]
    processor.tokenizer.padding_side = "left"  # every target ends its row, so it is the last tokens of it
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    for row, (_, target) in enumerate(targets):
        labels[row, :-len(processor.tokenizer(target + "<|im_end|>\n")["input_ids"])] = -100
    batch["labels"] = labels
    return model.train(), batch


def seconds_per_step(model, loss_fn, steps: int) -> float:
    """Seconds per optimiser step (``loss_fn()`` forward, backward, AdamW), after one warm-up step."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss_fn().backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def worker(steps: int) -> float:
    """Seconds per SFT step (forward + backward + AdamW) on 8 IQA-sized examples of the tiny model."""
    from tatar.threads import configure_cpu_threads

    configure_cpu_threads()
    model, batch = tiny_sft_batch()
    return seconds_per_step(model, lambda: model(**batch).loss, steps)


def _spawn(threads: int, steps: int) -> subprocess.Popen:
    env = {**os.environ, "TATAR_CPU_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "tatar.training.threads_bench", str(steps)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _seconds(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker failed with exit {proc.returncode}")
    return float(out.strip().splitlines()[-1])


def run_bench(settings: list[int], steps: int = 30) -> dict[int, tuple[float, float]]:
    """{threads: (idle s/step, busy s/step)}; 0 = torch's default. Prints a table with the machine load."""
    results = {}
    for threads in settings:
        idle = _seconds(_spawn(threads, steps))
        competitor = _spawn(0, steps * 4)  # starts first and outlasts the measured run
        try:
            busy = _seconds(_spawn(threads, steps))
        finally:  # never leave the competitor running, even when the measured worker fails or is interrupted
            competitor.kill()
            competitor.wait()
        results[threads] = (idle, busy)
    cores = os.cpu_count()
    print(f"SFT step of the tiny model (8 IQA examples), {cores} cores, load {os.getloadavg()[0]:.1f} at the end")
    print(f"{'TATAR_CPU_THREADS':>18} | {'idle s/step':>11} | {'busy s/step':>11}")
    for threads, (idle, busy) in results.items():
        label = f"{threads} (torch default)" if threads == 0 else str(threads)
        print(f"{label:>18} | {idle:11.3f} | {busy:11.3f}")
    base = results.get(0)
    if base:
        for threads, (idle, busy) in results.items():
            if threads:
                print(f"threads {threads} vs torch default: idle {base[0] / idle:.2f}x, busy {base[1] / busy:.2f}x")
    return results


if __name__ == "__main__":
    print(worker(int(sys.argv[1])))
