"""``tatar bench teacher``: generation throughput of the real client path, sequential against concurrent.

The reference teacher runs in its own process (``tatar teacher serve``) with a fixed added latency, as a real
teacher runs elsewhere: in a thread of the client's process it would share the GIL and take the client's CPU.
The client side is exactly the stage's: manifest records -> prompt files -> image files sent as data URLs ->
``run_chat_async`` with the normaliser as the check, on one ``AsyncOpenAI`` client reused for every level.
Each level gets fresh records (no reply cache). The sequential level runs ``requests`` requests; the concurrent
one at least ``ROUNDS`` round trips' worth (``ROUNDS x concurrency``), so that its rate is the steady state and
not the ramp-up and the draining last round (with 256 requests at 64 in flight, four round trips, those cost
about a fifth of the rate here). Printed per level: requests, requests/s and the CPU milliseconds per request of
the client and of the server process (what bounds the concurrent rate on a small machine), plus the machine's
load; the last line is ``ratio: N.Nx``, concurrent requests/s over sequential requests/s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from PIL import Image
from rich.console import Console

from tatar.config import TeacherConfig
from tatar.records import ManifestRecord
from tatar.teacher.client import Endpoint, make_client, run_async, run_chat_async
from tatar.teacher.normalise import check
from tatar.teacher.prompts import load_prompts
from tatar.teacher.stage import teacher_job, words

IMAGES = 8  # distinct 96 px photographs attached in turn
RETRIES = 2  # a transport hiccup is retried (and counted) rather than failing the whole benchmark
ROUNDS = 16  # the concurrent level runs at least this many round trips of `concurrency` requests


@dataclass
class TeacherProcess:
    base_url: str
    pid: int

    def cpu_s(self) -> float | None:
        """CPU seconds the server process has used so far (Linux ``/proc``; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None


@contextmanager
def teacher_process(latency_ms: float) -> Iterator[TeacherProcess]:
    """``tatar teacher serve`` on a free port in a child process."""
    proc = subprocess.Popen([sys.executable, "-m", "tatar.cli", "teacher", "serve", "--port", "0",
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("serving "):
            raise RuntimeError(f"reference teacher failed to start (exit code {proc.poll()}): {line!r}")
        yield TeacherProcess(base_url=line.split()[1], pid=proc.pid)
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


@dataclass
class Level:
    rate: float  # requests/s
    client_ms: float  # client CPU per request
    server_ms: float | None  # server process CPU per request
    retries: int  # transport retries made by the openai client


async def measure(server: TeacherProcess, client: openai.AsyncOpenAI, records: list[ManifestRecord],
                  concurrency: int) -> Level:
    """Run ``records`` at ``concurrency`` through the stage's own job and check code on ``client``."""
    cfg = TeacherConfig(base_url=server.base_url, concurrency=concurrency, max_retries=RETRIES, max_reasks=0,
                        cache_dir="")
    prompts = load_prompts(cfg.prompt_version)
    by_id = {r.id: r for r in records}
    jobs = [teacher_job(r, cfg, prompts) for r in records]

    def accept(job, text):
        record = by_id[job.id]
        return check(text, record.task, record.score_100, words(cfg, record))

    server_cpu = server.cpu_s()
    start, cpu = time.perf_counter(), time.process_time()
    run = await run_chat_async(Endpoint.of(cfg), jobs, accept, base_url=server.base_url, progress=False,
                               client=client)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    server_end = server.cpu_s()
    if run.failures:
        raise RuntimeError(f"{len(run.failures)} bench requests failed, e.g. {run.failures[0].reason}")
    n = len(records)
    server_ms = 1000 * (server_end - server_cpu) / n if server_cpu is not None and server_end is not None else None
    return Level(rate=n / seconds, client_ms=1000 * cpu / n, server_ms=server_ms, retries=run.stats.http_retries)


def level_requests(level: int, requests: int) -> int:
    return requests if level == 1 else max(requests, ROUNDS * level)


async def _levels(server: TeacherProcess, folder: Path, requests: int, concurrency: int) -> dict[int, Level]:
    endpoint = Endpoint.of(TeacherConfig(base_url=server.base_url, concurrency=concurrency, max_retries=RETRIES))
    async with make_client(endpoint, server.base_url) as client:  # one client, its connections kept warm
        # Imports, connections, the server's image-measure cache: nothing of this belongs to a level.
        await measure(server, client, bench_records(folder, 2 * concurrency, "warmup"), concurrency)
        return {level: await measure(server, client, bench_records(folder, level_requests(level, requests),
                                                                    f"c{level}"), level)
                for level in (1, concurrency)}


def run_bench(latency_ms: float = 100.0, requests: int = 256, concurrency: int = 64) -> float:
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, teacher_process(latency_ms) as server:
        console.print(f"reference teacher at {server.base_url} (pid {server.pid}), {latency_ms:g} ms latency, "
                      f"a 96 px image attached to each request")
        levels = run_async(_levels(server, Path(tmp), requests, concurrency))
        for level, m in levels.items():
            server_ms = f"{m.server_ms:.1f}" if m.server_ms is not None else "?"
            retried = f", {m.retries} transport retries" if m.retries else ""
            console.print(f"concurrency {level:>3}: {m.rate:8.1f} requests/s ({level_requests(level, requests)} "
                          f"requests; CPU per request: client {m.client_ms:.1f} ms, server {server_ms} ms{retried})")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    console.print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    ratio = levels[concurrency].rate / levels[1].rate
    print(f"ratio: {ratio:.1f}x", flush=True)
    return ratio
