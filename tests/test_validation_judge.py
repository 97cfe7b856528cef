"""The LLM judge: verdict parsing (garbage included), keep thresholds, the reference teacher's grounded verdicts,
and the judge end to end against the local reference teacher (kept, rejected, re-asked, failed, cached)."""

import json

import pytest
from validation_fixtures import row, save_image

from tatar.config import JudgeConfig
from tatar.parsing import format_target
from tatar.records import RationaleRecord
from tatar.standins.judge import reference_verdict
from tatar.standins.teacher import TeacherRequest, rationale
from tatar.validation.judge import (
    Verdict,
    VerdictError,
    judge_messages,
    judge_records,
    parse_verdict,
    rejection,
)

IQA_VERDICT = {"visual_fidelity": 4, "technical_rigour": 3.5, "score_consistency": 5, "decision": "keep",
               "issues": []}
HEAVY_BLUR = ("Fine detail is heavily blurred and every edge is smeared into soft mush, with nothing crisp left. "
              "This severe blur dominates the frame, so the technical quality is very poor.")
ACCURATE = ("Edges are crisp and fine texture is resolved cleanly, and smooth areas are clean and free of grain. "
            "Nothing degrades the signal in a way a viewer would notice, so the technical quality is excellent.")


# ------------------------------------------------------------------------------------------- parsing
def test_parse_verdict_accepts_json_in_fences_and_chatter():
    text = "Here is my verdict:\n```json\n" + json.dumps(IQA_VERDICT | {"decision": "Keep"}) + "\n```"
    verdict = parse_verdict(text, "iqa")
    assert verdict == Verdict("iqa", {"visual_fidelity": 4.0, "technical_rigour": 3.5, "score_consistency": 5.0},
                              "keep", [])


@pytest.mark.parametrize("text, reason", [
    ("", "no JSON object"),
    ("I think it is fine, keep it.", "no JSON object"),
    ('{"visual_fidelity": 4, "decision": "keep"', "no JSON object"),
    ('{"visual_fidelity": 4,, }', "invalid JSON"),
    (json.dumps({k: v for k, v in IQA_VERDICT.items() if k != "score_consistency"}), "'score_consistency'"),
    (json.dumps(IQA_VERDICT | {"visual_fidelity": 7}), "'visual_fidelity' must be a number from 0 to 5, got 7"),
    (json.dumps(IQA_VERDICT | {"technical_rigour": "4"}), "'technical_rigour' must be a number"),
    (json.dumps(IQA_VERDICT | {"technical_rigour": True}), "'technical_rigour' must be a number"),
    (json.dumps(IQA_VERDICT | {"decision": "maybe"}), "'decision' must be"),
    (json.dumps(IQA_VERDICT | {"issues": "too blurry"}), "'issues' must be a list of strings"),
    (json.dumps({"groundedness": 4, "cohesion": 4, "decision": "keep"}), "'visual_fidelity'"),  # an IAA verdict
])
def test_parse_verdict_rejects_garbage_with_a_reason(text, reason):
    with pytest.raises(VerdictError, match=reason.replace("(", r"\(")):
        parse_verdict(text, "iqa")


def test_iaa_verdict_needs_its_own_scores():
    verdict = parse_verdict(json.dumps({"attribute_coverage": 5, "groundedness": 3, "cohesion": 2.5, "smoothness": 4,
                                        "decision": "keep", "issues": ["slightly generic"]}), "iaa")
    assert verdict.scores["cohesion"] == 2.5 and verdict.issues == ["slightly generic"]


# ----------------------------------------------------------------------------------------- thresholds
def test_keep_needs_keep_decision_and_scores_strictly_above_thresholds():
    cfg = JudgeConfig()
    verdict = parse_verdict(json.dumps(IQA_VERDICT), "iqa")
    assert rejection(verdict, cfg) is None
    at_threshold = parse_verdict(json.dumps(IQA_VERDICT | {"score_consistency": 2}), "iqa")
    assert rejection(at_threshold, cfg) == "score_consistency=2 <= 2"
    rejected = parse_verdict(json.dumps(IQA_VERDICT | {"decision": "reject", "issues": ["invents noise"]}), "iqa")
    assert rejection(rejected, cfg) == "decision=reject (issues: invents noise)"
    assert rejection(at_threshold, JudgeConfig(iqa_min={"score_consistency": 1})) is None


def test_threshold_on_an_unknown_score_is_a_config_error():
    verdict = parse_verdict(json.dumps(IQA_VERDICT), "iqa")
    with pytest.raises(ValueError, match=r"validate.judge.iqa_min: unknown verdict score\(s\) \['fidelity'\]"):
        rejection(verdict, JudgeConfig(iqa_min={"fidelity": 2}))


# ------------------------------------------------------------------------------ the reference teacher
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge_images")
    return {kind: save_image(root / f"{kind}.png", kind) for kind in ("sharp", "blurred")}


def judged(image, think, score=85.0, task="iqa") -> dict:
    rec = RationaleRecord.model_validate(row("j", task=task, score=score, think=think, image=image.name,
                                             root=str(image.parent), raw=format_target(think, score)))
    reply = reference_verdict(judge_messages(rec, JudgeConfig()))
    return json.loads(reply)


def test_reference_ignores_requests_that_are_not_judge_prompts():
    messages = [{"role": "system", "content": "You are an expert."}, {"role": "user", "content": "TASK: iqa"}]
    assert reference_verdict(messages) is None


def test_reference_rejects_heavy_blur_claimed_on_a_sharp_image(images):
    verdict = judged(images["sharp"], HEAVY_BLUR, score=20.0)
    assert verdict["decision"] == "reject" and verdict["visual_fidelity"] <= 2
    assert any("claims strong blur" in issue for issue in verdict["issues"])


def test_reference_keeps_the_same_claim_on_a_blurred_image(images):
    verdict = judged(images["blurred"], HEAVY_BLUR, score=20.0)
    assert verdict["decision"] == "keep" and verdict["visual_fidelity"] == 5


def test_reference_checks_score_consistency(images):
    assert judged(images["sharp"], ACCURATE, score=90.0)["decision"] == "keep"
    verdict = judged(images["sharp"], ACCURATE, score=10.0)
    assert verdict["score_consistency"] <= 2 and verdict["decision"] == "reject"


def test_reference_teacher_rationales_pass_the_reference_judge(images):
    """The two halves of the local reference agree: its own grounded rationales are kept."""
    for kind, score in (("sharp", 88.0), ("blurred", 25.0)):
        for task in ("iqa", "iaa"):
            think = rationale(TeacherRequest(task=task, score=score, attributes={}, image=images[kind].read_bytes()))
            think = think.split("<think>")[1].split("</think>")[0]
            assert judged(images[kind], think, score, task)["decision"] == "keep", (kind, task, think)


def test_reference_iaa_flags_a_checklist(images):
    checklist = "\n".join(f"{i}. The composition and colour are fine." for i in range(1, 9))
    verdict = judged(images["sharp"], checklist, score=60.0, task="iaa")
    assert verdict["decision"] == "reject" and "numbered steps" in " ".join(verdict["issues"])


# ------------------------------------------------------------------------------------- end to end
def _records(images) -> list[RationaleRecord]:
    def rec(id, kind, think, score):
        return RationaleRecord.model_validate(row(id, score=score, think=think, image=images[kind].name,
                                                  root=str(images[kind].parent), raw=format_target(think, score)))

    return [rec("hallucinated", "sharp", HEAVY_BLUR, 20.0), rec("faithful", "blurred", HEAVY_BLUR, 20.0),
            rec("clean", "sharp", ACCURATE, 90.0), rec("lost", "sharp", ACCURATE, 90.0).model_copy(
                update={"root": "/nonexistent"})]


@pytest.mark.slow
def test_judge_end_to_end_against_the_local_reference_teacher(images, tmp_path):
    cfg = JudgeConfig(enabled=True, base_url="local", cache_dir=str(tmp_path / "cache"))
    outcome = judge_records(_records(images), cfg, progress=False)
    assert {id: f.check for id, f in outcome.failures.items()} == {"hallucinated": "judge", "lost": "judge_failure"}
    assert "visual_fidelity=0 <= 2" in outcome.failures["hallucinated"].detail
    assert "image not found" in outcome.failures["lost"].detail
    assert outcome.stats["calls"] == 3 and outcome.stats["cached"] == 0

    again = judge_records(_records(images), cfg, progress=False)  # verdicts come from the cache
    assert again.failures.keys() == outcome.failures.keys() and again.stats["calls"] == 0
    assert again.stats["cached"] == 3


@pytest.mark.slow
def test_unparseable_verdicts_are_reasked_then_rejected_never_kept(images, tmp_path):
    from tatar.standins.server import serve_in_thread

    with serve_in_thread(malformed_rate=1.0) as server:  # every reply cut in half: never valid JSON
        cfg = JudgeConfig(enabled=True, base_url=server.base_url, max_reasks=1, cache_dir=str(tmp_path / "c"))
        outcome = judge_records(_records(images)[:3], cfg, progress=False)
    assert {f.check for f in outcome.failures.values()} == {"judge_failure"} and len(outcome.failures) == 3
    assert all(f.detail.startswith("malformed: no JSON object") and "after 2 attempts" in f.detail
               for f in outcome.failures.values())
    assert outcome.stats["reasks"] == 3 and server.stats.judged == 6


@pytest.mark.slow
def test_stage_with_the_judge_on_logs_judge_rejections(images, tmp_path):
    from tatar.config import ValidateConfig
    from tatar.records import read_jsonl, write_jsonl
    from tatar.validation import validate_corpus

    recs = _records(images)[:3]
    recs[1] = recs[1].model_copy(update={"think": HEAVY_BLUR.replace("mush", "paste"),
                                         "raw": format_target(HEAVY_BLUR.replace("mush", "paste"), 20.0)})
    write_jsonl(tmp_path / "rationales.jsonl", recs)
    cfg = ValidateConfig(min_keep_rate_iqa=0.5, judge=JudgeConfig(enabled=True, cache_dir=str(tmp_path / "cache")))
    metrics = validate_corpus(tmp_path / "rationales.jsonl", tmp_path / "corpus", cfg, progress=False)
    rejected = list(read_jsonl(tmp_path / "corpus" / "rejected.jsonl"))
    assert [(r["id"], r["check"]) for r in rejected] == [("hallucinated", "judge")]
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "corpus" / "corpus.jsonl")) == ["clean", "faithful"]
    assert metrics["judge"]["enabled"] is True and metrics["judge"]["calls"] == 3
