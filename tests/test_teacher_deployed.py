"""Teachers as deployed: one per task, reasoning-model reply shapes, a teacher that always fails, degenerate
replies, an image gone mid-run, a server that echoes the request's headers, and retry accounting. Each
misbehaving teacher is a small OpenAI-compatible test server built from the reference teacher's own answers."""

import json
import os
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from teacher_fixtures import config, make_records

from tatar.config import ConfigError, Params, parse_params
from tatar.records import RationaleRecord, read_jsonl, write_jsonl
from tatar.redact import public_url, redact
from tatar.standins.server import serve_app, serve_in_thread
from tatar.standins.teacher import parse_request, rationale
from tatar.teacher import stage
from tatar.teacher.stage import TeacherGateError, generate

KEY = "sk-test-0123456789abcdefSECRET"
# What R1-style models think before they answer: it mentions the score, in digits, and must never reach `think`.
OWN_REASONING = "Okay, the score is {score}, so I should describe it as such. Let me check each of the 8 notes."


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("deployed"), n_iqa=3, n_iaa=4)


def teacher_app(answer) -> Starlette:
    """A chat-completions server: ``answer(body, request) -> JSONResponse | (content, message extras)``."""
    calls = []

    async def chat(request: Request):
        body = await request.json()
        calls.append(body)
        out = answer(body, request)
        if isinstance(out, JSONResponse):
            return out
        content, extra = out
        return JSONResponse({"model": body["model"], "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": content, **extra}}]})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    app.state.calls = calls
    return app


def reference_answer(body: dict) -> tuple[str, float]:
    request = parse_request(body["messages"][:2])  # the question, not a re-ask
    return rationale(request), request.score


def reasoning_shape(body: dict, _request) -> tuple[str, dict]:
    """The reply shape named by the requested model: raw R1, R1 with a template-opened <think>, vLLM's parser."""
    text, score = reference_answer(body)
    mine = OWN_REASONING.format(score=score)
    shape = body["model"]
    if shape == "r1-raw":
        return f"<think>\n{mine}\n</think>\n\n{text}", {}
    if shape == "r1-template-opened":
        return f"{mine}\n</think>\n\n{text}", {}
    if shape == "vllm-reasoning-content":
        return text, {"reasoning_content": mine}
    if shape == "vllm-reasoning":
        return text, {"reasoning": mine}
    return text, {}


# ------------------------------------------------------------------------------------------ two teachers
def test_each_task_has_its_own_teacher_and_changing_one_reasks_only_its_records(records, tmp_path):
    with serve_in_thread() as vlm, serve_in_thread() as reasoner:
        cfg = config(vlm.base_url, tmp_path / "cache", model="vlm-32b")
        cfg = cfg.model_copy(update={"iaa": cfg.iaa.model_copy(update={"base_url": reasoner.base_url,
                                                                       "model": "r1-distill-32b"})})
        first = generate(records, cfg, progress=False)
        assert vlm.stats.requests == 3 and reasoner.stats.requests == 4  # each task asked its own teacher
        assert {r.task: (r.teacher.model, r.teacher.base_url) for r in first.rationales} == {
            "iqa": ("vlm-32b", vlm.base_url), "iaa": ("r1-distill-32b", reasoner.base_url)}

        other = cfg.model_copy(update={"iaa": cfg.iaa.model_copy(update={"model": "r1-distill-70b"})})
        again = generate(records, other, progress=False)
        assert vlm.stats.requests == 3 and reasoner.stats.requests == 8  # only the IAA records were asked again
    assert len(again.rationales) == len(records) and again.stats.cached == 3


def test_task_teachers_fall_back_to_the_shared_one_and_params_refuse_credentials():
    cfg = parse_params({"teacher": {"base_url": "http://gpu:8000/v1", "model": "m",
                                    "iaa": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 4096,
                                            "base_url": "http://gpu:8001/v1", "model": "r1"}}}).teacher
    assert (cfg.for_task("iqa").base_url, cfg.for_task("iqa").model) == ("http://gpu:8000/v1", "m")
    assert (cfg.for_task("iaa").base_url, cfg.for_task("iaa").model, cfg.for_task("iaa").api_key_env) == (
        "http://gpu:8001/v1", "r1", "TATAR_TEACHER_API_KEY")
    for url in ("https://user:pw@api.example.com/v1", "https://api.example.com/v1?api_key=abc"):
        with pytest.raises(ConfigError, match="credentials"):
            parse_params({"teacher": {"base_url": url}})
        with pytest.raises(ConfigError, match="credentials"):
            parse_params({"validate": {"judge": {"base_url": url}}})


# ----------------------------------------------------------------------------------- reasoning models
@pytest.mark.parametrize("shape", ["r1-raw", "r1-template-opened", "vllm-reasoning-content", "vllm-reasoning"])
def test_reasoning_model_reply_shapes_yield_the_requested_rationale(records, tmp_path, shape):
    iaa = [r for r in records if r.task == "iaa"]
    with serve_app(teacher_app(reasoning_shape)) as server:
        cfg = config(server.base_url, tmp_path / "cache", model=shape, max_reasks=0)
        out = generate(iaa, cfg, progress=False)
    assert not out.failures, [f.reason for f in out.failures]
    for r in out.rationales:
        assert "Okay" not in r.think and r.reasoning.startswith("Okay, the score is")
        assert ("Okay" in r.raw) == shape.startswith("r1")  # raw keeps what the server sent in content
    # the validate stage's rules accept them too (structure and contamination look past the reasoning)
    from tatar.config import ValidateConfig
    from tatar.validation.rules import first_failure

    assert [first_failure(r, ValidateConfig()) for r in out.rationales] == [None] * len(iaa)


# -------------------------------------------------------------------------------- broken teachers
def in_project(tmp_path: Path, records, monkeypatch) -> None:
    write_jsonl(tmp_path / stage.TRAIN_MANIFEST, records)
    monkeypatch.chdir(tmp_path)


def test_a_teacher_that_always_fails_fails_the_stage_naming_reasons(records, tmp_path, monkeypatch):
    in_project(tmp_path, records, monkeypatch)
    with serve_app(teacher_app(lambda body, req: ("I am sorry, I cannot help with that.", {}))) as server:
        params = Params(teacher=config(server.base_url, ".tatar/cache/teacher", max_reasks=1))
        with pytest.raises(TeacherGateError) as failed:
            stage.run(params)
    message = str(failed.value)
    assert "iqa: 0/3 = 0.0% < teacher.min_success_rate 90%" in message and "iaa: 0/4" in message
    assert f"malformed x3 (e.g. {records[0].id}, {records[1].id}, {records[2].id})" in message
    # the outputs were written first: every record is in failures.jsonl
    assert len(list(read_jsonl(tmp_path / stage.OUT_DIR / "failures.jsonl"))) == len(records)
    metrics = json.loads((tmp_path / stage.OUT_DIR / "metrics.json").read_text())
    assert metrics["by_task"]["iaa"]["success_rate"] == 0.0


@pytest.mark.parametrize("reasons, transient", [(["server_error: 503"] * 5 + ["malformed: no tags"] * 2, True),
                                                  (["malformed: no tags"] * 5 + ["timeout: read"] * 2, False)])
def test_a_gate_failed_by_the_transport_is_retried_one_failed_by_replies_is_not(records, reasons, transient):
    """An endpoint that is down may be back on a retry (exit 75: Prefect retries the stage, the cache keeps what was
    answered); a teacher that answers badly will answer badly again (exit 1: no retry)."""
    from tatar.errors import is_transient
    from tatar.teacher.client import Failure, RunStats
    from tatar.teacher.stage import Generated, TeacherUnavailableError, enforce_success_rate, summarise

    failed = [Failure(r.id, reason, 3) for r, reason in zip(records, reasons)]
    cfg = config("http://127.0.0.1:9/v1", "c")
    generated = Generated([], failed, RunStats())
    with pytest.raises(TeacherGateError) as gate:
        enforce_success_rate(summarise(records, generated, cfg), failed, records, cfg)
    assert isinstance(gate.value, TeacherUnavailableError) is transient and is_transient(gate.value) is transient
    assert gate.value.exit_code == (75 if transient else 1)


def test_degenerate_replies_are_reasked_then_failed_as_degenerate(records, tmp_path):
    loop = "<think>The image is " + "very " * 60 + "blurry.</think>\n<answer>50.00</answer>"
    with serve_app(app := teacher_app(lambda body, req: (loop, {}))) as server:
        out = generate(records[:2], config(server.base_url, tmp_path / "c", max_reasks=1), progress=False)
    assert len(app.state.calls) == 4 and not out.rationales
    assert all(f.reason.startswith("degenerate: 'very' repeated") and f.attempts == 2 for f in out.failures)
    assert out.stats.failures_by_kind == {"degenerate": 2}


def test_an_image_gone_mid_run_fails_that_record_only(records, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    moved = []
    for r in records[:4]:  # a private copy of the images: one is deleted while the run is under way
        (folder / r.image).write_bytes(r.path.read_bytes())
        moved.append(r.model_copy(update={"root": str(folder)}))
    victim = moved[2]

    def answer(body, req):
        victim.path.unlink(missing_ok=True)  # after the stage's pre-check, before its request is built
        return reference_answer(body)[0], {}

    with serve_app(teacher_app(answer)) as server:
        out = generate(moved, config(server.base_url, tmp_path / "c", concurrency=1), progress=False)
    assert [f.id for f in out.failures] == [victim.id]
    assert out.failures[0].reason.startswith("request_error: FileNotFoundError") and out.failures[0].attempts == 0
    assert len(out.rationales) == 3


def test_a_server_echoing_headers_leaves_no_key_anywhere(records, tmp_path, monkeypatch, capsys, caplog):
    """The error body repeats the request's headers (Authorization: Bearer <key>): no file the stage writes, no
    metric and no log line may hold the key. The key lives in the environment only; params refuse credentials,
    so dvc.lock (params and hashes) cannot hold it either."""
    in_project(tmp_path, records, monkeypatch)
    monkeypatch.setenv("TATAR_TEACHER_API_KEY", KEY)

    def echo(body, req):
        headers = dict(req.headers)
        return JSONResponse({"error": {"message": f"bad request; you sent headers {headers} "
                                                  f"Authorization: {req.headers['authorization']}"}},
                            status_code=500 if "iqa" in json.dumps(body) else 400,
                            headers={"retry-after-ms": "5"})

    caplog.set_level("DEBUG")
    with serve_app(teacher_app(echo)) as server:
        base_url = server.base_url.replace("127.0.0.1", "localhost")
        params = Params(teacher=config(base_url, ".tatar/cache/teacher", max_retries=1))
        with pytest.raises(TeacherGateError) as failed:
            stage.run(params)
    logs = capsys.readouterr()
    texts = [str(failed.value), logs.out, logs.err, caplog.text]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert not [t for t in texts if KEY in t or "Bearer sk" in t]
    reasons = [f["reason"] for f in read_jsonl(tmp_path / stage.OUT_DIR / "failures.jsonl")]
    assert len(reasons) == len(records) and all("[REDACTED]" in r for r in reasons)


def test_redaction_patterns_and_public_urls():
    text = ('{"authorization": "Bearer abcdef123456", "x-api-key": "k-998877665544"} sk-proj-AbCdEf123456 '
            "https://me:pw@host/v1?api_key=zzz&v=1 Authorization: Basic dXNlcjpwYXNz")
    clean = redact(text, secrets=["k-998877665544"])
    for secret in ("abcdef123456", "998877665544", "AbCdEf123456", "me:pw", "zzz", "dXNlcjpwYXNz"):
        assert secret not in clean
    assert "v=1" in clean and "max_tokens=500" == redact("max_tokens=500")
    assert public_url("https://me:pw@api.example.com:8443/v1") == "https://api.example.com:8443/v1"
    assert public_url("local") == "local"


# -------------------------------------------------------------------------------------- retries
def test_retries_are_counted_as_they_happened_by_kind(records, tmp_path):
    """A 408 answered three times with max_retries 2 is a timeout after 2 retries (it was once recorded as a
    bad_request with 0 retries); a 429 answered once then fine is one rate_limited retry."""
    seen: dict[str, int] = {}

    def answer(body, req):
        request = parse_request(body["messages"][:2])
        rid = f"{request.task} {request.score}"
        seen[rid] = seen.get(rid, 0) + 1
        if request.task == "iqa":
            return JSONResponse({"error": {"message": "request timeout"}}, status_code=408,
                                headers={"retry-after-ms": "5"})
        if seen[rid] == 1:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"retry-after-ms": "5"})
        return reference_answer(body)[0], {}

    iqa, iaa = records[0], [r for r in records if r.task == "iaa"][:2]
    with serve_app(teacher_app(answer)) as server:
        out = generate([iqa, *iaa], config(server.base_url, tmp_path / "c", max_retries=2), progress=False)
    assert [f.reason.split(":")[0] for f in out.failures] == ["timeout"]
    assert out.stats.http_retries == 2 + 2
    assert out.stats.retries_by_kind == {"timeout": 2, "rate_limited": 2}
    assert len(out.rationales) == 2


def test_rationale_records_without_the_new_fields_still_load():
    old = {"id": "a", "task": "iqa", "dataset": "d", "image": "a.png", "root": "r", "score_100": 50.0,
           "teacher": {"model": "m", "prompt_version": "v1", "temperature": 0.3, "top_p": 0.8, "max_tokens": 140},
           "raw": "<think>x</think><answer>50.00</answer>", "think": "x", "answer": "50.00", "think_words": 1,
           "cache_key": "k"}
    record = RationaleRecord.model_validate(old)
    assert record.reasoning is None and record.teacher.base_url is None


def test_lineage_and_model_cards_name_each_tasks_teacher():
    from tatar.lineage import _task_teachers
    from tatar.lineage_view import render_markdown
    from tatar.records import describe_teachers, teachers_of

    params = {"base_url": "http://gpu:8000/v1", "model": "Qwen/Qwen3-VL-32B-Instruct",
              "iaa": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 4096, "base_url": "http://gpu:8001/v1",
                      "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"}}
    teachers = _task_teachers(params)
    assert teachers == {"iqa": "Qwen/Qwen3-VL-32B-Instruct at http://gpu:8000/v1",
                        "iaa": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B at http://gpu:8001/v1"}
    rows = [{"id": str(i), "task": task, "dataset": "d", "image": "a.png", "root": "r", "score_100": 50.0,
             "teacher": {"model": model, "prompt_version": "v1", "temperature": 0.3, "top_p": 0.8, "max_tokens": 9,
                         "base_url": url},
             "raw": "", "think": "x", "answer": "50.00", "think_words": 1, "cache_key": "k"}
            for i, (task, model, url) in enumerate([("iqa", "vlm", "http://a/v1")] * 2 + [("iaa", "r1", "http://b/v1")])]
    written_by = teachers_of(RationaleRecord.model_validate(r) for r in rows)
    assert describe_teachers(written_by) == "iqa: vlm at http://a/v1 (2 records); iaa: r1 at http://b/v1 (1 records)"
    report = {"checkpoint": "data/models/sft", "rev": None, "stages": [], "disagreements": [],
              "corpus": {"teachers": teachers, "prompt_version": "v1", "written_by": written_by}, "lineage": {}}
    text = render_markdown(report)
    assert "iaa teacher: deepseek-ai/DeepSeek-R1-Distill-Qwen-32B at http://gpu:8001/v1" in text
    assert "corpus written by: iqa: vlm at http://a/v1 (2 records)" in text


@pytest.mark.slow
def test_header_echo_through_dvc_repro_leaves_no_key_in_dvc_lock_cache_or_logs(records, tmp_path):
    """The real path: `dvc repro rationales` against the echoing server, the key in the environment only."""
    import subprocess
    import sys

    import yaml

    def run(*args):
        env = {**os.environ, "TATAR_TEACHER_API_KEY": KEY, "DVC_NO_ANALYTICS": "1",
               "PYTHONPATH": str(Path(stage.__file__).resolve().parents[2])}
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)

    def echo(body, req):
        return JSONResponse({"error": {"message": f"you sent {dict(req.headers)}"}}, status_code=400)

    write_jsonl(tmp_path / stage.TRAIN_MANIFEST, records)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"rationales": {
        "cmd": f"{sys.executable} -m tatar.cli stage rationales", "deps": [str(stage.TRAIN_MANIFEST)],
        "params": ["teacher"], "outs": ["data/rationales/rationales.jsonl", "data/rationales/failures.jsonl"],
        "metrics": [{"data/rationales/metrics.json": {"cache": False}}]}}}))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        assert run(*cmd).returncode == 0
    with serve_app(teacher_app(echo)) as server:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"teacher": {
            "base_url": server.base_url.replace("127.0.0.1", "localhost"), "cache_dir": ".tatar/cache/teacher",
            "max_retries": 0, "min_success_rate": 0.0}}))
        repro = run(sys.executable, "-m", "dvc", "repro", "rationales")
    assert repro.returncode == 0, repro.stderr[-2000:]
    assert "[REDACTED]" in (tmp_path / "data/rationales/failures.jsonl").read_text()
    files = [p for p in tmp_path.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert tmp_path / "dvc.lock" in files
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not leaks and KEY not in repro.stdout + repro.stderr


def test_stand_ins_stay_out_of_the_pipelines_imports():
    """The client, the stage and validation never import the stand-ins, and the stand-in server never imports
    the client (the circle client -> server -> judge -> client is gone)."""
    import subprocess
    import sys

    def loaded(imports: str, prefixes: str) -> str:
        code = f"import sys, {imports}; print(sorted(m for m in sys.modules if m.startswith({prefixes})))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert loaded("tatar.teacher.stage, tatar.validation.stage, tatar.validation.judge", "'tatar.standins'") == "[]\n"
    assert loaded("tatar.standins.server", "('tatar.teacher', 'tatar.validation.judge')") == "[]\n"
