"""The evaluate stage end to end: a tiny model on small test manifests, a scripted model for exact metrics,
and missing benchmarks failing loudly or being skipped on request."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import tatar.scorer
from tatar.config import EvalConfig, Params
from tatar.evaluation import run
from tatar.hashing import sha256_file
from tatar.inference import Completion
from tatar.records import ManifestRecord, read_jsonl, write_jsonl

FAIL_LEVEL = 7  # the scripted model answers this grey level with an unparseable answer


def write_benchmark(root, name, task, gts, missing=(), names=None):
    """Grey images whose level encodes the ground truth, and their manifest under data/manifests/test/."""
    records = []
    for i, gt in enumerate(gts):
        path = root / "data" / "images" / name / (names[i] if names else f"{i}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), round(gt * 2.55), dtype=np.uint8)).save(path)
        records.append(ManifestRecord(id=f"{name}/{path.name}", image=path.name, root=str(path.parent), task=task,
                                      dataset=name, split="test", score=gt, score_100=gt, sha256=sha256_file(path)))
        if i in missing:
            path.unlink()
    write_jsonl(root / "data" / "manifests" / "test" / f"{name}.jsonl", records)


def scripted_complete(model, processor, images, task, batch_size=8, max_new_tokens=256, progress=False,
                     tens_probs=False):
    """A perfect scorer that reads the grey level back; IQA thinks in 3 words, IAA in 12."""
    out = []
    for im in images:
        level = int(np.asarray(im)[0, 0, 0])
        think = "<think>" + " ".join(["word"] * (3 if task == "iqa" else 12)) + "</think>\n"
        answer = "about 70" if level == FAIL_LEVEL else f"{level / 2.55:.2f}"
        out.append(Completion(f"{think}<answer>{answer}</answer>"))
    return out


def params(checkpoint, **kw):
    return Params(eval=EvalConfig(checkpoint=str(checkpoint), batch_size=4, max_new_tokens=8, **kw))


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "data" / "manifests" / "test").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TATAR_EVAL_CHECKPOINT", raising=False)
    return tmp_path


@pytest.mark.slow
def test_stage_on_the_embedded_default_with_a_tiny_model(project, tiny_model_dir, synthetic_data):
    """The synthetic test manifests built by the real prepare stage, the default eval.benchmarks."""
    for name, manifest in synthetic_data.test.items():
        shutil.copy(manifest, project / "data" / "manifests" / "test" / f"{name}.jsonl")
    run(params(tiny_model_dir))

    out = project / "data" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(tiny_model_dir)
    assert set(metrics["benchmarks"]) == {"synthetic_iqa", "synthetic_iaa"} and set(metrics["tasks"]) == {"iqa", "iaa"}
    for name, n in (("synthetic_iqa", 6), ("synthetic_iaa", 6)):
        preds = list(read_jsonl(out / "predictions" / f"{name}.jsonl"))
        assert len(preds) == n and all(p["raw"] for p in preds)  # a random model's text, kept verbatim
        m = metrics["benchmarks"][name]
        assert m["n"] == n and m["parse_failures"] == sum(p["pred"] is None for p in preds)
        assert m["images_per_s"] > 0 and {"srcc", "plcc", "plcc_logistic", "krcc", "mean_think_words"} <= set(m)
    assert {p.name for p in (out / "plots").iterdir()} == {
        "scatter_synthetic_iqa.png", "scatter_synthetic_iaa.png", "think_words_iqa.png", "think_words_iaa.png"}
    assert (out / "scatter.csv").exists() and (out / "think_words.csv").exists()
    assert "| synthetic_iqa | IQA | 6 |" in (out / "report.md").read_text()


def test_stage_metrics_are_exact_and_failures_kept(project, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(tatar.scorer, "complete", scripted_complete)
    monkeypatch.setenv("TATAR_EVAL_CHECKPOINT", str(tiny_model_dir))  # overrides eval.checkpoint
    gts = [FAIL_LEVEL / 2.55, 12.0, 25.0, 25.0, 40.0, 55.0, 61.0, 80.0, 95.0]  # first one fails to parse
    write_benchmark(project, "synthetic_iqa", "iqa", gts)
    write_benchmark(project, "synthetic_iaa", "iaa", [15.0, 35.0, 75.0, 90.0])
    run(params("data/models/does-not-exist"))

    metrics = json.loads((project / "data/eval/metrics.json").read_text())
    iqa = metrics["benchmarks"]["synthetic_iqa"]
    assert (iqa["n"], iqa["parse_failures"]) == (9, 1) and iqa["parse_failure_rate"] == pytest.approx(1 / 9)
    assert iqa["srcc"] == pytest.approx(1.0) and iqa["krcc"] == pytest.approx(1.0)
    assert iqa["plcc"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["tasks"]["iqa"]["mean_think_words"] == 3 and metrics["tasks"]["iaa"]["mean_think_words"] == 12
    failed = next(read_jsonl(project / "data/eval/predictions/synthetic_iqa.jsonl"))
    assert failed["pred"] is None and failed["raw"].endswith("<answer>about 70</answer>")


def test_stage_reports_srcc_per_distortion_where_file_names_say_it(project, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(tatar.scorer, "complete", scripted_complete)
    names = [f"I{ref:02d}_{kind:02d}_{level:02d}.png" for ref in (1, 2) for kind in (1, 17) for level in (1, 2, 3)]
    write_benchmark(project, "kadid", "iqa", [90.0 - 20 * (n % 3) - ref for ref in (1, 2) for n in range(6)],
                    names=names)
    write_benchmark(project, "synthetic_iaa", "iaa", [15.0, 35.0, 75.0, 90.0])
    run(params(tiny_model_dir, benchmarks=["kadid", "synthetic_iaa"]))

    metrics = json.loads((project / "data/eval/metrics.json").read_text())
    assert set(metrics["distortions"]) == {"kadid"}  # the IAA names say nothing of a distortion
    blur = metrics["distortions"]["kadid"]["gaussian_blur"]
    assert (blur["n"], blur["references"], blur["undefined"]) == (6, 2, 0)
    assert blur["srcc"] == pytest.approx(1.0) and blur["within_reference_srcc"] == pytest.approx(1.0)
    assert set(metrics["distortions"]["kadid"]) == {"gaussian_blur", "darken"}
    assert "| darken | 6 | 1.000 | 1.000 | 2 |" in (project / "data/eval/report.md").read_text()


def test_missing_benchmarks_fail_with_the_list(project, tiny_model_dir):
    write_benchmark(project, "synthetic_iqa", "iqa", [10, 50, 90], missing=(1, 2))
    with pytest.raises(SystemExit) as exc:
        run(params(tiny_model_dir, benchmarks=["synthetic_iqa", "koniq"]))
    message = str(exc.value)
    assert "synthetic_iqa: 2 of 3 images not found" in message and "synthetic_iqa/1.png" in message
    assert "KonIQ-10K.jsonl not found" in message  # an alias resolves to the registry name
    assert "skip_missing" in message
    assert not (project / "data/eval/metrics.json").exists()


def test_skip_missing_skips_and_records(project, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(tatar.scorer, "complete", scripted_complete)
    write_benchmark(project, "synthetic_iqa", "iqa", [10, 50, 90])
    write_benchmark(project, "synthetic_iaa", "iaa", [10, 50, 90], missing=(0,))
    run(params(tiny_model_dir, benchmarks=["synthetic_iqa", "synthetic_iaa"], skip_missing=True))

    metrics = json.loads((project / "data/eval/metrics.json").read_text())
    assert set(metrics["benchmarks"]) == {"synthetic_iqa"}
    assert "synthetic_iaa/0.png not found" in metrics["skipped"]["synthetic_iaa"]
    assert "synthetic_iaa" in (project / "data/eval/report.md").read_text().split("Skipped")[1]

    with pytest.raises(SystemExit, match="every benchmark was skipped"):
        run(params(tiny_model_dir, benchmarks=["synthetic_iaa"], skip_missing=True))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_use_vllm_without_vllm_is_a_clear_error(project):
    write_benchmark(project, "synthetic_iqa", "iqa", [10, 50])
    with pytest.raises(SystemExit, match=r"not installed: pip install 'tatar\[vllm\]'"):
        run(params("data/models/grpo", benchmarks=["synthetic_iqa"], use_vllm=True))


def test_expected_readout_reaches_predictions_metrics_and_report(project, tiny_model_dir, monkeypatch):
    """eval.readout: expected hands the scorer's tens-digit probabilities to the scores (here: half the mass one
    decade up, so every two-digit answer reads 5 points higher) and says so in metrics.json and the report."""
    asked = []

    def halves(model, processor, images, task, batch_size=8, max_new_tokens=256, progress=False, tens_probs=False):
        asked.append(tens_probs)
        out = scripted_complete(model, processor, images, task)
        probs = [0.0] * 10
        return [Completion(c.text, tuple(probs[:d] + [0.5, 0.5] + probs[d + 2:]) if tens_probs else None)
                for c, d in zip(out, (int(float(c.text.split("<answer>")[1][:-9]) // 10) for c in out))]

    monkeypatch.setattr(tatar.scorer, "complete", halves)
    write_benchmark(project, "synthetic_iqa", "iqa", [12.0, 41.0, 77.0])
    run(params(tiny_model_dir, benchmarks=["synthetic_iqa"], readout="expected"))
    assert asked == [True]
    metrics = json.loads((project / "data/eval/metrics.json").read_text())
    assert metrics["readout"] == "expected"
    preds = [p["pred"] for p in read_jsonl(project / "data/eval/predictions/synthetic_iqa.jsonl")]
    assert preds == pytest.approx([17.0, 46.0, 82.0], abs=0.3)  # grey levels quantise the scores
    assert "`eval.readout: expected`" in (project / "data/eval/report.md").read_text()
