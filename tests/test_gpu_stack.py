"""The GPU stack (requirements/gpu.txt, compiled by uv; `make check-lock` in CI keeps it current): it pins every
library the real path needs, within tatar's own declared ranges, and the training stages run with its older
transformers and huggingface_hub (laid over the dev environment by `make install`: .venv/gpu-overlay)."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements/gpu.txt"
OVERLAY = Path(sys.prefix) / "gpu-overlay"
STACK = ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "deepspeed", "vllm")


def pins() -> dict[str, str]:
    out = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.startswith(("#", " ")):
            name, version = line.split("==")
            out[name.strip().lower()] = version.split(";")[0].strip()
    return out


def test_the_lock_pins_the_stack_within_tatars_declared_ranges():
    pinned = pins()
    assert set(STACK) <= set(pinned), f"not pinned: {set(STACK) - set(pinned)}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["deepspeed"] + \
        project["optional-dependencies"]["vllm"]
    for req in map(Requirement, declared):
        name = req.name.lower()
        if name in pinned:
            assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} vs {req}"


@pytest.mark.slow
def test_the_training_stages_run_with_the_locks_transformers():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OVERLAY), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run([sys.executable, "-c", "import transformers, huggingface_hub; "
                            "print(transformers.__version__, huggingface_hub.__version__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert probe == [pins()["transformers"], pins()["huggingface-hub"]], "make install lays the lock's versions over"
    tests = ["tests/test_sft_stage.py", "tests/test_sft.py", "tests/test_grpo.py", "tests/test_launch.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=REPO,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
