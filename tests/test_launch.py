"""The launch section (tatar.training.launch): derived accelerate configs that accelerate itself reads, batch
arithmetic refused when params load, a hand launch refused, and the precision and LoRA choices made for training."""

import re

import pytest
import yaml

from tatar.config import ConfigError, LaunchConfig, LoraConfig, Params, parse_params
from tatar.errors import ConfigValueError
from tatar.training import common, launch


def _read_as_accelerate(tmp_path, config: dict):
    """The derived config as accelerate's own loader reads it (a typo in a key would fail here)."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config_from_file(str(path))


@pytest.mark.parametrize("name, engine", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED")])
def test_a_shipped_config_on_a_cpu_runs_there(tmp_path, name, engine):
    config = launch.accelerate_config(LaunchConfig(config=name, num_processes=2), bf16=True, cpu=True)
    loaded = _read_as_accelerate(tmp_path, config)
    assert loaded.distributed_type == engine  # MULTI_GPU: torchrun starts the processes, use_cpu keeps them there
    assert loaded.use_cpu and loaded.num_processes == 2 and loaded.mixed_precision == "no"
    if name.startswith("zero"):
        assert loaded.deepspeed_config["zero_stage"] == int(name[-1])


def test_on_a_gpu_the_stage_precision_and_counts_reach_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv(launch.MACHINE_RANK_ENV, "1")
    cfg = LaunchConfig(config="zero3", num_processes=16, num_machines=2, main_process_ip="10.0.0.1",
                       main_process_port=29501)
    loaded = _read_as_accelerate(tmp_path, launch.accelerate_config(cfg, bf16=True, cpu=False))
    assert (loaded.mixed_precision, loaded.num_processes, loaded.num_machines) == ("bf16", 16, 2)
    assert (loaded.machine_rank, loaded.main_process_ip, loaded.main_process_port) == (1, "10.0.0.1", 29501)
    assert not loaded.use_cpu
    ddp = launch.accelerate_config(LaunchConfig(config="ddp", num_processes=2), bf16=False, cpu=False)
    assert ddp["mixed_precision"] == "no"


def test_a_users_own_config_file_is_read(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU", "num_processes": 8, "gpu_ids": "0,1"}))
    config = launch.accelerate_config(LaunchConfig(config=str(own), num_processes=2), bf16=False, cpu=False)
    assert config["gpu_ids"] == "0,1" and config["num_processes"] == 2


@pytest.mark.parametrize("cfg, message", [
    (LaunchConfig(config="zero4"), "launch.config = 'zero4': neither a shipped config (single_gpu, ddp, zero2, zero3)"),
    (LaunchConfig(config="single_gpu", num_processes=2),
     "launch.config = 'single_gpu' runs one process, not launch.num_processes = 2: use ddp, zero2 or zero3"),
])
def test_a_config_that_cannot_launch_is_one_line(cfg, message):
    with pytest.raises(ConfigValueError, match="^" + re.escape(message)):
        launch.accelerate_config(cfg, bf16=False, cpu=True)


def test_the_command_reruns_the_stage_with_the_params_this_process_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = Params.model_validate({"launch": {"config": "zero2", "num_processes": 2},
                                    "grpo": {"beta": 0.04, "per_device_batch_size": 4}})
    cmd = launch.command("grpo", params, bf16=False)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[-5:] == ["tatar.cli", "stage", "grpo", "--params", ".tatar/launch/grpo/params.yaml"]
    written = parse_params(yaml.safe_load((tmp_path / ".tatar/launch/grpo/params.yaml").read_text()))
    assert written == params


def test_a_hand_launch_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(launch.LaunchError, match="set launch.config and launch.num_processes in params.yaml"):
        launch.train("sft", Params(), tmp_path, bf16=False, fit=lambda: pytest.fail("trained"))


def test_in_process_training_returns_the_facts(tmp_path):
    facts = launch.train("sft", Params(), tmp_path, bf16=False, fit=lambda: {"steps": 3, "is_main_process": True})
    assert facts == {"steps": 3}


# ------------------------------------------------------------------------------------- batch arithmetic
def _load(**sections) -> Params:
    return parse_params(sections, source="params.yaml")


def test_the_generation_batch_must_fill_the_processes_batches():
    # The measurement: the default GRPO batch on 2 processes was a TRL traceback after the model loaded.
    with pytest.raises(ConfigError) as err:
        _load(launch={"config": "zero3", "num_processes": 2},
              grpo={"prompts_per_generation": 4, "num_generations": 4, "per_device_batch_size": 16})
    assert str(err.value) == (
        "params.yaml: grpo.prompts_per_generation x grpo.num_generations = 4 x 4 = 16 completions per generation "
        "batch must be a multiple of grpo.per_device_batch_size x launch.num_processes = 16 x 2 = 32")
    assert "\n" not in str(err.value)
    _load(launch={"config": "zero3", "num_processes": 2},
          grpo={"prompts_per_generation": 4, "num_generations": 4, "per_device_batch_size": 8})


@pytest.mark.parametrize("grpo, launch_, message", [
    ({"num_generations": 1, "per_device_batch_size": 4}, {}, "grpo.num_generations = 1: GRPO needs >= 2"),
    ({"prompts_per_generation": 2, "per_device_batch_size": 4}, {},
     "grpo.prompts_per_generation = 2: a generation batch must hold >= 2 IAA images for the ranking and >= 1 IQA"),
    ({"vllm_mode": "server"}, {}, "grpo.vllm_mode = server needs grpo.use_vllm = true"),
    ({"use_vllm": True, "vllm_tensor_parallel_size": 4}, {"config": "ddp", "num_processes": 2},
     "grpo.vllm_tensor_parallel_size = 4 must divide launch.num_processes = 2"),
    ({}, {"num_machines": 2, "num_processes": 2, "config": "ddp"},
     "launch.num_machines = 2 needs launch.main_process_ip"),
])
def test_batch_and_launch_settings_that_cannot_run_are_named(grpo, launch_, message):
    with pytest.raises(ConfigError, match=message):
        _load(grpo=grpo, launch=launch_)


def test_the_repository_params_and_the_paper_config_pass_the_checks():
    from tatar.config import load_params

    assert load_params("params.yaml").launch.in_process
    paper = load_params("configs/paper-qwen2.5-vl-7b.yaml")
    assert (paper.launch.config, paper.launch.num_processes) == ("zero3", 8)
    assert paper.sft.report_to == paper.grpo.report_to == "none"  # no logger the README's install lacks
    assert paper.sft.save_only_model and paper.grpo.save_only_model
    assert paper.grpo.vllm_max_model_length and paper.model.attn_implementation


# ------------------------------------------------------------------------------ precision, LoRA, trainer
def test_a_full_fine_tune_trains_fp32_weights_unless_deepspeed_keeps_masters(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert common.training_dtype("bfloat16", lora_enabled=False, bf16=True) == "float32"
    assert common.training_dtype("bfloat16", lora_enabled=True, bf16=True) == "bfloat16"  # PEFT's adapters are fp32
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert common.training_dtype("bfloat16", lora_enabled=False, bf16=True) == "bfloat16"
    assert common.training_dtype("bfloat16", lora_enabled=False, bf16=False) == "float32"


def test_the_cpu_switches_leave_deepspeed_on_and_name_gloo(monkeypatch, tmp_path):
    from tatar.config import SFTConfig

    monkeypatch.setattr(common, "cuda_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = common.shared_trainer_args(SFTConfig(), tmp_path)
    assert args["use_cpu"] and args["ddp_backend"] is None  # one process: no process group to start
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = common.shared_trainer_args(SFTConfig(), tmp_path)
    assert not args["use_cpu"] and args["ddp_backend"] == "gloo"  # use_cpu would switch DeepSpeed off


@pytest.mark.parametrize("vision", [False, True])
def test_lora_leaves_the_vision_tower_alone_unless_asked(tiny_model_dir, vision):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, common.peft_lora_config(LoraConfig(enabled=True, vision=vision)))
    adapted = [n for n, _ in peft_model.named_parameters() if "lora_A" in n]
    assert any("language_model" in n for n in adapted)
    assert any(".visual." in n for n in adapted) == vision
