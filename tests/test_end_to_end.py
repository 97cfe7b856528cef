"""The whole pipeline on the embedded default (made smaller: SMALL), through Prefect and DVC, in a temporary copy of
the repo: first run runs every stage, a second run skips every stage, outputs travel through a DVC remote, the final
checkpoint's lineage is audited and verified, and a data change re-runs exactly the affected stages."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "rationales", "base_model", "validate", "sft", "grpo", "evaluate"]
pytestmark = pytest.mark.slow


def sh(*args, cwd, check=True):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


# A fresh machine: no git identity beyond what a user of `dvc exp run` must set (README, Lineage audit), no global
# or system git config; HOME is replaced by an empty folder in the fixture.
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
       "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
       "GIT_AUTHOR_NAME": "tatar-test", "GIT_AUTHOR_EMAIL": "test@tatar.local",
       "GIT_COMMITTER_NAME": "tatar-test", "GIT_COMMITTER_EMAIL": "test@tatar.local", "GIT_CONFIG_NOSYSTEM": "1"}
for _name in ("PREFECT_API_URL", "PREFECT_HOME", "TATAR_DEBUG", "TATAR_EVAL_CHECKPOINT"):
    ENV.pop(_name, None)
TATAR = [sys.executable, "-m", "tatar.cli"]
# The embedded default, smaller: 2 scenes a photograph instead of 8, 60 SFT steps after a 300-step tower warm-up
# (`make pipeline` runs the full default; here the path through Prefect and DVC is under test, in a few minutes).
SMALL = {"data": {"synthetic": {"crops_per_source": 2}},
         "sft": {"max_steps": 60, "vision_warmup": {"steps": 300}}}
DVC = [sys.executable, "-m", "dvc"]


def last_run(project) -> dict[str, str]:
    return {r["stage"]: r["status"] for r in json.loads((project / ".tatar/last_run.json").read_text())}


# Outputs of a run: never copied, even where a user has committed them, so the first run always runs every stage.
RUN_OUTPUTS = ("dvc.lock", "data/models/", "data/eval/", "data/corpus/", "data/rationales/", "data/manifests/",
               "data/synthetic/", ".tatar/", ".prefect/", ".dvc/cache/", ".dvc/tmp/")


def tracked_files(repo: Path) -> list[str]:
    files = sh("git", "ls-files", "-z", cwd=repo).stdout.split("\0")
    return [f for f in files if f and not (f in RUN_OUTPUTS or f.startswith(tuple(o for o in RUN_OUTPUTS
                                                                                  if o.endswith("/"))))]


def test_the_copy_leaves_out_a_users_run_outputs():
    """The module's fixture copies the clone's files only: dvc.lock and data/ outputs stay behind."""
    files = tracked_files(REPO)
    assert "dvc.yaml" in files and "params.yaml" in files and "tatar/cli.py" in files
    assert not any(f == "dvc.lock" or f.startswith(("data/models/", "data/corpus/", ".tatar/")) for f in files)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh copy of the repository's tracked files (as a new user's clone would have them; nothing the user's
    own runs left in the working tree, such as dvc.lock or data/), after one `tatar run`."""
    home = tmp_path_factory.mktemp("home")  # empty: no ~/.gitconfig, caches or Prefect profile
    (home / ".gitconfig").write_text("")
    ENV.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"))
    dest = tmp_path_factory.mktemp("tatar") / "project"
    for rel in tracked_files(REPO):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in SMALL.items():
        for key, value in values.items():
            params[section][key] = {**params[section][key], **value} if isinstance(value, dict) else value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "init", cwd=dest)
    run = sh(*TATAR, "run", cwd=dest)
    print(run.stdout[-3000:])
    return dest


def test_first_run_runs_every_stage_and_leaves_dvc_clean(project):
    assert last_run(project) == dict.fromkeys(STAGES, "ran")
    status = sh(*DVC, "status", cwd=project).stdout
    assert "up to date" in status, status
    for path in ("data/manifests/train.jsonl", "data/corpus/corpus.jsonl", "data/models/sft/lineage.json",
                 "data/models/grpo/lineage.json", "data/eval/metrics.json", "data/eval/report.md"):
        assert (project / path).exists(), path


def test_second_run_skips_every_stage(project):
    sh(*TATAR, "run", cwd=project)
    assert last_run(project) == dict.fromkeys(STAGES, "skipped")


def test_dvc_push_and_pull_every_output_through_a_directory_remote(project, tmp_path):
    sh(*DVC, "remote", "add", "-d", "--local", "e2e", str(tmp_path / "remote"), cwd=project)
    sh(*DVC, "push", cwd=project)
    for out in ("data/models", "data/corpus/corpus.jsonl", "data/manifests", "data/eval/predictions"):
        shutil.rmtree(project / out) if (project / out).is_dir() else (project / out).unlink()
    shutil.rmtree(project / ".dvc/cache")
    sh(*DVC, "pull", cwd=project)
    assert "up to date" in sh(*DVC, "status", cwd=project).stdout
    assert (project / "data/models/grpo/lineage.json").exists()


def test_lineage_of_the_final_checkpoint(project):
    report = json.loads(sh(*TATAR, "lineage", "data/models/grpo", "--json", cwd=project).stdout)
    assert [s["stage"] for s in report["stages"]][-1] == "grpo"
    assert {"prepare", "rationales", "validate", "base_model", "sft"} <= {s["stage"] for s in report["stages"]}
    assert report["corpus"]["teachers"] == {task: "tatar-reference-teacher at local" for task in ("iqa", "iaa")}
    assert report["disagreements"] == []
    assert sh(*TATAR, "lineage", "data/models/grpo", "--verify", cwd=project).returncode == 0
    # The readable view at 80 columns: every input and output of every stage on its own line with its short hash.
    lines = [line.strip() for line in sh(*TATAR, "lineage", "data/models/grpo", "--width", "80",
                                         cwd=project).stdout.splitlines()]
    for s in report["stages"]:
        for item in s["deps"] + s["outs"]:
            assert f"{item['path']}  {item['md5'].removesuffix('.dir')[:8]}" in lines, item


def test_training_curves_are_dvc_plots_and_experiment_metrics(project):
    plots = json.loads(sh(*DVC, "plots", "show", "--json", cwd=project).stdout)["data"]
    for stage, curves in (("sft", ("loss", "val/iqa/srcc", "val/iaa/srcc")),
                          ("grpo", ("rewards/iqa/format/mean", "iaa/parse_rate", "val/iaa/parse_rate"))):
        for curve in curves:
            path = f"data/curves/{stage}/plots/metrics/{curve}.tsv"
            assert path in plots, (path, sorted(plots))
            header = (project / path).read_text().splitlines()[0].split("\t")
            assert header == ["step", curve.rsplit("/", 1)[-1]], header
    workspace = json.loads(sh(*DVC, "exp", "show", "--json", cwd=project).stdout)[0]["data"]["metrics"]
    for stage in ("sft", "grpo"):
        val = workspace[f"data/curves/{stage}/metrics.json"]["data"]["val"]
        assert {"srcc", "plcc", "parse_rate", "think_words"} <= set(val["iqa"]) & set(val["iaa"]), val
    assert "data/eval/metrics.json" in workspace


def test_verify_catches_a_flipped_byte_and_a_swapped_corpus(project):
    weights = next((project / "data/models/grpo").glob("*.safetensors"))
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    try:
        res = sh(*TATAR, "lineage", "data/models/grpo", "--verify", "--json", cwd=project, check=False)
        report = json.loads(res.stdout)
        assert res.returncode == 1
        assert any(weights.name in p and "differs" in p for p in report["verify"])
        assert any("differs from the output dvc.lock records" in d for d in report["disagreements"])
    finally:
        weights.write_bytes(original)

    corpus = project / "data/corpus/corpus.jsonl"
    original = corpus.read_bytes()
    corpus.write_bytes(b"".join(original.splitlines(keepends=True)[:-1]))  # one record fewer
    try:
        res = sh(*TATAR, "lineage", "data/models/sft", "--verify", "--json", cwd=project, check=False)
        assert res.returncode == 1
        assert any("corpus.jsonl" in p and "'corpus'" in p for p in json.loads(res.stdout)["verify"])
    finally:
        corpus.write_bytes(original)
    assert sh(*TATAR, "lineage", "data/models/grpo", "--verify", cwd=project).returncode == 0


def test_experiment_sweep_and_the_lineage_of_its_checkpoint(project):
    sh(*DVC, "exp", "run", "-S", "grpo.beta=0.01", "-n", "beta-high", cwd=project)
    report = json.loads(sh(*TATAR, "lineage", "data/models/grpo", "--rev", "beta-high", "--json",
                           cwd=project).stdout)
    assert report["stages"][-1]["stage"] == "grpo"
    assert report["stages"][-1]["params"]["grpo"]["beta"] == 0.01
    assert report["lineage"]["params"]["grpo"]["beta"] == 0.01
    assert report["disagreements"] == []


def test_overfit_learns_on_the_embedded_default_and_fails_loudly_with_shuffled_labels(project):
    """`tatar overfit` on the embedded default memorises its own 32 IQA images (SRCC >= overfit.min_srcc, 0.9, exit 0);
    with the targets permuted across images the same check fails (exit 1) and prints what it measured."""
    def srcc(proc):
        last = proc.stdout.strip().splitlines()[-1]
        assert last.startswith("overfit: iqa SRCC ") and "on 32 images in" in last, proc.stdout[-3000:] + proc.stderr
        return float(last.split("SRCC ")[1].split()[0].rstrip(","))

    broken = sh(*TATAR, "overfit", "--shuffle-labels", cwd=project, check=False)
    assert broken.returncode == 1, broken.stdout[-3000:] + broken.stderr[-3000:]
    assert "labels SHUFFLED" in broken.stdout and "FAILED - iqa below SRCC" in broken.stdout
    for cause in ("image tokens per image", "loss tokens", "labels aligned", "score format"):
        assert cause in broken.stdout
    assert srcc(broken) < 0.5
    good = sh(*TATAR, "overfit", cwd=project, check=False)
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert srcc(good) >= 0.9


def test_data_change_reruns_exactly_the_affected_stages(project):
    """Runs last. Edits the embedded default's size; runs up to validate (the training stages' re-run is the same
    DVC decision, and costs minutes) and checks that DVC marks exactly the downstream stages stale."""
    params = (project / "params.yaml").read_text()
    before = (project / "data/manifests/train.jsonl").read_text().count("\n")
    (project / "params.yaml").write_text(params.replace("iaa_variants_per_source: 4", "iaa_variants_per_source: 5"))
    sh(*TATAR, "run", "--until", "validate", cwd=project)
    after = (project / "data/manifests/train.jsonl").read_text().count("\n")
    assert after > before
    assert last_run(project) == {"prepare": "ran", "rationales": "ran", "base_model": "skipped", "validate": "ran"}
    metrics = json.loads((project / "data/rationales/metrics.json").read_text())
    # Only new records went to the teacher; every earlier one came from the record cache. A new IAA record can hit
    # the cache too: its prompt is text only (score and attribute notes), and two images may share one.
    outcomes = metrics["outcomes"]
    assert 0 < outcomes["generated"] <= after - before and outcomes["generated"] + outcomes["cached"] == after, metrics
    stale = json.loads(sh(*DVC, "status", "--json", cwd=project).stdout)
    assert {name.split(":")[-1] for name in stale} == {"sft", "grpo", "evaluate"}, stale
