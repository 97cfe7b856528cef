"""The real-data path through `tatar run`: synthetic data off, an ArtiMuse-10K source (score JSON + per-aspect
conversation JSONL, as released) and the official KonIQ-10k CSV, both outside the project and tracked with
`tatar data add`, two imported benchmarks, the tiny model and the local teacher. Runs twice (the second skips
everything), then again after an edit of the external KonIQ file (prepare and what follows its outputs re-run)."""

import csv
import json
import shutil

import pytest
import yaml
from test_data_formats import aspect_prompt, write_image
from test_end_to_end import DVC, REPO, TATAR, last_run, sh

from tatar.data.formats.artimuse import ASPECTS
from tatar.data.registry import reference_manifest

pytestmark = pytest.mark.slow
STAGES = ["prepare", "rationales", "base_model", "validate", "sft", "grpo", "evaluate"]
GIT_ID = ["-c", "user.email=t@t", "-c", "user.name=t"]
TINY = {  # a few steps of everything: the path is under test, not the model
    "sft": {"epochs": 1, "max_steps": 2, "check_samples": 2, "check_max_new_tokens": 16, "save_steps": 100,
            "vision_warmup": {"steps": 0}},  # the default's 3000-step tower warm-up: ~80 s that tests no format
    # Generation budgets stay at params.yaml's: validate rejects targets longer than them (over_budget).
    "grpo": {"max_steps": 1, "num_generations": 2, "prompts_per_generation": 4, "per_device_batch_size": 8},
}


def write_sources(ext, bench_images):
    """External label files in their published layouts, and benchmark images (a KonIQ test image is also listed,
    same bytes, in the KonIQ CSV as training: the overlap policy excludes it)."""
    koniq_images, artimuse_images = ext / "koniq/1024x768", ext / "ArtiMuse-10K"
    koniq_bench = [item["image"] for item in reference_manifest("KonIQ-10K")[:3]]
    art_bench = [item["image"] for item in reference_manifest("ArtiMuse-10K")[:3]]
    for i, name in enumerate(koniq_bench):
        write_image(bench_images / "koniq" / name, 200 + i)
    for i, name in enumerate(art_bench):
        write_image(bench_images / "artimuse" / name, 220 + i)
    rows = []
    for i in range(8):
        write_image(koniq_images / f"{i}.jpg", i)
        rows.append([f"{i}.jpg", 1, 2, 3, 4, 5, 15, 1.5 + 0.4 * i, 0.5, round(10 + 9.5 * i, 2), "training"])
    rows.append(["9.jpg", 1, 2, 3, 4, 5, 15, 3.0, 0.5, 50.0, "test"])  # official test split: left out
    shutil.copy(bench_images / "koniq" / koniq_bench[0], koniq_images / "leak.jpg")
    rows.append(["leak.jpg", 1, 2, 3, 4, 5, 15, 3.0, 0.5, 60.0, "training"])
    with (ext / "koniq10k_distributions_sets.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore", "set"])
        writer.writerows(rows)
    scores, lines = [], []
    for i in range(8):
        name = f"{i}_{300 + i}.jpg"
        write_image(artimuse_images / name, 100 + i)
        scores.append({"image": name, "gt_score": round(1 + i, 1)})
        lines += [{"image": name, "conversations": [
            {"from": "human", "value": aspect_prompt(aspect, misspelt=k == 0)},
            {"from": "gpt", "value": f"The {aspect.lower()} of this work is considered with care and balance."}]}
            for k, aspect in enumerate(ASPECTS)]
    (ext / "score.json").write_text(json.dumps(scores))
    (ext / "text.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return koniq_images, artimuse_images


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    dest, ext, bench_images = base / "project", base / "external", base / "bench"
    files = sh("git", "ls-files", "-co", "--exclude-standard", cwd=REPO).stdout.split("\n")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and not rel.startswith(("data/", ".dvc/cache")) or rel.endswith(".gitkeep"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    koniq_images, artimuse_images = write_sources(ext, bench_images)
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", *GIT_ID, "commit", "-qm", "init", cwd=dest)
    sh(*TATAR, "data", "add", str(ext / "koniq10k_distributions_sets.csv"), "--name", "koniq", cwd=dest)
    sh(*TATAR, "data", "add", str(ext / "score.json"), str(ext / "text.jsonl"), "--name", "artimuse", cwd=dest)
    sh(*TATAR, "data", "import", "KonIQ-10K", "--images", str(bench_images / "koniq"), "--allow-missing", cwd=dest)
    sh(*TATAR, "data", "import", "ArtiMuse-10K", "--images", str(bench_images / "artimuse"), "--allow-missing",
       cwd=dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"]["synthetic"]["enabled"] = False
    params["data"]["benchmarks"] = ["KonIQ-10K", "ArtiMuse-10K"]
    params["data"]["quarantine"]["overlap"] = "exclude"
    params["data"]["validation"]["fraction"] = 0.0  # every record trains, so the label edit below reaches the teacher
    params["data"]["train"] = [
        {"name": "koniq", "format": "koniq", "path": "data/raw/koniq/koniq10k_distributions_sets.csv",
         "images": str(koniq_images)},
        {"name": "artimuse", "format": "artimuse", "path": "data/raw/artimuse/score.json",
         "text": "data/raw/artimuse/text.jsonl", "images": str(artimuse_images)},
    ]
    for section, values in TINY.items():
        params[section].update(values)
    params["eval"].update({"benchmarks": ["KonIQ-10K", "ArtiMuse-10K"]})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "add", "-A", cwd=dest)
    sh("git", *GIT_ID, "commit", "-qm", "real data", cwd=dest)
    sh(*TATAR, "run", cwd=dest)
    return dest, ext


def test_first_run_runs_every_stage_on_real_formats(project):
    dest, _ = project
    assert last_run(dest) == dict.fromkeys(STAGES, "ran")
    report = json.loads((dest / "data/manifests/report.json").read_text())
    train = {d["dataset"]: d for d in report["datasets"] if d["split"] == "train"}
    assert train["koniq"]["records"] == 8 and train["artimuse"]["records"] == 8
    assert train["artimuse"]["with_attributes"] == 8
    assert report["overlap_excluded"] == {"koniq": 1}
    assert any("split(s) {'test': 1}" in n for n in report["notes"])
    assert (dest / "data/eval/metrics.json").exists()
    assert "up to date" in sh(*DVC, "status", cwd=dest).stdout


def test_second_run_skips_every_stage_and_dvc_repro_agrees(project):
    dest, _ = project
    sh(*TATAR, "run", cwd=dest)
    assert last_run(dest) == dict.fromkeys(STAGES, "skipped")
    repro = sh(*DVC, "repro", cwd=dest).stdout
    assert "Running stage" not in repro, repro


def test_an_edit_of_the_external_label_file_reruns_prepare(project):
    """Runs last: one KonIQ label changes outside the project; `tatar run --until validate` updates the import,
    re-runs prepare and the rationales (one record regenerated), and leaves the training stages stale."""
    dest, ext = project
    path = ext / "koniq10k_distributions_sets.csv"
    path.write_text(path.read_text().replace(",10.0,training", ",12.5,training"))
    sh(*TATAR, "run", "--until", "validate", cwd=dest)
    assert last_run(dest) == {"prepare": "ran", "rationales": "ran", "base_model": "skipped", "validate": "ran"}
    assert "12.5" in (dest / "data/raw/koniq/koniq10k_distributions_sets.csv").read_text()
    metrics = json.loads((dest / "data/rationales/metrics.json").read_text())
    assert metrics["outcomes"]["generated"] == 1, metrics
    stale = json.loads(sh(*DVC, "status", "--json", cwd=dest).stdout)
    assert {name.split(":")[-1] for name in stale} == {"sft", "grpo", "evaluate"}, stale
