"""The real engines on this machine's CPU, 2 processes each, as `launch` in params.yaml starts them: DeepSpeed ZeRO-3
and ZeRO-2 (DeepSpeed's CPU accelerator, gloo), DDP, and the stage's own process, through `tatar run` (Prefect + DVC)
and `tatar stage`. Each ends in a checkpoint whose lineage names how it was trained and which `tatar lineage
--verify` accepts; a ZeRO-3 run killed mid-training resumes; one GRPO step at lr 1e-6 changes the weights of a model
asked for in bf16 in every mode (a full fine-tune trains fp32 weights; on bf16 weights the step is lost)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from test_end_to_end import ENV, REPO, TATAR, last_run, sh, tracked_files

pytestmark = pytest.mark.slow

SMALL = {  # a few images and steps: the engines are under test, not the model
    "data": {"synthetic": {"crops_per_source": 1, "iqa_per_source": 4, "iaa_variants_per_source": 2}},
    "model": {"torch_dtype": "bfloat16"},  # what a GPU user asks for; the precision check below
    "launch": {"config": "zero3", "num_processes": 2},
    # 40 steps teach the answer format (no <think>), so GRPO's rewards differ within a group and a step has a gradient.
    "sft": {"max_steps": 40, "save_steps": 10, "learning_rate": 3.0e-3, "warmup": 0.0,
            "think_dropout": {"iqa": 1.0, "iaa": 1.0}, "vision_warmup": {"steps": 0}, "freeze_vision": False,
            "heldout": {"eval_steps": 20, "batch_size": 16, "max_new_tokens": 16}, "check_samples": 2,
            "check_max_new_tokens": 16},
    # 4 images x 2 completions = one step of 4 completions on each of 2 processes: the ranking gathers across them.
    "grpo": {"max_steps": 1, "num_generations": 2, "prompts_per_generation": 4, "per_device_batch_size": 4,
             "heldout": {"eval_steps": 1, "batch_size": 16, "max_new_tokens": 16}},
}
LAYERS = ".layers."  # the language model's decoder weights: every one of them has a gradient in a GRPO step


def merge(into: dict, update: dict) -> dict:
    for key, value in update.items():
        into[key] = merge(into.get(key, {}), value) if isinstance(value, dict) else value
    return into


def edit_params(project: Path, update: dict, name: str = "params.yaml") -> Path:
    params = merge(yaml.safe_load((project / "params.yaml").read_text()), update)
    (project / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return project / name


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh copy of the repository with small params, its data stages run (through Prefect and DVC)."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text("")
    ENV.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"))
    dest = tmp_path_factory.mktemp("engines") / "project"
    for rel in tracked_files(REPO):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((REPO / rel).read_bytes())
    edit_params(dest, SMALL)
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "init", cwd=dest)
    sh(*TATAR, "run", "--until", "validate", cwd=dest)
    return dest


def lineage(project: Path, checkpoint: str) -> dict:
    return json.loads((project / checkpoint / "lineage.json").read_text())


def changed_share(trained: Path, start: Path) -> float:
    """Share of the decoder weights a run changed, compared in the dtype it saved (a bf16-trained model against the
    start rounded to bf16, so rounding alone is no change)."""
    from safetensors.torch import load_file

    after, before = load_file(trained / "model.safetensors"), load_file(start / "model.safetensors")
    keys = [k for k in after if LAYERS in k and "visual" not in k and after[k].ndim == 2]
    changed = sum((after[k] != before[k].to(after[k].dtype)).sum().item() for k in keys)
    return changed / sum(after[k].numel() for k in keys)


def kill_when_checkpointed(cmd: list[str], cwd: Path, step: int) -> str:
    """Run ``cmd`` in its own process group and SIGKILL the whole group (stage, launcher and its ranks) once the
    trainer's checkpoint-<step> is complete; returns the output so far."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(cwd.glob(f".tatar/runs/sft/*/checkpoint-{step}/trainer_state.json")):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    out = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-training (exit {proc.returncode}):\n{out[-3000:]}"
    return out


def launch_facts(project: Path, checkpoint: str) -> dict:
    return lineage(project, checkpoint)["training"]


def test_zero3_full_sft_killed_mid_training_resumes_then_lora_grpo(project):
    edit_params(project, {"grpo": {"lora": {"enabled": True}}})
    kill_when_checkpointed([*TATAR, "stage", "sft"], project, step=10)
    run = sh(*TATAR, "run", cwd=project)
    assert last_run(project) == {"prepare": "skipped", "rationales": "skipped", "base_model": "skipped",
                                 "validate": "skipped", "sft": "ran", "grpo": "ran", "evaluate": "ran"}
    assert "sft: resuming from .tatar/runs/sft/" in run.stdout
    for checkpoint, kind in (("data/models/sft", "full"), ("data/models/grpo", "merged LoRA")):
        facts = launch_facts(project, checkpoint)
        assert facts["checkpoint"] == kind
        assert facts["launch"] == {"config": "zero3", "engine": "DeepSpeed ZeRO-3", "zero_stage": 3, "processes": 2,
                                   "machines": 1, "device": "cpu", "mixed_precision": "no",
                                   "master_weights": "float32"}
        assert lineage(project, checkpoint)["params"]["launch"]["config"] == "zero3"
    sft = json.loads((project / "data/models/sft/sft_check.json").read_text())
    assert sft["training"]["steps"] == 40 and sft["training"]["resumed_from"].endswith(("checkpoint-10",
                                                                                       "checkpoint-20"))
    assert sft["training"]["heldout"]["evaluations"] == 2  # under ZeRO-3, the weights gathered for generation
    assert sft["generations"]["iqa"]["parse_rate"] > 0  # reloaded by the stage's own process, and it answers
    assert "DeepSpeed ZeRO-3, 2 process(es)" in (project / "data/models/grpo/README.md").read_text()
    shown = " ".join(sh(*TATAR, "lineage", "data/models/grpo", "--verify", cwd=project).stdout.split())
    assert "trained with: merged LoRA weights, DeepSpeed ZeRO-3, 2 process(es)" in shown
    assert not (project / "data/models/grpo.adapter").exists()  # merged outside the launch, then removed
    metrics = json.loads((project / "data/eval/metrics.json").read_text())
    assert metrics  # the merged GRPO checkpoint loads and scores


@pytest.mark.parametrize("mode", ["single_gpu", "ddp", "zero2", "zero3"])
def test_one_grpo_step_at_lr_1e_6_changes_a_bf16_models_weights(project, mode):
    params = edit_params(project, {"launch": {"config": mode, "num_processes": 1 if mode == "single_gpu" else 2},
                                   "grpo": {"lora": {"enabled": False}}}, name=f"params-{mode}.yaml")
    out = sh(*TATAR, "stage", "grpo", "--params", params.name, cwd=project).stdout
    engine = {"single_gpu": "single process", "ddp": "DDP", "zero2": "DeepSpeed ZeRO-2",
              "zero3": "DeepSpeed ZeRO-3"}[mode]
    assert f"grpo: trained with {engine}" in out
    assert launch_facts(project, "data/models/grpo")["launch"]["master_weights"] == "float32"
    assert changed_share(project / "data/models/grpo", project / "data/models/sft") > 0.9


def test_bf16_weights_would_lose_the_step(project, monkeypatch):
    """The control for the test above: the same step on weights left in bf16 changes almost none of them."""
    from tatar.config import load_params
    from tatar.training import common, grpo

    params = edit_params(project, {"launch": {"config": "single_gpu", "num_processes": 1},
                                   "grpo": {"lora": {"enabled": False}}}, name="params-bf16.yaml")
    monkeypatch.chdir(project)
    monkeypatch.setattr(common, "training_dtype", lambda model_dtype, *_: model_dtype)
    grpo.run(load_params(params))
    assert changed_share(project / "data/models/grpo", project / "data/models/sft") < 0.1


def test_zero2_lora_sft_and_full_grpo_through_tatar_run(project):
    edit_params(project, {"launch": {"config": "zero2"}, "sft": {"lora": {"enabled": True}},
                          "grpo": {"lora": {"enabled": False}}})
    sh(*TATAR, "run", "--until", "grpo", cwd=project)
    assert {k for k, v in last_run(project).items() if v == "ran"} == {"sft", "grpo"}
    for checkpoint, kind in (("data/models/sft", "merged LoRA"), ("data/models/grpo", "full")):
        facts = launch_facts(project, checkpoint)
        assert facts["checkpoint"] == kind and facts["launch"]["engine"] == "DeepSpeed ZeRO-2"
    assert not (project / "data/models/sft.adapter").exists()
    shown = " ".join(sh(*TATAR, "lineage", "data/models/grpo", "--verify", cwd=project).stdout.split())
    assert "trained with: full weights, DeepSpeed ZeRO-2" in shown
