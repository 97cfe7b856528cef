"""Stage grpo: task-mixed generation batches, the trainer set-up, and the stage end to end on the tiny model."""

import json
import shutil
from collections import Counter

import pytest
from sft_fixtures import make_image

from tatar.config import GRPOConfig, Params
from tatar.hashing import sha256_file
from tatar.lineage import write_lineage
from tatar.records import ManifestRecord, write_jsonl
from tatar.training import grpo


def blocks(order, size):
    return [order[i:i + size] for i in range(0, len(order), size)]


# ------------------------------------------------------------------------------------- mixed order
@pytest.mark.parametrize("n_iqa, n_iaa, block", [(30, 12, 4), (5, 20, 3), (7, 2, 8), (40, 40, 6)])
def test_mixed_order_blocks_hold_both_tasks(n_iqa, n_iaa, block):
    tasks = ["iqa"] * n_iqa + ["iaa"] * n_iaa
    order = grpo.mixed_order(tasks, block, seed=3)
    assert len(order) % block == 0 and set(order) == set(range(len(tasks)))  # complete blocks, nothing left out
    for chunk in blocks(order, block):
        counts = Counter(tasks[i] for i in chunk)
        assert counts["iaa"] >= 2 and counts["iqa"] >= 1
        assert len({i for i in chunk if tasks[i] == "iaa"}) >= 2  # two different IAA images, not one repeated
    assert grpo.mixed_order(tasks, block, seed=3) == order  # seeded


def test_mixed_order_follows_the_task_share():
    tasks = ["iqa"] * 60 + ["iaa"] * 20
    order = grpo.mixed_order(tasks, 8, seed=0)
    assert len(order) == 80  # 2 IAA + 6 IQA per block: nothing repeated
    assert all(Counter(tasks[i] for i in chunk)["iaa"] == 2 for chunk in blocks(order, 8))


def test_mixed_order_single_task_and_too_small_batches():
    single = grpo.mixed_order(["iqa"] * 5, 2)
    assert len(single) == 6 and set(single) == set(range(5))  # one record repeated to fill the last block
    with pytest.raises(ValueError, match="prompts_per_generation=2: a generation batch must hold >= 2 IAA"):
        grpo.mixed_order(["iqa", "iaa", "iaa"], 2)
    with pytest.raises(ValueError, match="prompts_per_generation=1"):
        grpo.mixed_order(["iaa"] * 4, 1)
    assert len(grpo.mixed_order(["iqa", "iaa"], 2, min_iaa=1)) == 2  # no ranking: one IAA image suffices


def test_trl_sampler_keeps_complete_mixed_groups():
    """TRL's RepeatSampler over our order (shuffle off) yields generation batches of P images x G completions,
    each with >= 2 IAA images whose groups are complete: what the ranking needs."""
    from trl.trainer.utils import RepeatSampler

    tasks = ["iqa"] * 17 + ["iaa"] * 9
    p, g = 4, 3
    order = grpo.mixed_order(tasks, p)
    sampler = RepeatSampler(order, mini_repeat_count=g, batch_size=p, repeat_count=1, shuffle=False)
    rows = [order[i] for i in sampler]
    for batch in blocks(rows, p * g):
        counts = Counter(batch)
        assert set(counts.values()) == {g}
        assert len({i for i in counts if tasks[i] == "iaa"}) >= 2


# ---------------------------------------------------------------------------------------- set-up
def write_manifest(root, n_iqa, n_iaa):
    rows = []
    for i, task in enumerate(["iqa"] * n_iqa + ["iaa"] * n_iaa):
        image = f"train/{task}_{i}.png"
        path = make_image(root / "data/synthetic" / image, seed=i)
        rows.append(ManifestRecord(id=f"fixture/{image}", image=image, root="data/synthetic", task=task,
                                   dataset="fixture", split="train", score=i, score_100=10.0 + 7 * i,
                                   sha256=sha256_file(path)))
    write_jsonl(root / grpo.MANIFEST, rows)
    return rows


def test_dataset_columns_and_missing_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = write_manifest(tmp_path, 3, 2)
    ds = grpo.build_dataset(records, [4, 0, 3])
    assert ds.column_names == ["prompt", "image", "task", "score_100", "id"]
    assert ds[0]["task"] == "iaa" and ds[0]["id"] == records[4].id and ds[0]["image"].size == (64, 64)
    assert ds[0]["prompt"][1]["content"][0]["type"] == "image"
    (tmp_path / records[1].path).unlink()
    with pytest.raises(FileNotFoundError, match="record fixture/train/iqa_1.png: image .* not found"):
        grpo.build_dataset(records, [0])


def test_manifest_keeps_rewarded_tasks_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path, 2, 3)
    assert {r.task for r in grpo.load_manifest(GRPOConfig(rewards_iaa={}))} == {"iqa"}
    assert len(grpo.load_manifest(GRPOConfig())) == 5


def test_trainer_args_from_params(tmp_path):
    cfg = GRPOConfig(num_generations=4, prompts_per_generation=6, per_device_batch_size=8, beta=0.04)
    args = grpo.trainer_args(cfg, tmp_path, [1.0, 0.5])
    assert args.generation_batch_size == 24 and args.steps_per_generation == 3
    assert (args.num_generations, args.beta, args.reward_weights, args.shuffle_dataset) == (4, 0.04, [1.0, 0.5], False)
    assert args.max_completion_length == 256 and args.learning_rate == 1e-6 and args.num_train_epochs == 3


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir):
    """A project folder with a train manifest and an "SFT checkpoint" (the tiny model with a lineage)."""
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path, 4, 3)
    shutil.copytree(tiny_model_dir, grpo.SFT_DIR)
    write_lineage(grpo.SFT_DIR, "sft", inputs={}, params={})
    return tmp_path


def tiny_params(**grpo_overrides) -> Params:
    cfg = {"num_generations": 2, "prompts_per_generation": 3, "per_device_batch_size": 6, "max_steps": 2,
           "max_completion_length": 12, "learning_rate": 1e-4, "save_steps": 1}
    return Params(grpo=GRPOConfig(**{**cfg, **grpo_overrides}))


@pytest.mark.slow
def test_stage_end_to_end(project):
    grpo.run(tiny_params())
    out = grpo.OUT_DIR
    assert {"config.json", "README.md", "lineage.json", grpo.LOG_FILE} <= {p.name for p in out.iterdir()}
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["stage"] == "grpo" and lineage["params"]["grpo"]["num_generations"] == 2
    assert lineage["started_from"]["lineage_sha256"] == sha256_file(grpo.SFT_DIR / "lineage.json")
    assert lineage["inputs"]["sft_checkpoint"]["sha256"]  # hashed like every input
    log = json.loads((out / grpo.LOG_FILE).read_text())
    assert log["steps"] == 2 and log["checkpoint"] == "full"
    logged = set().union(*log["log"])
    assert {"rewards/iqa/format/mean", "rewards/iqa/gaussian_score/mean", "rewards/iaa/format/mean",
            "rewards/iaa/thurstone_rank/mean", "iqa/parse_rate", "iaa/think_words"} <= logged
    card = (out / "README.md").read_text()
    assert "rewards/iaa/thurstone_rank/mean" in card and "data/models/sft" in card
    assert not any((project / ".tatar/runs/grpo").iterdir())  # finished runs leave no work dir

    from tatar.modeling import load_model_and_processor

    load_model_and_processor(out)  # a loadable HF checkpoint


@pytest.mark.slow
def test_stage_resumes_an_interrupted_run(project, monkeypatch):
    from tatar.training import common

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        grpo.run(tiny_params(max_steps=1))
    monkeypatch.undo()
    monkeypatch.chdir(project)
    grpo.run(tiny_params(max_steps=1))
    log = json.loads((grpo.OUT_DIR / grpo.LOG_FILE).read_text())
    assert log["resumed_from"].endswith("checkpoint-1")


@pytest.mark.slow
def test_stage_with_lora_saves_a_merged_checkpoint(project):
    from tatar.config import LoraConfig

    grpo.run(tiny_params(max_steps=1, lora=LoraConfig(enabled=True, r=4, alpha=8)))
    log = json.loads((grpo.OUT_DIR / grpo.LOG_FILE).read_text())
    assert log["checkpoint"] == "merged LoRA" and (grpo.OUT_DIR / "config.json").is_file()
    assert not (grpo.OUT_DIR / "adapter_config.json").exists()


def test_paper_code_knobs_reach_trl(tmp_path):
    cfg = GRPOConfig(num_generations=4, prompts_per_generation=4, per_device_batch_size=8, temperature=0.9,
                     loss_type="grpo", scale_rewards="none", gradient_accumulation_steps=2)
    args = grpo.trainer_args(cfg, tmp_path, [1.0])
    assert (args.temperature, args.loss_type, args.scale_rewards) == (0.9, "grpo", "none")
    assert args.gradient_accumulation_steps == 2
    default = grpo.trainer_args(GRPOConfig(), tmp_path, [1.0])
    assert (default.temperature, default.loss_type, default.scale_rewards) == (1.0, "dapo", "group")  # TRL's own


@pytest.mark.slow
def test_stage_with_a_frozen_vision_tower_trains_the_language_model_only(project, monkeypatch):
    from tatar.training import common
    from tatar.training.vision import vision_tower

    seen = {}

    def fit(trainer, *args):
        seen["tower"] = {p.requires_grad for p in vision_tower(trainer.model).parameters()}
        seen["llm"] = {p.requires_grad for p in trainer.model.model.language_model.parameters()}
        return real_fit(trainer, *args)

    real_fit = common.fit
    monkeypatch.setattr(common, "fit", fit)
    grpo.run(tiny_params(max_steps=1, freeze_vision=True))
    assert seen == {"tower": {False}, "llm": {True}}
