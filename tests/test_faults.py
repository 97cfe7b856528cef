"""The fault corpus: bad inputs a user will eventually feed the stages and the CLI, each with its exact outcome.

Every case runs the real ``tatar`` command in-process (``app([...])``, through the same top-level handler the
installed script uses) in a scratch project and asserts the exit status, a fragment of the one-line message, and
that no traceback was printed; quarantine cases also assert the quarantined record and its reason. Exit status:
2 usage or configuration, 1 data or policy, 0 when bad records were reported but the rest went through.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from validation_fixtures import row as rationale_row

from tatar.cli import app

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------- helpers
def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run ``tatar ARGS`` in-process; (exit status, stdout + stderr)."""
    capsys.readouterr()
    message = ""
    try:
        app(args, prog_name="tatar")
        code = 0
    except SystemExit as exc:  # SystemExit("message"): the interpreter would print the message and exit 1
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        message = exc.code if isinstance(exc.code, str) else ""
    captured = capsys.readouterr()
    return code, captured.out + captured.err + message


def params(project: Path, text: str | bytes, name: str = "p.yaml") -> list[str]:
    path = project / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["--params", str(path)]


def manifest_row(i: int = 0, **overrides) -> dict:
    row = {"id": f"d/{i}.png", "image": f"{i}.png", "root": "images", "task": "iqa", "dataset": "d",
           "split": "train", "score": 3.0, "score_100": 50.0, "attributes": None, "sha256": "0" * 64}
    return {**row, **overrides}


def write_lines(path: Path, lines: list[str], newline: str = "\n", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((("\ufeff" if bom else "") + newline.join(lines) + newline).encode())
    return path


def train_set_params(project: Path, path: str, fmt: str = "generic", **extra) -> list[str]:
    """params with the synthetic default off and one generic IQA training set."""
    entry = {"name": "mine", "format": fmt, "path": path, "images": str(project / "images"), "task": "iqa",
             "scale": [1, 5], **extra}
    return params(project, json.dumps({"data": {"synthetic": {"enabled": False}, "train": [entry]}}))


def png(path: Path, level: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), level, dtype=np.uint8)).save(path)
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A tiny PNG whose header claims side x side pixels (PIL refuses it at open: DecompressionBombError)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------------------------- cases
@dataclass
class Fault:
    name: str
    setup: Callable[..., list[str]]  # (project, request) -> CLI arguments
    exit: int
    says: str  # fragment of the output
    check: Callable[[Path], None] | None = None  # further assertions on the project afterwards
    fixtures: list[str] = field(default_factory=list)


def _typo_key(p):
    return ["stage", "prepare", *params(p, "grpo:\n  betta: 0.1\n")]


def _rationales_with_a_list_line(p):
    rows = [json.dumps(rationale_row(f"r{i}", subject=i)) for i in range(3)] + ['["not", "a", "record"]']
    write_lines(p / "data/rationales/rationales.jsonl", rows)
    return ["stage", "validate", *params(p, "validate: {}\n")]


def _check_list_line_rejected(p):
    rejected = [json.loads(line) for line in (p / "data/corpus/rejected.jsonl").read_text().splitlines()]
    assert {"id": "<line 4>", "task": None, "check": "schema",
            "detail": "record is a JSON list, not an object"} in rejected
    assert len((p / "data/corpus/corpus.jsonl").read_text().splitlines()) + len(rejected) == 4  # none lost


def _torn_train_row(p):
    for i in range(2):
        png(p / f"images/{i}.png", 60 + 40 * i)
    write_lines(p / "meta.jsonl", ['{"image": "0.png", "score": 2.5}', '{"image": "1.png", "score": 4.0}',
                                   '{"image": "2.png", "sco'])
    return ["stage", "prepare", *train_set_params(p, str(p / "meta.jsonl"))]


def _check_torn_row_quarantined(p):
    quarantined = [json.loads(line) for line in (p / "data/manifests/quarantine.jsonl").read_text().splitlines()]
    assert [(q["reason"], q["detail"].split(":")[0]) for q in quarantined] == [("malformed_row", "not valid JSON")]
    assert "meta.jsonl:3" in quarantined[0]["detail"]
    assert len((p / "data/manifests/train.jsonl").read_text().splitlines()) == 2


def _bom_crlf_csv(p):
    for i in range(2):
        png(p / f"images/{i}.png", 60 + 40 * i)
    write_lines(p / "meta.csv", ["image,score", "0.png,2.5", "1.png,4.0"], newline="\r\n", bom=True)
    return ["stage", "prepare", *train_set_params(p, str(p / "meta.csv"))]


def _check_two_records(p):
    assert len((p / "data/manifests/train.jsonl").read_text().splitlines()) == 2
    assert (p / "data/manifests/quarantine.jsonl").read_text() == ""


def _manifest(p, lines, **kw):
    write_lines(p / "data/manifests/train.jsonl", lines, **kw)
    return ["stage", "rationales", *params(p, "teacher:\n  concurrency: 1\n")]


def _manifest_latin1(p):
    args = _manifest(p, [])
    (p / "data/manifests/train.jsonl").write_bytes(b'{"id": "\xff"}\n')
    return args


def _torn_benchmark_manifest(p):
    rows = [json.dumps(manifest_row(i, id=f"KonIQ-10K/{i}.jpg", dataset="KonIQ-10K", split="test"))
            for i in range(4)]
    write_lines(p / "data/benchmarks/KonIQ-10K.jsonl", rows[:3] + [rows[3][:40]])  # as `tatar data import` writes it
    return ["stage", "prepare", *params(p, "data:\n  benchmarks: [KonIQ-10K]\n")]


def _score(p, *names, extra=()):
    return ["score", *[str(p / n) for n in names], "--checkpoint", str(p / "model"), "--max-new-tokens", "3",
            *extra]


def _bomb_among_three(p):
    png(p / "a.png", 50)
    png(p / "b.png", 200)
    bomb_png(p / "big.png")
    return _score(p, "a.png", "big.png", "b.png")


def _weightless_checkpoint(p):
    for f in (p / "model").glob("*.safetensors"):
        f.unlink()
    png(p / "a.png", 50)
    return _score(p, "a.png")


def _disk_full(p, request):
    png(p / "a.png", 50)
    (p / "out.json").write_text("old results\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    request.getfixturevalue("monkeypatch").setattr("tatar.atomic_write.os.fsync", no_space)
    return _score(p, "a.png", extra=["--output", str(p / "out.json")])


def _check_old_output_kept(p):
    assert (p / "out.json").read_text() == "old results\n"  # the old file is intact, no temporary left behind
    assert [f.name for f in p.iterdir() if f.name.startswith(".out")] == []


def _read_only_output(p, request):
    png(p / "a.png", 50)
    (p / "ro").mkdir()
    os.chmod(p / "ro", 0o555)
    request.addfinalizer(lambda: os.chmod(p / "ro", 0o755))
    if os.geteuid() == 0:  # root ignores permission bits: make the folder refuse writes as a read-only mount would
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self.parent == p / "ro":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_open(self, *args, **kwargs)

        request.getfixturevalue("monkeypatch").setattr(Path, "open", refuse)
    return _score(p, "a.png", extra=["--output", str(p / "ro/out.csv")])


def _eval_weightless(p):
    for f in (p / "model").glob("*.safetensors"):
        f.unlink()
    png(p / "images/0.png", 90)
    write_lines(p / "data/manifests/test/synthetic_iqa.jsonl",
                [json.dumps(manifest_row(0, split="test", root=str(p / "images")))])
    return ["stage", "evaluate", *params(p, f"eval:\n  checkpoint: {p / 'model'}\n  benchmarks: [synthetic_iqa]\n")]


def _torn_lineage(p):
    (p / "ckpt").mkdir()
    (p / "ckpt/lineage.json").write_text('{"stage": "sft", "inp')
    return ["lineage", str(p / "ckpt")]


FAULTS = [
    # params.yaml: syntax, structure, values
    Fault("yaml syntax error", lambda p: ["stage", "prepare", *params(p, "data:\n  seed: [1\n")], 2,
          "p.yaml:3: invalid YAML"),
    Fault("duplicate yaml key", lambda p: ["stage", "prepare", *params(p, "sft:\n  seed: 1\nsft:\n  epochs: 1\n")],
          2, "duplicate key 'sft' (first at line 1)"),
    Fault("empty params file", lambda p: ["stage", "prepare", *params(p, "")], 2, "p.yaml: is empty"),
    Fault("params is a folder", lambda p: (p / "d.yaml").mkdir() or ["stage", "prepare", "--params", str(p / "d.yaml")],
          2, "d.yaml: is a folder"),
    Fault("params not UTF-8", lambda p: ["stage", "prepare", *params(p, "model:\n  base: caf\xe9\n".encode("latin-1"))],
          2, "p.yaml: not UTF-8 text (byte 18)"),
    Fault("params a list", lambda p: ["stage", "prepare", *params(p, "- data\n")], 2, "expected a mapping of sections"),
    Fault("params missing", lambda p: ["stage", "prepare", "--params", str(p / "nope.yaml")], 2,
          "nope.yaml: not found"),
    Fault("misspelt key", _typo_key, 2, "grpo.betta: Extra inputs are not permitted"),
    Fault("wrong value type", lambda p: ["stage", "prepare", *params(p, "sft:\n  epochs: two\n")], 2, "sft.epochs:"),
    Fault("scale with hi below lo", lambda p: ["stage", "prepare", *train_set_params(p, "x.json", scale=[5, 0])], 2,
          "data.train.0.scale: Value error, scale [lo, hi] needs hi > lo"),
    Fault("unknown benchmark", lambda p: ["stage", "prepare", *params(p, "data:\n  benchmarks: [KonIQ-20K]\n")], 2,
          "unknown benchmark 'KonIQ-20K'; known: KonIQ-10K"),
    Fault("unknown photograph", lambda p: ["stage", "prepare", *params(
        p, "data:\n  synthetic:\n    sources: [astronaut, chelsea, moon]\n")],
          2, "data.synthetic.sources: unknown photographs ['moon']; available: astronaut"),
    # training metadata files
    Fault("missing training file", lambda p: ["stage", "prepare", *train_set_params(p, str(p / "gone.json"))], 1,
          "gone.json: training set file not found"),
    Fault("folder instead of training file", lambda p: (p / "meta").mkdir() or ["stage", "prepare",
                                                                               *train_set_params(p, str(p / "meta"))],
          2, "meta: is a folder; data.train[].path names the metadata file"),
    Fault("training file of unknown type", lambda p: (p / "m.txt").write_text("x") and [
        "stage", "prepare", *train_set_params(p, str(p / "m.txt"))], 2, "unsupported file type '.txt'"),
    Fault("training JSON not a list", lambda p: (p / "m.json").write_text("42") and [
        "stage", "prepare", *train_set_params(p, str(p / "m.json"))], 1, "m.json: expected a JSON list of rows"),
    Fault("training JSON broken", lambda p: (p / "m.json").write_text('[{"image": "a.png",\n "score": }]') and [
        "stage", "prepare", *train_set_params(p, str(p / "m.json"))], 1, "m.json:2: not valid JSON"),
    Fault("training CSV not UTF-8", lambda p: (p / "m.csv").write_bytes(b"image,score\nbl\xe9.png,3\n") and [
        "stage", "prepare", *train_set_params(p, str(p / "m.csv"))], 1, "m.csv: not UTF-8 text (byte 14)"),
    Fault("torn training row is quarantined", _torn_train_row, 1,
          "1 of 3 records quarantined", check=_check_torn_row_quarantined),
    Fault("BOM and CRLF training CSV imports cleanly", _bom_crlf_csv, 0, "prepare: train iqa 2; 0 quarantined",
          check=_check_two_records),
    # JSONL records between stages
    Fault("manifest with a torn last line", lambda p: _manifest(p, [json.dumps(manifest_row(0)), '{"id": "d/1.p']), 1,
          "train.jsonl:2: not valid JSON (Unterminated string starting at) (the last line is cut off"),
    Fault("manifest row missing a field", lambda p: _manifest(p, [json.dumps({k: v for k, v in manifest_row(0).items()
                                                                              if k != "sha256"})]),
          1, "train.jsonl:1: record 'd/0.png': sha256: Field required; expected a ManifestRecord"),
    Fault("manifest line of the wrong type", lambda p: _manifest(p, [json.dumps(manifest_row(0)), "[1, 2]"]), 1,
          "train.jsonl:2: expected a JSON object, got a list"),
    Fault("manifest not UTF-8", _manifest_latin1, 1, "train.jsonl: not UTF-8 text (byte 8)"),
    Fault("manifest is a folder", lambda p: (p / "data/manifests/train.jsonl").mkdir(parents=True) or [
        "stage", "rationales", *params(p, "teacher:\n  concurrency: 1\n")], 1, "train.jsonl: is a folder"),
    Fault("torn imported benchmark manifest", _torn_benchmark_manifest, 1, "KonIQ-10K.jsonl:4: not valid JSON"),
    Fault("missing stage input", lambda p: ["stage", "validate", *params(p, "validate: {}\n")], 1,
          "data/rationales/rationales.jsonl not found: run the rationales stage first"),
    Fault("empty rationales file", lambda p: write_lines(p / "data/rationales/rationales.jsonl", []) and [
        "stage", "validate", *params(p, "validate: {}\n")], 1,
        "no rationale records to validate (did the rationales stage produce any?)"),
    Fault("training CSV with a header only", lambda p: (p / "m.csv").write_text("image,score\n") and [
        "stage", "prepare", *train_set_params(p, str(p / "m.csv"))], 1,
        "prepare: no training records; enable data.synthetic or add data.train entries"),
    Fault("rationale line of the wrong type is rejected", _rationales_with_a_list_line, 0, "validate",
          check=_check_list_line_rejected, fixtures=["base"]),
    Fault("missing corpus for sft", lambda p: ["stage", "sft", *params(p, "sft: {}\n")], 1,
          "corpus.jsonl: no corpus (run stages rationales and validate first)"),
    # the CLI
    Fault("unknown stage", lambda p: ["stage", "prepar"], 2, "unknown stage 'prepar'; choose from prepare, rationales"),
    Fault("lineage of a folder that is not a checkpoint", lambda p: ["lineage", str(p)], 2,
          "lineage.json: not found; is"),
    Fault("lineage file torn", _torn_lineage, 1, "lineage.json: not valid JSON"),
    Fault("score: bad task", lambda p: ["score", str(p), "--task", "iqaa"], 2, "--task must be one of iqa, iaa"),
    Fault("score: folder without images", lambda p: ["score", str(p)], 2, "no image files in"),
    # the untrained tiny model does not write a parseable answer in 3 tokens: the other two still went through it
    Fault("score: oversized image among three", _bomb_among_three, 0, "0 scored, 2 parse failure(s), 1 unreadable",
          fixtures=["model"]),
    Fault("score: checkpoint without weights", _weightless_checkpoint, 2,
          "cannot load the model", fixtures=["model"]),
    Fault("score: output on a full disk", _disk_full, 1, "out.json: No space left on device",
          check=_check_old_output_kept, fixtures=["model"]),
    Fault("score: read-only output folder", _read_only_output, 1, "Permission denied", fixtures=["model"]),
    Fault("evaluate: checkpoint without weights", _eval_weightless, 1, "cannot load the model", fixtures=["model"]),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault: Fault, project, capsys, request):
    if "model" in fault.fixtures:
        shutil.copytree(request.getfixturevalue("tiny_model_dir"), project / "model")
    if "base" in fault.fixtures:  # validate counts target tokens with the base model's tokenizer
        (project / "data/models").mkdir(parents=True)
        (project / "data/models/base").symlink_to(request.getfixturevalue("tiny_model_dir"), target_is_directory=True)
    setup_args = fault.setup.__code__.co_varnames[:fault.setup.__code__.co_argcount]
    args = fault.setup(project, request) if "request" in setup_args else fault.setup(project)
    code, out = run_cli(args, capsys)
    flat = " ".join(out.split())  # rich may wrap a long line
    assert "Traceback" not in out, out
    assert code == fault.exit, out
    assert " ".join(fault.says.split()) in flat, out
    if fault.check:
        fault.check(project)


def test_the_corpus_is_large_enough():
    assert len(FAULTS) >= 25 and len({f.name for f in FAULTS}) == len(FAULTS)


def test_bomb_outcome_names_the_file(project, capsys, tiny_model_dir):
    shutil.copytree(tiny_model_dir, project / "model")
    args = _bomb_among_three(project) + ["--output", str(project / "r.json")]
    assert run_cli(args, capsys)[0] == 0
    results = {Path(r["image"]).name: r for r in json.loads((project / "r.json").read_text())}
    assert results["big.png"]["score"] is None and "exceeds limit" in results["big.png"]["error"]
    assert results["a.png"]["error"] is None and results["b.png"]["error"] is None


# ------------------------------------------------------------------------------- the installed command
def test_debug_shows_the_traceback_and_the_script_path_agrees(tmp_path):
    """The same handler behind `python -m tatar.cli`: one line by default, the traceback with --debug."""
    (tmp_path / "p.yaml").write_text("data:\n  benchmarks: [nope]\n")
    cmd = [sys.executable, "-m", "tatar.cli"]
    env = {**os.environ, "TATAR_DEBUG": ""}
    plain = subprocess.run([*cmd, "stage", "prepare", "--params", "p.yaml"], cwd=tmp_path, capture_output=True,
                           text=True, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        "stage prepare failed: unknown benchmark 'nope'; known: KonIQ-10K, SPAQ, KADID, PIPAL, AVA, TAD66K, "
        "FLICKR-AES, ArtiMuse-10K"]
    debug = subprocess.run([*cmd, "--debug", "stage", "prepare", "--params", "p.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, env=env)
    assert debug.returncode != 0 and "UnknownNameError" in debug.stderr and "registry.py" in debug.stderr


# ------------------------------------------------------------------------------------------ orchestration
def test_until_with_an_unknown_stage_lists_the_stages():
    """A subprocess: `tatar run` sets up Prefect's and DVC's logging, which must not outlive this test."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TATAR_DEBUG")}
    proc = subprocess.run([sys.executable, "-m", "tatar.cli", "run", "--until", "valdate"], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and "Prefect API" not in out  # no server was started
    stages = "prepare, base_model, rationales, validate, sft, grpo, evaluate"
    assert f"--until 'valdate': no such stage; the stages are {stages}" in " ".join(out.split())


def _dvc_failure(status: int) -> Exception:
    from dvc.exceptions import ReproductionError
    from dvc.stage.exceptions import StageCmdFailedError

    try:
        try:
            raise StageCmdFailedError("tatar stage sft", status)
        except StageCmdFailedError as cause:
            raise ReproductionError("failed to reproduce 'sft'") from cause
    except ReproductionError as exc:
        return exc


def _openai_connection_error() -> Exception:
    import httpx
    import openai

    return openai.APIConnectionError(request=httpx.Request("POST", "http://localhost:1/v1/chat/completions"))


@pytest.mark.parametrize("make, retry", [
    (lambda: _dvc_failure(2), False),   # usage / configuration (a bad key)
    (lambda: _dvc_failure(1), False),   # data / policy (keep rate below the minimum, a missing corpus)
    (lambda: _dvc_failure(75), True),   # transient (endpoint down after the client's own retries)
    (lambda: _dvc_failure(-9), True),   # killed: interrupted training resumes from its checkpoint
    (lambda: _dvc_failure(137), True),  # killed under a shell
    (_openai_connection_error, True),
    (lambda: ValueError("a bug"), False),
], ids=["usage", "policy", "transient", "sigkill", "sigkill-shell", "transport", "bug"])
def test_prefect_retries_only_what_a_retry_can_fix(make, retry):
    from flows.pipeline import retry_only_transient

    class FailedState:
        def result(self):
            raise make()

    assert retry_only_transient(None, None, FailedState()) is retry
