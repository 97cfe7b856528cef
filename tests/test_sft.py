"""SFT data: asymmetric thought dropout, task interleaving, and the assistant-only loss mask."""

import itertools
import random

import pytest
import torch

from tatar.config import SFTConfig, ThinkDropoutConfig
from tatar.parsing import format_target, parse_answer, think_words
from tatar.records import RationaleRecord, TeacherIdentity
from tatar.training.common import incomplete_checkpoints, last_checkpoint, run_dir
from tatar.training.sft import build_examples, dropout_summary, step_tasks, trainer_args

TEACHER = TeacherIdentity(model="t", prompt_version="v1", temperature=0.0, top_p=1.0, max_tokens=10)


def record(task, i, think="A sharp image with clean edges and no visible noise at all."):
    score = i % 100 + 0.25
    return RationaleRecord(id=f"{task}/{i}", task=task, dataset="d", image=f"{i}.png", root=".", score_100=score,
                           teacher=TEACHER, raw=think, think=think, answer=f"{score:.2f}",
                           think_words=len(think.split()), cache_key=str(i))


def corpus(n_iqa, n_iaa):
    return [record("iqa", i) for i in range(n_iqa)] + [record("iaa", i) for i in range(n_iaa)]


def test_asymmetric_dropout_rates_on_a_large_sample():
    examples = build_examples(corpus(2000, 2000), SFTConfig(epochs=1, seed=3))
    iqa = [e for e in examples if e.record.task == "iqa"]
    iaa = [e for e in examples if e.record.task == "iaa"]
    dropped = sum(e.think_dropped for e in iqa) / len(iqa)
    assert abs(dropped - 0.9) < 0.03
    assert not any(e.think_dropped for e in iaa)
    assert all(e.target == e.record.text for e in iaa)  # IAA targets untouched
    for e in iqa:
        if e.think_dropped:  # answer only, same score
            assert e.target == format_target(None, float(e.record.answer)) and "<think>" not in e.target
            assert parse_answer(e.target) == float(e.record.answer)
        else:
            assert e.target == e.record.text and think_words(e.target) > 0
    assert dropout_summary(examples)["iaa"]["think_dropped"] == 0.0


def test_dropout_rates_follow_params():
    cfg = SFTConfig(epochs=1, think_dropout=ThinkDropoutConfig(iqa=0.2, iaa=0.5))
    summary = dropout_summary(build_examples(corpus(1500, 1500), cfg))
    assert abs(summary["iqa"]["think_dropped"] - 0.2) < 0.04
    assert abs(summary["iaa"]["think_dropped"] - 0.5) < 0.04


def test_tasks_interleave_per_example_with_mixing_probability():
    examples = build_examples(corpus(300, 100), SFTConfig(epochs=3, p_iqa=0.7, batch_by_task=False))
    tasks = [e.record.task for e in examples]
    assert len(tasks) == 1200
    assert abs(tasks.count("iqa") / len(tasks) - 0.7) < 0.04
    switches = sum(a != b for a, b in itertools.pairwise(tasks))
    assert switches > 300  # interleaved, not two blocks


def test_each_micro_batch_holds_one_task_and_batches_interleave():
    cfg = SFTConfig(epochs=6, p_iqa=0.7, per_device_batch_size=8, batch_by_task=True)
    tasks = [e.record.task for e in build_examples(corpus(300, 100), cfg)]
    batches = [set(tasks[i:i + 8]) for i in range(0, len(tasks), 8)]
    assert all(len(b) == 1 for b in batches)
    batch_tasks = [b.pop() for b in batches]
    assert abs(batch_tasks.count("iqa") / len(batch_tasks) - 0.7) < 0.08
    assert sum(a != b for a, b in itertools.pairwise(batch_tasks)) > 60  # interleaved batches, not two blocks


def test_gradient_accumulation_pairs_an_iqa_and_an_iaa_micro_batch_per_step():
    cfg = SFTConfig(epochs=4, p_iqa=0.5, per_device_batch_size=4, gradient_accumulation_steps=2, batch_by_task=True)
    tasks = [e.record.task for e in build_examples(corpus(300, 100), cfg)]
    steps = [tasks[i:i + 8] for i in range(0, len(tasks) - 7, 8)]
    assert all(sorted({*s[:4]} | {*s[4:]}) == ["iaa", "iqa"] and len({*s[:4]}) == len({*s[4:]}) == 1 for s in steps)
    assert {tuple(s[::4]) for s in steps} == {("iqa", "iaa"), ("iaa", "iqa")}  # order within a step is drawn


def test_step_tasks_keeps_the_share_with_random_rounding():
    rng = random.Random(0)
    assert step_tasks(rng, 1.0, 3) == ["iqa"] * 3 and step_tasks(rng, 0.0, 2) == ["iaa"] * 2
    drawn = [t for _ in range(2000) for t in step_tasks(rng, 0.7, 2)]
    assert abs(drawn.count("iqa") / len(drawn) - 0.7) < 0.02
    assert all(sorted(step_tasks(rng, 0.7, 2)) in (["iqa", "iqa"], ["iaa", "iqa"]) for _ in range(200))


def test_stream_is_seeded_and_covers_each_pass():
    cfg = SFTConfig(epochs=2, seed=1)
    records = corpus(50, 0)
    first = [(e.record.id, e.target) for e in build_examples(records, cfg)]
    assert first == [(e.record.id, e.target) for e in build_examples(records, cfg)]
    assert first != [(e.record.id, e.target) for e in build_examples(records, cfg.model_copy(update={"seed": 2}))]
    ids = [i for i, _ in first]
    assert sorted(ids[:50]) == sorted(r.id for r in records) == sorted(ids[50:])  # one task: exact passes


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="no records"):
        build_examples([], SFTConfig())


def test_trainer_args_follow_the_params(tmp_path):
    args = trainer_args(SFTConfig(learning_rate=1e-3, weight_decay=0.05, warmup=0.1, seed=7), tmp_path)
    assert (args.learning_rate, args.weight_decay, args.warmup_steps, args.seed) == (1e-3, 0.05, 0.1, 7)
    assert trainer_args(SFTConfig(), tmp_path).weight_decay == 0.0  # transformers' default unless set


def test_run_dir_key_and_last_complete_checkpoint(tmp_path):
    assert run_dir("sft", {"a": 1}) == run_dir("sft", {"a": 1}) != run_dir("sft", {"a": 2})
    for step, state in ((5, '{"global_step": 5}'), (10, '{"global_step": 10}'), (15, None), (20, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"w")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    # 15 was killed before its state was written, 20 while writing it (torn)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert [(p.name, why.split()[0]) for p, why in sorted(incomplete_checkpoints(tmp_path))] == [
        ("checkpoint-15", "no"), ("checkpoint-20", "trainer_state.json")]
    (tmp_path / "checkpoint-10" / "model.safetensors").unlink()  # a state without weights is not complete either
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-5")
    assert last_checkpoint(tmp_path / "missing") is None


def test_only_assistant_tokens_count_toward_the_loss(tiny_model_dir, tmp_path):
    """The collator the stage's SFTTrainer uses labels exactly the assistant target + end of turn."""
    from PIL import Image
    from trl import SFTTrainer

    from tatar.modeling import load_model_and_processor
    from tatar.training.sft import Example, to_dataset, trainer_args

    model, processor = load_model_and_processor(tiny_model_dir)
    images = []
    for i, color in enumerate(("red", "blue")):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64 + 32 * i, 64), color).save(images[-1])
    records = [record("iqa", 0).model_copy(update={"image": images[0].name, "root": str(tmp_path)}),
               record("iaa", 1).model_copy(update={"image": images[1].name, "root": str(tmp_path)})]
    examples = [Example(records[0], format_target(None, 12.25), True), Example(records[1], records[1].text, False)]
    dataset = to_dataset(examples)
    trainer = SFTTrainer(model=model, args=trainer_args(SFTConfig(), tmp_path / "run"), train_dataset=dataset,
                         processing_class=processor)
    batch = trainer.data_collator([dataset[0], dataset[1]])
    tokenizer = processor.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["input_ids"] == image_pad).any()
    assert (batch["labels"][batch["input_ids"] == image_pad] == -100).all()
    for row, example in enumerate(examples):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert tokenizer.decode(labelled) == example.target + "<|im_end|>\n"
    # The model's loss is the mean next-token cross-entropy over exactly those labelled positions.
    out = model(**batch)
    logits, labels = out.logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten()
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep].float(), labels[keep])
    assert torch.allclose(out.loss, expected, atol=1e-5)
