"""Stage sft end to end on a fixture corpus: checkpoint, contract check, lineage, resume, LoRA (slow)."""

import json
import shutil
from pathlib import Path

import pytest
from sft_fixtures import write_corpus, write_test_manifests

from tatar.config import Params
from tatar.modeling import ModelLoadError
from tatar.training import sft
from tatar.training.sft import CorpusError

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir):
    """A project folder with the tiny base model, a fixture corpus and synthetic test manifests."""
    shutil.copytree(tiny_model_dir, tmp_path / "data/models/base")
    write_corpus(tmp_path, n_per_task=24)
    write_test_manifests(tmp_path, n_per_task=8)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def params(**sft_overrides) -> Params:
    base = {"epochs": 15, "learning_rate": 5e-3, "per_device_batch_size": 8, "warmup": 0.05, "logging_steps": 10,
            "save_steps": 1000, "check_samples": 8, "check_max_new_tokens": 200}
    return Params.model_validate({"sft": base | sft_overrides})


def test_stage_trains_saves_checks_and_records_lineage(project, capsys):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    sft.run(params())
    out = project / "data/models/sft"
    AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)

    check = json.loads((out / "sft_check.json").read_text())
    gen = check["generations"]
    assert gen["iqa"]["parse_rate"] >= 0.95 and gen["iaa"]["parse_rate"] >= 0.95
    assert gen["iaa"]["mean_think_words"] > 40 > gen["iqa"]["mean_think_words"]  # thought dropout visible
    assert check["dropout"]["iaa"]["think_dropped"] == 0.0 and check["dropout"]["iqa"]["think_dropped"] > 0.7
    printed = capsys.readouterr().out
    assert "sft check iqa: parse rate" in printed and "sft check iaa: parse rate" in printed

    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["stage"] == "sft" and set(lineage["inputs"]) == {"corpus", "base_model"}
    assert all(len(i["sha256"]) == 64 for i in lineage["inputs"].values())
    assert lineage["params"]["sft"]["think_dropout"] == {"iqa": 0.9, "iaa": 0.0}
    assert "model.safetensors" in lineage["files"] and "README.md" in lineage["files"]
    card = (out / "README.md").read_text()
    assert "| weights | full |" in card and "parse rate" in card
    # who wrote the corpus, per task: in the lineage and on the card
    assert [t["records"] for t in lineage["training"]["teachers"]["iqa"]] == [24] and "| teachers | iqa: " in card
    assert not any(Path(".tatar/runs/sft").iterdir())  # finished runs leave no resumable state behind


def test_interrupted_run_resumes_from_last_checkpoint(project, monkeypatch):
    from trl import SFTTrainer

    real_step, calls = SFTTrainer.training_step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, *args, **kwargs)

    p = params(max_steps=4, save_steps=2, check_samples=0)
    monkeypatch.setattr(SFTTrainer, "training_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sft.run(p)
    [work] = list(Path(".tatar/runs/sft").iterdir())
    assert (work / "checkpoint-2").is_dir()

    monkeypatch.setattr(SFTTrainer, "training_step", real_step)
    sft.run(p)
    facts = json.loads(Path("data/models/sft/sft_check.json").read_text())["training"]
    assert facts["resumed_from"].endswith("checkpoint-2") and facts["steps"] == 4

    # A params change is a different run: it starts fresh instead of resuming.
    assert sft.run_dir_for(params(max_steps=4, save_steps=2, learning_rate=1e-3)) != work


@pytest.mark.parametrize("merge", [True, False])
def test_lora_checkpoint_merged_or_adapter(project, merge):
    from transformers import AutoModelForImageTextToText

    sft.run(params(max_steps=2, check_samples=2, check_max_new_tokens=8,
                   lora={"enabled": True, "r": 4, "alpha": 8, "merge": merge}))
    out = Path("data/models/sft")
    assert (out / "adapter_config.json").is_file() is not merge
    assert type(AutoModelForImageTextToText.from_pretrained(out)).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert ("merged LoRA" if merge else "LoRA adapter") in (out / "README.md").read_text()
    assert not Path("data/models/sft.adapter").exists()


def test_missing_corpus_and_base_are_clear_errors(project):
    Path("data/corpus/corpus.jsonl").unlink()
    with pytest.raises(CorpusError, match="no corpus"):
        sft.run(params())
    write_corpus(project, n_per_task=2)
    shutil.rmtree("data/models/base")
    with pytest.raises(ModelLoadError, match="no base model"):
        sft.run(params())


def test_accumulated_micro_batches_weigh_every_label_token_of_the_step_alike(project):
    """Qwen2.5-VL declares accepts_loss_kwargs False; without our override Trainer would average each micro-batch
    alone, and batch_by_task's short IQA micro-batch would weigh its tokens ~40x an IAA one's."""
    import torch

    from tatar.modeling import BASE_DIR, load_from_config

    p = params()
    examples = sft.build_examples(sft.load_corpus(), p.sft)[:4]
    for kind in ("plain", "tiled"):
        cfg = p.sft.model_copy(update={"lm_head": kind, "per_device_batch_size": 2, "gradient_accumulation_steps": 2})
        model, processor = load_from_config(BASE_DIR, p.model)
        trainer = sft.trainer_class(cfg)(model=model, args=sft.trainer_args(cfg, project / kind),
                                         train_dataset=sft.to_dataset(examples), processing_class=processor)
        def rows(trainer=trainer):  # fresh each time: TRL's collator fills the image placeholders it is given
            return [trainer.train_dataset[i] for i in range(4)]

        micro = [trainer._prepare_inputs(trainer.data_collator(rows()[i:i + 2])) for i in (0, 2)]
        n = trainer._get_num_items_in_batch(micro, torch.device("cpu"))
        assert n == sum(int((m["labels"][:, 1:] != -100).sum()) for m in micro)  # counted over the whole step
        whole = trainer.compute_loss(trainer.model, trainer._prepare_inputs(trainer.data_collator(rows()))).item()
        parts = sum(trainer.compute_loss(trainer.model, m, num_items_in_batch=n).item() for m in micro)
        assert parts == pytest.approx(whole, rel=1e-4)  # two micro-batches = one batch of four, token for token


def test_plain_loss_on_cpu_equals_trls_tiled_loss(project):
    """sft.lm_head auto takes the plain loss on a CPU (faster: `tatar bench lm-head`); same value as TRL's."""
    import torch
    from trl import SFTTrainer

    from tatar.modeling import BASE_DIR, load_from_config

    p = params()
    plain, tiled = sft.trainer_class(p.sft), sft.trainer_class(p.sft.model_copy(update={"lm_head": "tiled"}))
    assert plain.compute_loss is not SFTTrainer.compute_loss  # auto on a CPU: plain
    assert tiled.compute_loss is SFTTrainer.compute_loss and issubclass(plain, SFTTrainer)
    examples = sft.build_examples(sft.load_corpus(), p.sft)[:8]
    losses = {}
    for kind in ("plain", "tiled"):
        cfg = p.sft.model_copy(update={"lm_head": kind})
        model, processor = load_from_config(BASE_DIR, p.model)
        trainer = sft.trainer_class(cfg)(model=model, args=sft.trainer_args(cfg, project / kind),
                                         train_dataset=sft.to_dataset(examples), processing_class=processor)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])
        assert (batch["labels"][:, :20] == -100).all()  # the prompt carries no loss
        inputs = trainer._prepare_inputs(batch)
        losses[kind] = trainer.compute_loss(trainer.model, inputs).item()
        if kind == "plain":  # the head on labelled positions only: the model's own loss, also when GA counts tokens
            own = trainer.model(**inputs, use_cache=False)
            assert losses["plain"] == pytest.approx(own.loss.item(), rel=1e-5)
            n = int((inputs["labels"][:, 1:] != -100).sum())
            summed = trainer.compute_loss(trainer.model, inputs, num_items_in_batch=torch.tensor(2 * n)).item()
            assert summed == pytest.approx(own.loss.item() / 2, rel=1e-5)
            assert own.logits.shape[1] == inputs["labels"].shape[1]  # ... which projects every position
    assert losses["plain"] == pytest.approx(losses["tiled"], rel=1e-4)


def test_score_sigma_takes_the_plain_loss_and_softens_only_the_tens_digits(project):
    """sft.score_sigma needs the tens digits' logits, so it takes the plain loss even where lm_head says tiled;
    a vanishing sigma gives the one-hot loss back, a wide one changes it (the batch holds IQA answers)."""
    from trl import SFTTrainer

    from tatar.modeling import BASE_DIR, load_from_config

    p = params()
    soft = p.sft.model_copy(update={"lm_head": "tiled", "score_sigma": 8.0})
    assert sft.trainer_class(soft).compute_loss is not SFTTrainer.compute_loss
    examples = [e for e in sft.build_examples(sft.load_corpus(), p.sft) if e.record.task == "iqa"][:6]
    losses = {}
    for sigma in (0.0, 1e-4, 8.0):
        cfg = p.sft.model_copy(update={"score_sigma": sigma})
        model, processor = load_from_config(BASE_DIR, p.model)
        trainer = sft.trainer_class(cfg)(model=model, args=sft.trainer_args(cfg, project / str(sigma)),
                                         train_dataset=sft.to_dataset(examples), processing_class=processor)
        inputs = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(6)]))
        assert len(trainer.soft_scores.find(inputs["labels"][:, 1:])) == 6 if sigma else trainer.soft_scores is None
        losses[sigma] = trainer.compute_loss(trainer.model, inputs).item()
    assert losses[1e-4] == pytest.approx(losses[0.0], rel=1e-5)
    assert abs(losses[8.0] - losses[0.0]) > 1e-4  # the random model is near uniform: small, but not nothing
