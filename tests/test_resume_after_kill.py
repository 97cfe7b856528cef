"""Crash-safe training resume: a real SFT run is SIGKILLed at three points and the rerun completes its planned steps.

The kill is a real ``SIGKILL`` of a child process running ``tatar.training.sft.run`` (nothing is flushed or
cleaned up); the rerun is the same stage in this process, as `tatar stage sft` or a Prefect retry would run it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sft_fixtures import write_corpus

from tatar.config import Params
from tatar.training import sft

pytestmark = pytest.mark.slow
PLANNED_STEPS = 4
SFT = {"max_steps": PLANNED_STEPS, "save_steps": 2, "per_device_batch_size": 2, "check_samples": 0,
       "logging_steps": 1, "learning_rate": 1e-3, "epochs": 10}

# The child: install one kill point, then run the stage. Each kill point is where a real crash would land.
CHILD = """
import json, os, signal, sys
from pathlib import Path
from transformers import Trainer, TrainerState
from trl import SFTTrainer
from tatar.config import Params
from tatar.training import sft

point = sys.argv[1]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if point == "during_step":  # the third step, after checkpoint-2 was saved
    real_step, calls = SFTTrainer.training_step, []
    def step(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            die()
        return real_step(self, *a, **k)
    SFTTrainer.training_step = step
elif point == "while_saving":  # half of checkpoint-4's trainer_state.json is on disk
    real_save = TrainerState.save_to_json
    def save(self, path):
        if "checkpoint-4" in str(path):
            with open(path, "w") as fh:
                fh.write(json.dumps({"global_step": self.global_step}, indent=2)[:12])
                fh.flush()
            die()
        return real_save(self, path)
    TrainerState.save_to_json = save
elif point == "after_saving":  # checkpoint-2 is complete, nothing after it ran
    real_checkpoint = Trainer._save_checkpoint
    def checkpoint(self, *a, **k):
        real_checkpoint(self, *a, **k)
        die()
    Trainer._save_checkpoint = checkpoint
sft.run(Params.model_validate({"sft": json.loads(sys.argv[2])}))
"""


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp_path / "data/models/base")
    write_corpus(tmp_path, n_per_task=4)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("point, resumed_from, discarded", [
    ("during_step", "checkpoint-2", None),
    ("while_saving", "checkpoint-2", "checkpoint-4"),
    ("after_saving", "checkpoint-2", None),
])
def test_rerun_after_sigkill_completes_the_planned_steps(project, capsys, point, resumed_from, discarded):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent),
                                                          os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, "-c", CHILD, point, json.dumps(SFT)], cwd=project, env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-3000:]  # really killed, not failed
    assert not (project / "data/models/sft/lineage.json").exists()
    [work] = list(Path(".tatar/runs/sft").iterdir())
    if discarded:
        with pytest.raises(ValueError):  # the kill really left a torn state file behind
            json.loads((work / discarded / "trainer_state.json").read_text())

    capsys.readouterr()
    sft.run(Params.model_validate({"sft": SFT}))
    printed = capsys.readouterr().out
    facts = json.loads(Path("data/models/sft/sft_check.json").read_text())["training"]
    assert facts["steps"] == PLANNED_STEPS
    assert facts["resumed_from"].endswith(resumed_from), printed
    if discarded:
        assert f"discarding {work / discarded}: trainer_state.json is torn" in printed
    assert (project / "data/models/sft/lineage.json").is_file()
