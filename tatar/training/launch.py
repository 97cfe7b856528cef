"""How sft and grpo train: in the stage's own process, or under ``accelerate launch`` started by the stage itself.

``launch`` in params.yaml names an accelerate config (a shipped one, ``tatar/accelerate/<name>.yaml``, or a path)
and the process count. ``tatar stage sft`` (so ``tatar run`` and ``dvc repro``) then re-runs itself under
``accelerate launch``: the launched processes train and save the checkpoint, and the stage's own process, which
never joined a process group nor DeepSpeed, finishes it alone (LoRA merge, reload check, model card, lineage).

The launched config is derived per stage (``.tatar/launch/<stage>/accelerate.yaml``): the process counts come
from ``launch``, mixed precision from the stage's ``bf16``, and on a machine without a GPU it is made to run there
(the CPU, gloo, one process per slot), so a recipe tested on a laptop is the one that runs on the node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tatar.config import LaunchConfig, Params
from tatar.errors import ConfigValueError, TatarError

SHIPPED_DIR = Path(__file__).parents[1] / "accelerate"
SHIPPED = ("single_gpu", "ddp", "zero2", "zero3")
LAUNCH_DIR = Path(".tatar/launch")
LAUNCHED_ENV = "TATAR_LAUNCHED"  # set to the stage's name in the processes accelerate starts
MACHINE_RANK_ENV = "TATAR_MACHINE_RANK"  # per node, overriding launch.machine_rank
FACTS_FILE = "launched-facts.json"  # in the run's work dir: the main process's training facts, for the stage


class LaunchError(TatarError):
    """A launched training run failed, or a stage was started by a launcher that is not its own."""


def is_launched(stage: str) -> bool:
    """This process is one of those ``accelerate launch`` started for ``stage``."""
    return os.environ.get(LAUNCHED_ENV) == stage


def train(stage: str, params: Params, work_dir: Path, bf16: bool, fit: Callable[[], dict]) -> dict | None:
    """Run ``fit`` (train and save; returns the training facts and ``is_main_process``) where ``params.launch``
    says. Returns the main process's facts to the stage's own process, None to a launched one."""
    if is_launched(stage):
        die_with_launcher()
        facts = fit()
        if facts.pop("is_main_process"):
            (work_dir / FACTS_FILE).write_text(json.dumps(facts, default=str))
        return None
    if (world := os.environ.get("WORLD_SIZE")) and int(world) > 1 or "LOCAL_RANK" in os.environ:
        raise LaunchError(f"{stage}: started by a distributed launcher (WORLD_SIZE={world}); tatar starts "
                          f"`accelerate launch` itself: set launch.config and launch.num_processes in params.yaml "
                          f"and run `tatar stage {stage}`")
    if params.launch.in_process:
        facts = fit()
        facts.pop("is_main_process")
        return facts
    facts_file = work_dir / FACTS_FILE
    facts_file.unlink(missing_ok=True)
    cmd = command(stage, params, bf16)
    print(f"{stage}: {' '.join(cmd[2:])}", flush=True)
    code = subprocess.run(cmd, env={**os.environ, LAUNCHED_ENV: stage}).returncode
    if code:
        raise LaunchError(f"{stage}: accelerate launch exited with status {code} (its processes' output is above)")
    if machine_rank(params.launch):  # a node other than rank 0's: the main process trained there
        return None
    if not facts_file.is_file():
        raise LaunchError(f"{stage}: the launched processes exited without the main process's training facts "
                          f"({facts_file})")
    return json.loads(facts_file.read_text())


def machine_rank(launch: LaunchConfig) -> int:
    return int(os.environ.get(MACHINE_RANK_ENV, launch.machine_rank))


def die_with_launcher() -> None:
    """torchrun starts every rank in a session of its own, so a launcher killed outright (the OOM killer, a
    SIGKILLed job) would leave its ranks training on, writing into the work dir a retry resumes from. On Linux a
    rank is killed with its launcher instead (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the launcher died before the call above
        os._exit(1)


def command(stage: str, params: Params, bf16: bool) -> list[str]:
    """``accelerate launch`` of ``tatar stage <stage>`` with this run's params and derived config."""
    import torch

    folder = LAUNCH_DIR / stage
    folder.mkdir(parents=True, exist_ok=True)
    config = accelerate_config(params.launch, bf16, cpu=not torch.cuda.is_available())
    (folder / "accelerate.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    # The exact params this process holds (a test or a flow may hold params no file has), for the launched ones.
    (folder / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(folder / "accelerate.yaml"),
            "-m", "tatar.cli", "stage", stage, "--params", str(folder / "params.yaml")]


def accelerate_config(launch: LaunchConfig, bf16: bool, cpu: bool) -> dict:
    """The accelerate config ``launch.config`` names, with ``launch``'s counts and the stage's precision; on a CPU,
    the settings that make it start there: no mixed precision, and every multi-process run through torchrun
    (accelerate's CPU path starts one process unless MPI is set up) with gloo (``shared_trainer_args``)."""
    path = SHIPPED_DIR / f"{launch.config}.yaml" if launch.config in SHIPPED else Path(launch.config)
    if not path.is_file():
        raise ConfigValueError(f"launch.config = {launch.config!r}: neither a shipped config "
                               f"({', '.join(SHIPPED)}) nor an accelerate config file")
    config = yaml.safe_load(path.read_text()) or {}
    config.update(num_processes=launch.num_processes, num_machines=launch.num_machines,
                  machine_rank=machine_rank(launch), mixed_precision="bf16" if bf16 else "no")  # the stage's bf16
    config.update({k: v for k, v in (("main_process_ip", launch.main_process_ip),
                                     ("main_process_port", launch.main_process_port)) if v is not None})
    if config.get("distributed_type", "NO") == "NO" and launch.num_processes > 1:
        raise ConfigValueError(f"launch.config = {launch.config!r} runs one process, not launch.num_processes = "
                               f"{launch.num_processes}: use ddp, zero2 or zero3")
    if cpu:
        config.update(use_cpu=True, mixed_precision="no", gpu_ids="all")
        if config.get("distributed_type") == "MULTI_CPU":
            config["distributed_type"] = "MULTI_GPU"  # torchrun starts the processes; use_cpu keeps them on the CPU
    return config


def describe(trainer, launch: LaunchConfig) -> dict:
    """How the trainer ran, read from the trainer itself (lineage, model card, ``tatar lineage``)."""
    acc = trainer.accelerator
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None:
        engine = f"DeepSpeed ZeRO-{plugin.zero_stage}"
    else:
        engine = "DDP" if acc.num_processes > 1 else "single process"
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    dtype = str(trainable[0].dtype).removeprefix("torch.") if trainable else None
    masters = "float32" if plugin is not None and acc.mixed_precision in ("bf16", "fp16") else dtype
    return {"config": launch.config, "engine": engine, "zero_stage": plugin.zero_stage if plugin else None,
            "processes": acc.num_processes, "machines": launch.num_machines, "device": acc.device.type,
            "mixed_precision": acc.mixed_precision, "master_weights": masters}
