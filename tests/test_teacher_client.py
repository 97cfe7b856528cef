"""The generic chat runner against the reference teacher: cache keys, faults, re-asks, incremental re-runs,
endpoint configuration and the server's protocol and concurrency."""

import asyncio
import json
import time

import httpx
import pytest
from teacher_fixtures import NOTES, config, make_records

from tatar.config import JudgeConfig, TeacherConfig
from tatar.standins.server import serve_in_thread
from tatar.teacher.client import Endpoint, EndpointError, Job, Sampling, run_chat_async
from tatar.teacher.prompts import PromptSet, load_prompts
from tatar.teacher.stage import generate, record_key


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("teacher_client"), n_iqa=6, n_iaa=6)


def outcomes(generated) -> dict[str, str]:
    return {**{r.id: "ok" for r in generated.rationales}, **{f.id: "failed" for f in generated.failures}}


# ---------------------------------------------------------------------------------------------- cache
def test_cache_key_changes_exactly_with_what_the_teacher_sees(records):
    iqa, iaa_notes, iaa_image = records[0], records[6], records[7]
    assert iaa_notes.attributes and not iaa_image.attributes
    cfg, prompts = TeacherConfig(), load_prompts("v1")

    def key(rec, c=cfg, p=prompts):
        return record_key(rec, c, p)

    must_change = {
        "image bytes": key(iqa.model_copy(update={"sha256": "0" * 64})),
        "score": key(iqa.model_copy(update={"score_100": iqa.score_100 + 0.01})),
        "task": key(iqa.model_copy(update={"task": "iaa"})),
        "attribute text": key(iaa_notes.model_copy(update={"attributes": {**NOTES, "theme": "A storm."}})),
        "prompt text": key(iqa, p=PromptSet("v1", {**prompts.texts, "iqa": prompts.texts["iqa"] + " Be terse."})),
        "prompt version": key(iqa, p=PromptSet("v2", prompts.texts)),
        "model": key(iqa, c=cfg.model_copy(update={"model": "Qwen/Qwen3-VL-32B"})),
        "temperature": key(iqa, c=cfg.model_copy(update={"iqa": cfg.iqa.model_copy(update={"temperature": 0.7})})),
        "top_p": key(iqa, c=cfg.model_copy(update={"iqa": cfg.iqa.model_copy(update={"top_p": 0.95})})),
        "max_tokens": key(iqa, c=cfg.model_copy(update={"iqa": cfg.iqa.model_copy(update={"max_tokens": 64})})),
    }
    assert all(k != key(iqa) for k in must_change.values()), [n for n, k in must_change.items() if k == key(iqa)]

    must_not_change = {
        "id, path, dataset, split, raw score": key(iqa.model_copy(update={
            "id": "x/1", "image": "elsewhere.png", "root": "/moved", "dataset": "other", "split": "test",
            "score": 4.2})),
        "score beyond two decimals": key(iqa.model_copy(update={"score_100": iqa.score_100 + 0.001})),
        "notes on an IQA record (never sent)": key(iqa.model_copy(update={"attributes": NOTES})),
        "IAA-only sampling": key(iqa, c=cfg.model_copy(update={"iaa": cfg.iaa.model_copy(update={"top_p": 0.5})})),
        "endpoint and run settings": key(iqa, c=cfg.model_copy(update={
            "base_url": "http://gpu-box:8000/v1", "api_key_env": "OTHER", "concurrency": 3, "timeout_s": 9.0,
            "max_retries": 1, "max_reasks": 0, "cache_dir": "/elsewhere", "words_iqa": (10, 60)})),
        "another template's text": key(iqa, p=PromptSet("v1", {**prompts.texts, "iaa": "changed"})),
    }
    assert all(k == key(iqa) for k in must_not_change.values()), [n for n, k in must_not_change.items()
                                                                 if k != key(iqa)]
    # A text-only IAA prompt does not send the image, so the image bytes are not part of its key.
    assert key(iaa_notes.model_copy(update={"sha256": "0" * 64})) == key(iaa_notes)
    assert key(iaa_image.model_copy(update={"sha256": "0" * 64})) != key(iaa_image)


def test_rerun_after_k_changes_calls_the_teacher_exactly_k_times(records, tmp_path):
    with serve_in_thread() as server:
        cfg = config(server.base_url, tmp_path / "cache")
        first = generate(records, cfg, progress=False)
        assert len(first.rationales) == len(records) and server.stats.requests == len(records)

        changed = list(records)
        changed[0] = changed[0].model_copy(update={"score_100": 12.34})
        changed[5] = changed[5].model_copy(update={"sha256": "f" * 64})
        changed[6] = changed[6].model_copy(update={"attributes": {**NOTES, "emotion": "Tense and uneasy."}})
        changed[1] = changed[1].model_copy(update={"id": "renamed/1", "dataset": "renamed"})  # not a change
        before = server.stats.requests
        second = generate(changed, cfg, progress=False)
        assert server.stats.requests - before == 3
        assert second.stats.cached == len(records) - 3 and second.stats.answered == 3
        assert [r.id for r in second.rationales] == [r.id for r in changed]

        before = server.stats.requests
        generate(changed, cfg, progress=False)
        assert server.stats.requests == before  # nothing changed: no call at all


def test_duplicate_questions_are_asked_once(records, tmp_path):
    twins = [records[0], records[0].model_copy(update={"id": "copy/of/first"})]
    with serve_in_thread() as server:
        out = generate(twins, config(server.base_url, tmp_path / "cache"), progress=False)
        assert server.stats.requests == 1 and [r.id for r in out.rationales] == [t.id for t in twins]


# --------------------------------------------------------------------------------------------- faults
def test_twenty_percent_faults_every_record_accounted_for(records, tmp_path):
    faults = {"error_rate": 0.2, "timeout_rate": 0.2, "malformed_rate": 0.2, "seed": 3}
    with serve_in_thread(**faults) as server:
        cfg = config(server.base_url, tmp_path / "cache", timeout_s=0.5, max_retries=3, concurrency=12)
        out = generate(records, cfg, progress=False)
        assert server.stats.errors and server.stats.timeouts and server.stats.malformed
    assert sorted(outcomes(out)) == sorted(r.id for r in records)  # each id exactly once
    assert len(out.rationales) + len(out.failures) == len(records)
    assert len(out.rationales) >= len(records) - 2, [f.reason for f in out.failures]
    assert out.stats.http_retries > 0 and out.stats.reasks > 0
    for f in out.failures:
        assert f.reason.split(":")[0] in {"malformed", "timeout", "rate_limited", "server_error", "connection"}


def test_persistently_malformed_replies_become_failures_and_are_not_cached(records, tmp_path):
    cache = tmp_path / "cache"
    with serve_in_thread(malformed_rate=1.0) as server:
        out = generate(records[:3], config(server.base_url, cache, max_reasks=2), progress=False)
        assert server.stats.requests == 3 * 3
    assert not out.rationales and [f.attempts for f in out.failures] == [3, 3, 3]
    assert all(f.reason.startswith("malformed: ") and "after 3 attempts" in f.reason for f in out.failures)
    with serve_in_thread() as server:  # a healthy teacher later: the failures are asked again
        again = generate(records[:3], config(server.base_url, cache), progress=False)
        assert len(again.rationales) == 3 and server.stats.requests == 3


def test_timeouts_exhaust_the_clients_retries_then_fail(records, tmp_path):
    with serve_in_thread(timeout_rate=1.0) as server:
        out = generate(records[:2], config(server.base_url, tmp_path / "c", timeout_s=0.3, max_retries=1),
                       progress=False)
        assert server.stats.requests == 2 * 2  # one try and one retry each
    assert [f.reason.split(":")[0] for f in out.failures] == ["timeout", "timeout"]


def test_missing_image_is_a_failure_without_a_call(records, tmp_path):
    gone = records[0].model_copy(update={"image": "missing.png"})
    with serve_in_thread() as server:
        out = generate([gone, records[1]], config(server.base_url, tmp_path / "c"), progress=False)
        assert server.stats.requests == 1
    assert out.failures[0].id == gone.id and out.failures[0].reason.startswith("missing_image:")


# ------------------------------------------------------------------------------------------- endpoint
def test_endpoint_reads_teacher_and_judge_configs():
    assert Endpoint.of(TeacherConfig()).cache_dir == ".tatar/cache/teacher"
    judge = Endpoint.of(JudgeConfig(base_url="http://judge:9000/v1", concurrency=4))
    assert (judge.base_url, judge.concurrency, judge.api_key_env) == ("http://judge:9000/v1", 4, "TATAR_JUDGE_API_KEY")


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    remote = Endpoint.of(TeacherConfig(base_url="https://api.example.com/v1", api_key_env="MY_TEACHER_KEY"))
    monkeypatch.delenv("MY_TEACHER_KEY", raising=False)
    with pytest.raises(EndpointError, match="MY_TEACHER_KEY"):
        remote.api_key()
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test")
    assert remote.api_key() == "sk-test"
    assert Endpoint.of(TeacherConfig(api_key_env="MY_UNSET_KEY_ENV")).api_key()  # local: a dummy key


def test_refused_credentials_abort_the_run(tmp_path, monkeypatch):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import tatar.standins.server as server_module

    async def refuse(request):
        return JSONResponse({"error": {"message": "bad key"}}, status_code=401)

    # An OpenAI-compatible stand-in that answers 401 to everything, served the same way.
    monkeypatch.setattr(server_module, "create_app", lambda faults, stats: Starlette(
        routes=[Route("/v1/chat/completions", refuse, methods=["POST"])]))
    with serve_in_thread() as server:
        ep = Endpoint(server.base_url, "m", "K", 2, 5.0, 0, 0, str(tmp_path))
        jobs = [Job(str(i), str(i), lambda: [{"role": "user", "content": "hi"}], Sampling(0, 1, 5)) for i in range(4)]
        with pytest.raises(EndpointError, match="401"):
            asyncio.run(run_chat_async(ep, jobs, lambda j, t: (True, ""), base_url=server.base_url, progress=False))


def test_replies_are_read_from_the_plain_chat_completion_json(tmp_path, monkeypatch):
    """The runner posts the chat body through the openai client and reads the reply's JSON itself: content,
    model and token usage come through, and a 200 that is not a chat completion is re-asked, then a failure."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    import tatar.standins.server as server_module

    bodies = []

    async def answer(request):
        body = await request.json()
        bodies.append(body)
        if body["messages"][0]["content"] == "garbage":  # a re-ask repeats the question first
            return PlainTextResponse("not json")
        return JSONResponse({"model": "served-model", "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}}]})

    monkeypatch.setattr(server_module, "create_app", lambda faults, stats: Starlette(
        routes=[Route("/v1/chat/completions", answer, methods=["POST"])]))
    with serve_in_thread() as server:
        ep = Endpoint(server.base_url, "m", "K", 2, 5.0, 0, 1, str(tmp_path))
        jobs = [Job(text, text, lambda text=text: [{"role": "user", "content": text}], Sampling(0.3, 0.8, 140))
                for text in ("hello", "garbage")]
        run = asyncio.run(run_chat_async(ep, jobs, lambda j, t: (t == "fine", "not fine"), base_url=server.base_url,
                                         progress=False))
    assert [(r.id, r.text, r.model) for r in run.replies] == [("hello", "fine", "served-model")]
    assert [(f.id, f.attempts) for f in run.failures] == [("garbage", 2)] and "malformed" in run.failures[0].reason
    assert (run.stats.prompt_tokens, run.stats.completion_tokens, run.stats.reasks) == (7, 3, 1)
    assert bodies[0] == {"model": "m", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.3,
                         "top_p": 0.8, "max_tokens": 140}


# --------------------------------------------------------------------------------------------- server
def test_server_protocol_models_health_and_bad_prompts():
    with serve_in_thread() as server:
        root = server.base_url.removesuffix("/v1")
        assert httpx.get(f"{root}/health").json()["status"] == "ok"
        assert httpx.get(f"{server.base_url}/models").json()["data"][0]["id"] == "tatar-reference-teacher"
        bad = httpx.post(f"{server.base_url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 400 and "TASK" in bad.json()["error"]["message"]


def test_server_hands_judge_prompts_to_the_judge_hook(monkeypatch):
    from tatar.standins import judge
    verdict = json.dumps({"decision": "keep"})
    monkeypatch.setattr(judge, "reference_verdict", lambda messages: verdict if "JUDGE" in str(messages) else None)
    with serve_in_thread() as server:
        reply = httpx.post(f"{server.base_url}/chat/completions",
                           json={"messages": [{"role": "user", "content": "JUDGE this"}]}).json()
        assert reply["choices"][0]["message"]["content"] == verdict and server.stats.judged == 1


def test_concurrent_requests_overlap_instead_of_queueing(records, tmp_path):
    """64 requests with 100 ms latency each: at least 6.4 s one after another, far less overlapped."""
    recs = [records[0].model_copy(update={"id": f"c/{i}", "score_100": float(i)}) for i in range(64)]
    with serve_in_thread(latency_ms=100) as server:
        cfg = config(server.base_url, tmp_path / "cache", concurrency=64)
        start = time.perf_counter()
        out = generate(recs, cfg, progress=False)
        elapsed = time.perf_counter() - start
    assert len(out.rationales) == 64 and elapsed < 4.0, elapsed
