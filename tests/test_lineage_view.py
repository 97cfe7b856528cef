"""The readable lineage view (tatar.lineage_view) and `tatar lineage diff` (tatar.lineage_diff) on a small real DVC
project: three stages shaped like the pipeline's (manifests -> rationales -> sft checkpoint -> grpo checkpoint),
reproduced by DVC and committed, so the locks, hashes and git revisions are DVC's own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tatar.lineage import audit
from tatar.lineage_diff import lineage_diff, render_diff
from tatar.lineage_view import render_markdown, render_text, teachers

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
# A stage body: write each output file from the params it reads, and a lineage.json for checkpoints.
STEP = """
import json, sys, pathlib, yaml
from tatar.lineage import write_lineage
stage, dep, out = sys.argv[1:4]
params = yaml.safe_load(open("params.yaml"))
out = pathlib.Path(out)
text = pathlib.Path(dep).read_text() if pathlib.Path(dep).is_file() else "".join(
    p.read_text() for p in sorted(pathlib.Path(dep).glob("*.txt")))
if out.suffix:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + json.dumps(params[stage.split("-")[0]]))
else:
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.txt").write_text(text + json.dumps(params[stage]))
    write_lineage(out, stage, {"input": dep}, {stage: params[stage]})
"""
PARAMS = {
    "data": {"seed": 0, "synthetic": {"sources": ["astronaut", "hubble_deep_field", "immunohistochemistry", "retina",
                                                  "motorcycle_left", "motorcycle_right", "chelsea", "rocket"]}},
    "teacher": {"base_url": "http://iqa-host:8000/v1", "model": "Qwen3-VL-32B", "prompt_version": "v1",
                "iqa": {"temperature": 0.3}, "iaa": {"temperature": 0.2, "model": "DeepSeek-R1-Distill-Qwen-32B",
                                                     "base_url": "http://iaa-host:8000/v1"}},
    "sft": {"learning_rate": 3.0e-3, "epochs": 6},
    "grpo": {"beta": 0.001, "num_generations": 4},
}


def stage(name, dep, out, params):
    return {"cmd": f"{sys.executable} step.py {name} {dep} {out}", "deps": [dep, "step.py"], "params": params,
            "outs": [out]}


DVC_YAML = {"stages": {
    "prepare": stage("data", "raw", "data/manifests/train.jsonl", ["data"]),
    "rationales": stage("teacher", "data/manifests/train.jsonl", "data/rationales/rationales.jsonl", ["teacher"]),
    "sft": stage("sft", "data/rationales/rationales.jsonl", "data/models/sft", ["sft"]),
    "grpo": stage("grpo", "data/models/sft", "data/models/grpo", ["grpo"]),
}}


def run(root, *args):
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def commit(root, message):
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two committed runs that differ in exactly one param (sft.learning_rate): tags run-1 and run-2."""
    root = tmp_path_factory.mktemp("lineage")
    (root / "raw").mkdir()
    (root / "raw/a.txt").write_text("raw images")
    (root / "step.py").write_text(STEP)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    run(root, sys.executable, "-m", "dvc", "repro", "-q")
    commit(root, "run 1")
    run(root, "git", "tag", "run-1")
    changed = {**PARAMS, "sft": {**PARAMS["sft"], "learning_rate": 1.0e-3}}
    (root / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    run(root, sys.executable, "-m", "dvc", "repro", "-q")
    commit(root, "run 2")
    run(root, "git", "tag", "run-2")
    return root


def test_text_view_at_80_columns_puts_every_input_and_output_with_its_hash_on_its_own_line(project):
    report = audit(project / "data/models/grpo", project)
    text = render_text(report, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for name, entry in lock["stages"].items():
        for item in entry["deps"] + entry["outs"]:
            expected = f"{item['path']}  {item['md5'].removesuffix('.dir')[:8]}"
            assert expected in [line.strip() for line in lines], (name, expected, text)
    # The tree runs from the checkpoint back to the raw data.
    headings = [line for line in lines if line.split(":")[0].removeprefix("<- ") in lock["stages"]]
    assert [h.split(":")[0].removeprefix("<- ") for h in headings] == ["grpo", "sft", "rationales", "prepare"]
    # Params as key = value, one per line; a long list is folded under its key, never a Python repr.
    assert "    sft.learning_rate = 0.001" in lines
    assert "    grpo.beta = 0.001" in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("    data.synthetic.sources = [astronaut,"))
    assert lines[start + 1].startswith(" " * len("    data.synthetic.sources = ")) and "rocket]" in text
    assert "'" not in text.split("corpus")[0]  # no quotes from reprs in the tree
    # The teacher per task, the prompt version, the code commit and the packages are there.
    assert "iqa teacher: Qwen3-VL-32B at http://iqa-host:8000/v1" in text
    assert "iaa teacher: DeepSeek-R1-Distill-Qwen-32B at http://iaa-host:8000/v1" in text
    assert "prompt version: v1" in text
    assert "\ncode\n    commit " in text and "\npackages\n    " in text and "transformers " in text


def test_markdown_view_has_the_same_items(project):
    report = audit(project / "data/models/grpo", project)
    md = render_markdown(report)
    assert md.startswith("## Lineage of `data/models/grpo`")
    for s in report["stages"]:
        assert any(line.startswith("### ") and f"{s['stage']}:" in line for line in md.splitlines())
        for d in s["deps"]:
            assert f"- `{d['path']}` `{d['md5'].removesuffix('.dir')[:8]}`" in md
    assert "- `sft.learning_rate = 0.001`" in md


def test_diff_of_two_runs_names_the_one_param_and_the_stages_downstream(project):
    d = lineage_diff("run-1", "run-2", project)
    assert d["first_divergence"] == "sft"
    assert [s["stage"] for s in d["differs"]] == ["sft", "grpo"]
    assert d["same"] == ["prepare", "rationales"]
    sft, grpo = d["differs"]
    assert sft["params"] == [{"key": "sft.learning_rate", "a": 0.003, "b": 0.001}]
    assert grpo["params"] == []  # downstream: only its input (the SFT checkpoint) and output changed
    assert [c["key"] for c in grpo["inputs"]] == ["data/models/sft"]
    text = render_diff(d)
    assert "The chains diverge at stage sft." in text
    assert "sft.learning_rate: 0.003 -> 0.001" in text and "grpo: differs  (downstream)" in text
    assert "same: prepare, rationales" in text


def test_diff_of_a_checkpoint_folder_and_a_revision_and_of_identical_chains(project):
    d = lineage_diff("data/models/grpo", "run-1", project)  # the working tree holds run 2
    assert d["first_divergence"] == "sft" and d["a"].endswith("(working tree)")
    # Both lineage.json files are readable (run 1's from DVC's cache): same packages, and each side's commit.
    assert d["lineage_json"] == {"a": True, "b": True} and d["packages"] == []
    same = lineage_diff("run-2", "data/models/grpo", project)
    assert same["first_divergence"] is None and same["differs"] == []
    assert "The chains are the same" in render_diff(same)


def test_diff_of_an_unknown_name_is_one_clear_error(project):
    with pytest.raises(FileNotFoundError, match="'nope': not a checkpoint folder"):
        lineage_diff("nope", "run-1", project)


def test_cli_renders_text_md_json_and_diff(project):
    cli = [sys.executable, "-m", "tatar.cli", "lineage"]
    assert "<- sft: SFT checkpoint" in run(project, *cli, "data/models/grpo", "--width", "80")
    assert run(project, *cli, "data/models/grpo", "--format", "md").startswith("## Lineage")
    assert json.loads(run(project, *cli, "data/models/grpo", "--json"))["stage"] == "grpo"
    out = run(project, *cli, "diff", "run-1", "run-2")
    assert "sft.learning_rate: 0.003 -> 0.001" in out


def test_teachers_shared_and_per_task():
    assert teachers({"teacher_model": "m", "teacher_base_url": "u"}) == {"iqa": "m at u", "iaa": "m at u"}
    assert teachers({"teacher_model": "m", "teacher_base_url": "u",
                     "teachers": {"iaa": {"model": "r1", "base_url": "v"}}})["iaa"] == "r1 at v"
