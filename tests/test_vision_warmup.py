"""sft.vision_warmup and sft.freeze_vision (tatar.training.vision) on the tiny model and a fixture corpus."""

import shutil

import pytest
import torch
from sft_fixtures import write_corpus, write_test_manifests

from tatar.config import Params, VisionWarmupConfig
from tatar.errors import ConfigValueError
from tatar.modeling import BASE_DIR, load_from_config
from tatar.training import sft
from tatar.training.vision import freeze_vision, vision_tower, warm_up_vision


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp_path / "data/models/base")
    records = write_corpus(tmp_path, n_per_task=12)
    write_test_manifests(tmp_path, n_per_task=4)
    monkeypatch.chdir(tmp_path)
    return records


def tower_state(model):
    return {k: v.clone() for k, v in vision_tower(model).state_dict().items()}


@pytest.mark.slow
def test_warm_up_fits_the_tower_to_iqa_mos_and_is_seeded(project):
    from pathlib import Path

    import numpy as np
    from PIL import Image

    for r in project:  # fixture scores rise with the index: give the IQA images a brightness that rises alike
        if r.task == "iqa":
            level = int(40 + 2 * r.score_100)
            noise = np.random.default_rng(len(r.id)).integers(-20, 20, (112, 112, 3))
            Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8)).save(Path(r.root) / r.image)
    model, processor = load_from_config(BASE_DIR, Params().model)
    before = tower_state(model)
    llm_before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    cfg = VisionWarmupConfig(steps=60, learning_rate=3e-3, batch_size=8)
    facts = warm_up_vision(model, processor, project, cfg, seed=0)
    assert facts["images"] == 12 and facts["steps"] == 60  # IQA records only
    assert facts["train_srcc"] > 0.9  # brightness -> score, learned through the tower
    after = tower_state(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(v, model.model.language_model.state_dict()[k]) for k, v in llm_before.items())
    again, processor = load_from_config(BASE_DIR, Params().model)
    warm_up_vision(again, processor, project, cfg, seed=0)
    assert all(torch.allclose(after[k], v) for k, v in tower_state(again).items())  # same seed, same tower


def test_warm_up_without_iqa_records_is_a_clear_error(project):
    model, processor = load_from_config(BASE_DIR, Params().model)
    with pytest.raises(ConfigValueError, match="IQA training records"):
        warm_up_vision(model, processor, [r for r in project if r.task == "iaa"], VisionWarmupConfig(steps=5), 0)


def test_a_model_without_a_known_tower_is_named():
    with pytest.raises(ConfigValueError, match="Linear has no vision tower"):
        vision_tower(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_sft_with_a_frozen_tower_trains_the_language_model_only(project):
    model, _ = load_from_config(BASE_DIR, Params().model)
    assert freeze_vision(model) == sum(p.numel() for p in vision_tower(model).parameters()) > 0
    base_tower, base_llm = tower_state(model), model.model.language_model.state_dict()
    p = Params.model_validate({"sft": {"epochs": 2, "learning_rate": 5e-3, "per_device_batch_size": 8,
                                       "save_steps": 1000, "check_samples": 0, "freeze_vision": True,
                                       "vision_warmup": {"steps": 20}}})
    sft.run(p)
    trained, _ = load_from_config(sft.OUT_DIR, p.model)
    warmed, processor = load_from_config(BASE_DIR, p.model)
    warm_up_vision(warmed, processor, project, p.sft.vision_warmup, p.sft.seed)  # what sft did before training
    assert all(torch.allclose(v, tower_state(trained)[k]) for k, v in tower_state(warmed).items())
    assert any(not torch.equal(base_tower[k], v) for k, v in tower_state(trained).items())  # warmed, then fixed
    assert any(not torch.equal(base_llm[k], v) for k, v in trained.model.language_model.state_dict().items())
    card = (sft.OUT_DIR / "README.md").read_text()
    assert "warmed up on IQA MOS (20 steps" in card and "frozen through SFT" in card
