"""``tatar bench teacher``: generation throughput of the real client path, sequential against concurrent.

The reference teacher runs in its own process with a fixed added latency (a real teacher runs elsewhere too);
the client side is exactly the stage's: manifest records -> prompt files -> image files read and sent as data
URLs -> ``run_chat_async`` with the normaliser as the check. Each level gets fresh records (no cache), and the
last line printed is ``ratio: N.Nx``, concurrent requests/s over sequential requests/s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from rich.console import Console

from tatar.config import TeacherConfig
from tatar.records import ManifestRecord
from tatar.teacher.client import Endpoint, run_chat_async
from tatar.teacher.normalise import check
from tatar.teacher.prompts import load_prompts
from tatar.teacher.stage import teacher_job, words

IMAGES = 8  # distinct 96 px photographs attached in turn


@contextmanager
def teacher_process(latency_ms: float) -> Iterator[str]:
    """``tatar teacher serve`` on a free port in a child process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "tatar.cli", "teacher", "serve", "--port", "0",
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("serving "):
            raise RuntimeError(f"reference teacher failed to start (exit code {proc.poll()}): {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_records(folder: Path, n: int, tag: str) -> list[ManifestRecord]:
    """``n`` IQA records over IMAGES photographs with spread scores; ``tag`` keeps ids and prompts distinct."""
    import skimage.data

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry",
             "horse"]
    for name in names[:IMAGES]:
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((96, 96)).save(path)
    return [ManifestRecord(id=f"bench/{tag}/{i}", image=f"{names[i % IMAGES]}.png", root=str(folder), task="iqa",
                           dataset="bench", split="train", score=(i * 7.31) % 100, score_100=(i * 7.31) % 100,
                           sha256=f"{tag}-{i}")
            for i in range(n)]


def measure(base_url: str, records: list[ManifestRecord], concurrency: int) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) for ``records`` at ``concurrency``, through the stage's own job
    and check code. The CPU figure is the ceiling at high concurrency: at most 1000 / ms requests per second."""
    cfg = TeacherConfig(base_url=base_url, concurrency=concurrency, max_retries=0, max_reasks=0, cache_dir="")
    prompts = load_prompts(cfg.prompt_version)
    by_id = {r.id: r for r in records}
    jobs = [teacher_job(r, cfg, prompts) for r in records]

    def accept(job, text):
        record = by_id[job.id]
        return check(text, record.task, record.score_100, words(cfg, record))

    start, cpu = time.perf_counter(), time.process_time()
    run = asyncio.run(run_chat_async(Endpoint.of(cfg), jobs, accept, base_url=base_url, progress=False))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if run.failures:
        raise RuntimeError(f"{len(run.failures)} bench requests failed, e.g. {run.failures[0].reason}")
    return len(records) / seconds, 1000 * cpu / len(records)


def run_bench(latency_ms: float = 100.0, requests: int = 256, concurrency: int = 64) -> float:
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, teacher_process(latency_ms) as base_url:
        folder = Path(tmp)
        measure(base_url, bench_records(folder, 16, "warmup"), concurrency)  # imports, connections, image cache
        console.print(f"reference teacher at {base_url}, {latency_ms:g} ms latency, {requests} requests per level, "
                      f"a 96 px image attached to each")
        rates = {}
        for level in (1, concurrency):
            rates[level], cpu_ms = measure(base_url, bench_records(folder, requests, f"c{level}"), level)
            console.print(f"concurrency {level:>3}: {rates[level]:8.1f} requests/s "
                          f"(client CPU {cpu_ms:.1f} ms per request)")
    ratio = rates[concurrency] / rates[1]
    print(f"ratio: {ratio:.1f}x", flush=True)
    return ratio
