"""The rationales stage end to end: the embedded default, SIGKILL and resume, and the throughput benchmark."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from teacher_fixtures import make_records

from tatar.config import Params, TeacherConfig
from tatar.parsing import format_score, parse_answer
from tatar.records import ManifestRecord, RationaleRecord, read_jsonl, read_records, write_jsonl
from tatar.standins.server import serve_in_thread
from tatar.teacher import stage
from tatar.teacher.bench import run_bench

ROOT = Path(__file__).resolve().parents[1]


def project(tmp_path: Path, records: list[ManifestRecord], teacher: dict) -> Path:
    """A project dir holding the train manifest and a params.yaml whose teacher section is ``teacher``."""
    write_jsonl(tmp_path / stage.TRAIN_MANIFEST, records)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"teacher": teacher}))
    return tmp_path


def check_outputs(folder: Path, records: list[ManifestRecord]) -> list[RationaleRecord]:
    """Every record in exactly one output file, no torn or duplicated line, answers set to the ground truth."""
    lines = [line for name in ("rationales.jsonl", "failures.jsonl")
             for line in (folder / name).read_text().splitlines()]
    ids = [json.loads(line)["id"] for line in lines]  # raises on a torn line
    assert sorted(ids) == sorted(r.id for r in records)
    truth = {r.id: r.score_100 for r in records}
    rationales = read_records(folder / "rationales.jsonl", RationaleRecord)
    for r in rationales:
        assert r.answer == format_score(truth[r.id]) and parse_answer(r.text) == round(truth[r.id], 2)
    return rationales


def test_stage_end_to_end_on_the_embedded_default(synthetic_data, tmp_path, monkeypatch):
    """``teacher.base_url: local``: the stage starts the reference teacher itself, for the synthetic dataset."""
    records = read_records(synthetic_data.train, ManifestRecord)
    monkeypatch.chdir(project(tmp_path, records, {}))
    params = Params(teacher=TeacherConfig(cache_dir=str(tmp_path / ".tatar/cache/teacher")))
    stage.run(params)

    out = tmp_path / stage.OUT_DIR
    rationales = check_outputs(out, records)
    assert len(rationales) == len(records) and not list(read_jsonl(out / "failures.jsonl"))
    for r in rationales:
        lo, hi = (30, 50) if r.task == "iqa" else (100, 450)  # the prompts' own targets
        assert lo <= r.think_words <= hi and r.teacher.model == "tatar-reference-teacher"
        assert r.teacher.temperature == (0.3 if r.task == "iqa" else 0.2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["outcomes"] == {"cached": 0, "generated": len(records), "failed": 0}
    assert metrics["teacher"]["calls"] == len(records) and metrics["teacher"]["completion_tokens"] > 0

    shutil.rmtree(out)  # DVC deletes the outputs before re-running a stage; the cache lives on
    stage.run(params)
    assert json.loads((out / "metrics.json").read_text())["outcomes"]["cached"] == len(records)
    assert check_outputs(out, records) == rationales


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_redoes_nothing(tmp_path):
    records = make_records(tmp_path / "images", n_iqa=20, n_iaa=20)
    cache = tmp_path / ".tatar/cache/teacher"
    with serve_in_thread(latency_ms=150) as server:
        proj = project(tmp_path, records, {"base_url": server.base_url, "cache_dir": str(cache), "concurrency": 4})
        command = [sys.executable, "-m", "tatar.cli", "stage", "rationales"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(command, cwd=proj, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(list(cache.glob("*/*.json"))) < 8:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the stage made no progress"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        finished = len(list(cache.glob("*/*.json")))
        assert 8 <= finished < len(records)
        assert not (proj / stage.OUT_DIR / "rationales.jsonl").exists()  # outputs are written only at the end
        for entry in cache.glob("*/*.json"):
            json.loads(entry.read_text())  # every cache entry whole

        before = server.stats.requests
        done = subprocess.run(command, cwd=proj, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert server.stats.requests - before == len(records) - finished  # no finished record asked again

    check_outputs(proj / stage.OUT_DIR, records)
    metrics = json.loads((proj / stage.OUT_DIR / "metrics.json").read_text())
    assert metrics["outcomes"] == {"cached": finished, "generated": len(records) - finished, "failed": 0}


@pytest.mark.slow
def test_bench_prints_both_rates_and_the_ratio_last(capsys):
    ratio = run_bench(latency_ms=50, requests=24, concurrency=8)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1] == f"ratio: {ratio:.1f}x" and ratio > 3  # 8 overlapping requests: ideally 8x
    assert any("concurrency   1" in line for line in lines) and any("concurrency   8" in line for line in lines)
    server_pid = int(re.search(r"\(pid (\d+)\)", out).group(1))
    assert server_pid != os.getpid()  # the server runs in its own process, not a thread of the client's
