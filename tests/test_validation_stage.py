"""Stage validate: a corpus with planted bad records splits exactly, GX reports failures by id, policy bites."""

import json

import pytest
from validation_fixtures import IQA_THINK, NARROW, row

from tatar.config import Params, ValidateConfig
from tatar.parsing import format_target
from tatar.records import RationaleRecord, read_jsonl, write_jsonl
from tatar.validation import run, validate_corpus
from tatar.validation.report import KeepRateError, Rejection, keep_metrics, policy_failures

WORDS = "expect_column_values_to_have_word_count_between:think"
DUPLICATE = "expect_column_values_to_be_null:duplicate_of"


def _think_row(id, think, task="iqa", **kw):
    return row(id, task=task, think=think, raw=format_target(think, kw.get("score", 72.35)), **kw)


def planted() -> tuple[list[dict], list[tuple[str, str]]]:
    """Eleven good IQA and six good IAA rows, plus bad rows for every check: sorted [(id, expected check)]."""
    good = [row(f"iqa_ok_{i}", subject=i) for i in range(10)] + [row(f"iaa_ok_{i}", "iaa", subject=i) for i in range(6)]
    twin = IQA_THINK.format(subject="harbour")
    good.append(_think_row("iqa_ok_original", twin))  # the first copy of a repeated rationale is kept
    leak = "Fine detail is slightly soft and edges look smeared, a 7.2/10 at best, while smooth areas stay clean."
    bad = {
        "empty": (_think_row("empty", "   "), "expect_column_values_to_match_regex:think"),
        "iqa_short": (_think_row("iqa_short", "Soft edges, clean areas."), WORDS),
        "iaa_short": (_think_row("iaa_short", IQA_THINK.format(subject="cat"), task="iaa"), WORDS),
        "copy": (_think_row("copy", twin.upper().replace(",", " ;")), DUPLICATE),
        "bad_task": (row("bad_task", task="vqa", subject=20), "expect_column_values_to_be_in_set:task"),
        "bad_score": (row("bad_score", score=130.0, subject=21), "expect_column_values_to_be_between:score_100"),
        "bad_format": (row("bad_format", score=72.4, answer="72.4", subject=22),
                       "expect_column_values_to_match_regex:answer"),
        "no_raw": (row("no_raw", raw=None, subject=23), "expect_column_values_to_not_be_null:raw"),
        "no_teacher": (row("no_teacher", teacher=None, subject=24),
                       "expect_column_values_to_not_be_null:teacher_model"),
        "extra_field": (row("extra_field", mood="happy", subject=25), "schema"),
        "broken_tags": (row("broken_tags", raw="<think>soft.<answer>72.35</answer>", subject=26), "structure"),
        "wrong_answer": (row("wrong_answer", answer="70.00", subject=27), "answer"),
        "contaminated": (_think_row("contaminated", IQA_THINK.format(subject="dog") + " <|im_end|>"), "contamination"),
        "leak": (_think_row("leak", leak), "score_leak"),
        "narrow": (_think_row("narrow", NARROW, task="iaa"), "attribute_coverage"),
        "loop": (_think_row("loop", "Edges look smeared and the image is " + "very " * 25 + "soft overall."),
                 "degenerate"),
    }
    twins = [row("twin", subject=29), row("twin", think=IQA_THINK.format(subject="moor"))]  # one id, two records
    rows = good + [r for r, _ in bad.values()] + twins
    rows.append({k: v for k, v in row("no_id", subject=28).items() if k != "id"})
    expected = [(id, check) for id, (_, check) in bad.items()] + [("twin", "expect_column_values_to_be_unique:id")] * 2
    return rows, sorted(expected + [(f"<line {len(rows)}>", "schema")])


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    rows, expected = planted()
    write_jsonl(out / "rationales.jsonl", rows)
    # A third of the planted corpus is bad: the keep-rate policy is tested on its own below.
    cfg = ValidateConfig(min_keep_rate_iqa=0.0, min_keep_rate_iaa=0.0)
    metrics = validate_corpus(out / "rationales.jsonl", out, cfg, progress=False)
    return out, rows, expected, metrics


def test_planted_records_are_split_exactly(split):
    out, rows, expected, _ = split
    kept = [RationaleRecord.model_validate(d) for d in read_jsonl(out / "corpus.jsonl")]
    rejected = [Rejection.model_validate(d) for d in read_jsonl(out / "rejected.jsonl")]
    assert sorted((r.id, r.check) for r in rejected) == expected
    assert sorted(r.id for r in kept) == sorted(d["id"] for d in rows if "_ok_" in d.get("id", ""))
    assert len(kept) + len(rejected) == len(rows)  # every record in exactly one file


def test_rejections_explain_themselves(split):
    out = split[0]
    details = {d["id"]: d["detail"] for d in read_jsonl(out / "rejected.jsonl")}
    assert details["copy"] == "rationale not already used for an earlier record: duplicate_of='iqa_ok_original'"
    assert details["bad_score"] == "ground truth on the 0-100 scale: score_100=130.0"
    assert details["iaa_short"].startswith("iaa rationale has 80-250 words")
    assert details["extra_field"].startswith("mood: Extra inputs are not permitted")
    assert details["leak"] == "think states the ground truth 72.35 as '7.2/10'"
    assert "special token '<|im_end|>'" in details["contaminated"]


def test_gx_result_reports_failures_per_row_by_id(split):
    result = json.loads((split[0] / "gx" / "validation_result.json").read_text())
    assert result["success"] is False
    by_check = {}
    for item in result["results"]:
        config = item["expectation_config"]
        ids = {u["id"] for u in item["result"].get("unexpected_index_list") or []}
        by_check.setdefault(f"{config['type']}:{config['kwargs']['column']}", set()).update(ids)
        assert item["result"].get("unexpected_index_column_names", ["id"]) == ["id"]
    assert by_check[WORDS] == {"empty", "iqa_short", "iaa_short"}  # empty also breaks the length bound
    assert by_check[DUPLICATE] == {"copy"}
    assert by_check["expect_column_values_to_be_in_set:task"] == {"bad_task"}
    assert by_check["expect_column_values_to_not_be_null:think"] == set()


def test_data_docs_and_summary_are_written(split):
    gx = split[0] / "gx"
    index = (gx / "index.html").read_text()
    assert "rationale_corpus" in index
    pages = list((gx / "validations").rglob("*.html"))
    assert len(pages) == 1 and "expect_column_values_to_have_word_count_between" not in pages[0].name
    summary = (gx / "summary.md").read_text()
    assert "| iqa | 27 | 11 | 40.7% |" in summary and "score_leak" in summary


def test_metrics_keep_rate_per_task_and_reason(split):
    metrics = split[3]
    assert json.loads((split[0] / "metrics.json").read_text()) == metrics
    assert metrics["records"] == 36 and metrics["kept"] == 17
    assert metrics["iaa"] == {"records": 8, "kept": 6, "keep_rate": 0.75,
                              "rejected": {WORDS: 1, "attribute_coverage": 1}}
    assert metrics["rejected"][WORDS] == 2 and metrics["reject_rate"]["score_leak"] == round(1 / 36, 4)
    assert metrics["judge"] == {"enabled": False}


# ------------------------------------------------------------------------------------------------ policy
def test_policy_message_names_top_reasons_and_example_ids():
    kept = [RationaleRecord.model_validate(row(f"k{i}", subject=i)) for i in range(2)]
    rejected = [Rejection(id=f"leak{i}", task="iqa", check="score_leak", detail="") for i in range(5)]
    rejected += [Rejection(id="fence", task="iqa", check="contamination", detail="")]
    cfg = ValidateConfig(min_keep_rate_iqa=0.5)
    [message] = policy_failures(keep_metrics(kept, rejected, None), rejected, cfg)
    assert message == ("iqa: kept 2/8 = 25.0% < validate.min_keep_rate_iqa 50%; top reasons: "
                       "score_leak x5 (e.g. leak0, leak1, leak2); contamination x1 (e.g. fence)")
    assert policy_failures(keep_metrics(kept, rejected, None), rejected, ValidateConfig(min_keep_rate_iqa=0.25)) == []


def _policy_fails_the_stage_without_writing_a_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    leak = "Fine detail is slightly soft and edges look smeared, so {}, while smooth areas stay clean."
    rows = [row("fine", subject=1)] + [_think_row(f"leaky{i}", leak.format(paraphrase))
                                       for i, paraphrase in enumerate(["72 out of 100", "7.2/10", "72%"])]
    write_jsonl("data/rationales/rationales.jsonl", rows)
    (tmp_path / "data/corpus").mkdir(parents=True)
    (tmp_path / "data/corpus/corpus.jsonl").write_text("stale\n")
    with pytest.raises(KeepRateError, match=r"iqa: kept 1/4 = 25.0% .* score_leak x3 \(e.g. leaky0, leaky1, leaky2\)"):
        run(Params())
    assert not (tmp_path / "data/corpus/corpus.jsonl").exists()
    assert len(list(read_jsonl("data/corpus/rejected.jsonl"))) == 3
    assert "**Policy failed:**" in (tmp_path / "data/corpus/gx/summary.md").read_text()


def test_missing_rationales_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the rationales stage first"):
        validate_corpus(tmp_path / "nope.jsonl", tmp_path, ValidateConfig())


# ------------------------------------------------------------------------------------- token budget
def _with_base(tmp_path, tiny_model_dir):
    (tmp_path / "data/models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data/models/base").symlink_to(tiny_model_dir, target_is_directory=True)


def test_policy_fails_the_stage_without_writing_a_corpus(tmp_path, monkeypatch, tiny_model_dir):
    _with_base(tmp_path, tiny_model_dir)
    _policy_fails_the_stage_without_writing_a_corpus(tmp_path, monkeypatch)


def test_over_budget_targets_are_rejected_and_lengths_printed(tmp_path, monkeypatch, tiny_model_dir, capsys):
    """The stage counts each target with the base model's tokenizer (the tiny one here) and rejects those longer
    than the smaller of grpo.max_completion_length and eval.max_new_tokens as over_budget."""
    from tatar.config import EvalConfig, GRPOConfig
    from tatar.validation.budget import load_tokenizer

    monkeypatch.chdir(tmp_path)
    _with_base(tmp_path, tiny_model_dir)
    rows = [row(f"iqa{i}", subject=i) for i in range(3)] + [row(f"iaa{i}", "iaa", subject=i) for i in range(3)]
    longer = rows[-1]["think"] + " Seen again, the light across the frame rewards a slower second look."
    rows[-1] = _think_row("iaa_long", longer, task="iaa", subject=9)
    tokenizer = load_tokenizer("data/models/base")
    lengths = {r["id"]: len(tokenizer(r["raw"], add_special_tokens=False)["input_ids"]) for r in rows}
    budget = max(n for id, n in lengths.items() if id != "iaa_long")
    assert lengths["iaa_long"] > budget  # the planted record is the only one over
    write_jsonl("data/rationales/rationales.jsonl", rows)
    params = Params(validate=ValidateConfig(min_keep_rate_iqa=0, min_keep_rate_iaa=0, think_words_iaa=(80, 120)),
                    grpo=GRPOConfig(max_completion_length=budget), eval=EvalConfig(max_new_tokens=budget + 40))
    run(params)

    [rejected] = list(read_jsonl("data/corpus/rejected.jsonl"))
    assert rejected["id"] == "iaa_long" and rejected["check"] == "over_budget"
    assert f"target is {lengths['iaa_long']} tokens" in rejected["detail"]
    assert f"grpo.max_completion_length {budget}" in rejected["detail"]
    assert len(list(read_jsonl("data/corpus/corpus.jsonl"))) == 5
    stats = json.loads((tmp_path / "data/corpus/metrics.json").read_text())["target_tokens"]
    iaa = sorted(n for id, n in lengths.items() if id.startswith("iaa"))
    assert stats["iaa"]["max"] == iaa[-1] and stats["iaa"]["median"] == iaa[1] and stats["iaa"]["over_budget"] == 1
    assert stats["iqa"]["records"] == 3 and stats["iqa"]["budget"] == budget
    printed = capsys.readouterr().err
    assert "target length in base-model tokens" in printed and "p95" in printed and "median" in printed


def test_missing_base_model_is_a_clear_error(tmp_path, monkeypatch):
    from tatar.validation.budget import BudgetError

    monkeypatch.chdir(tmp_path)
    write_jsonl("data/rationales/rationales.jsonl", [row("fine", subject=1)])
    with pytest.raises(BudgetError, match="run stage base_model first"):
        run(Params())


def test_keep_rates_are_over_the_manifest_so_teacher_failures_count(tmp_path, monkeypatch, tiny_model_dir):
    """A teacher that answered 2 of 10 records yields a corpus of 2: validate fails naming the teacher's reasons."""
    monkeypatch.chdir(tmp_path)
    _with_base(tmp_path, tiny_model_dir)
    write_jsonl("data/manifests/train.jsonl", [{"id": f"iqa_{i}", "task": "iqa"} for i in range(10)])
    write_jsonl("data/rationales/rationales.jsonl", [row(f"iqa_{i}", subject=i) for i in range(2)])
    write_jsonl("data/rationales/failures.jsonl", [{"id": f"iqa_{i}", "reason": "malformed: no tags", "attempts": 3}
                                                   for i in range(2, 9)])
    with pytest.raises(KeepRateError, match=r"iqa: kept 2/10 = 20.0% .* teacher x8 \(e.g. iqa_2, iqa_3, iqa_4\)"):
        run(Params())
    rejected = {r["id"]: r for r in read_jsonl("data/corpus/rejected.jsonl")}
    assert rejected["iqa_2"]["check"] == "teacher" and rejected["iqa_2"]["detail"] == "malformed: no tags"
    assert "no rationale" in rejected["iqa_9"]["detail"]
    metrics = json.loads((tmp_path / "data/corpus/metrics.json").read_text())
    assert metrics["iqa"]["records"] == 10 and metrics["iqa"]["rejected"]["teacher"] == 8
