"""tatar.Scorer and `tatar score` on a folder holding a corrupt file."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import tatar
import tatar.scorer
from tatar.cli import app
from tatar.inference import Completion


@pytest.fixture
def folder(tmp_path):
    """Three readable images (one in a subfolder), a corrupt JPEG, and a text file that is not an image."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for name, level in (("a.png", 40), ("b.jpg", 200), ("sub/c.png", 120)):
        Image.fromarray(np.full((40, 48, 3), level, dtype=np.uint8)).save(d / name)
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (d / "notes.txt").write_text("not an image")
    return d


def grey_level_complete(model, processor, images, task, batch_size=8, max_new_tokens=256, progress=False,
                        tens_probs=False):
    """A scripted model: the score is the grey level on 0-100; the darkest image gets an unparseable answer."""
    levels = [int(np.asarray(im)[0, 0, 0]) for im in images]
    return [Completion("<answer>dark</answer>" if lv < 50
                       else f"<think>Even grey, level {lv}.</think>\n<answer>{lv / 2.55:.2f}</answer>")
            for lv in levels]


def test_api_scores_readable_images_and_reports_the_corrupt_one(folder, tiny_model_dir):
    scorer = tatar.Scorer(tiny_model_dir, batch_size=2, max_new_tokens=6)
    results = scorer.score([folder, Image.new("RGB", (32, 32))], task="iaa")
    assert [r.image.replace(str(folder), "") for r in results] == [
        "/a.png", "/b.jpg", "/corrupt.jpg", "/sub/c.png", "<image 4>"]
    corrupt = results[2]
    assert corrupt.score is None and "corrupt.jpg: cannot read image" in corrupt.error
    assert all(r.error is None and r.task == "iaa" and isinstance(r.raw, str) for r in results if r is not corrupt)
    with pytest.raises(ValueError, match="task must be one of iqa, iaa"):
        scorer.score([folder], task="quality")


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_cli_prints_table_and_writes_results(folder, tiny_model_dir, tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(tatar.scorer, "complete", grey_level_complete)
    out = tmp_path / f"scores{suffix}"
    result = CliRunner().invoke(app, ["score", str(folder), "--task", "iqa", "--checkpoint", str(tiny_model_dir),
                                      "--output", str(out), "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "2 scored, 1 parse failure(s), 1 unreadable" in result.output and "corrupt.jpg" in result.output
    rows = json.loads(out.read_text()) if suffix == ".json" else list(csv.DictReader(out.open()))
    by_name = {r["image"].replace(str(folder) + "/", ""): r for r in rows}
    assert set(by_name) == {"a.png", "b.jpg", "corrupt.jpg", "sub/c.png"}
    assert float(by_name["b.jpg"]["score"]) == pytest.approx(200 / 2.55, abs=0.01)
    assert by_name["b.jpg"]["think"] == "Even grey, level 200." and int(by_name["b.jpg"]["think_words"]) == 4
    assert by_name["a.png"]["score"] in (None, "") and by_name["a.png"]["raw"] == "<answer>dark</answer>"
    assert "cannot read image" in by_name["corrupt.jpg"]["error"]


def test_cli_errors(folder, tiny_model_dir, tmp_path):
    runner = CliRunner()
    ckpt = ["--checkpoint", str(tiny_model_dir)]
    assert runner.invoke(app, ["score", str(folder), "--task", "vqa", *ckpt]).exit_code == 2
    assert runner.invoke(app, ["score", str(folder), "--output", "x.txt", *ckpt]).exit_code == 2
    missing = runner.invoke(app, ["score", str(folder), "--checkpoint", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and f"checkpoint: model '{tmp_path / 'nope'}': no such local folder" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["score", str(empty), *ckpt]).exit_code == 2
    only_corrupt = runner.invoke(app, ["score", str(folder / "corrupt.jpg"), *ckpt, "--max-new-tokens", "4"])
    assert only_corrupt.exit_code == 1 and "0 scored" in only_corrupt.output


def test_cli_rejects_an_unknown_readout(folder, tiny_model_dir):
    result = CliRunner().invoke(app, ["score", str(folder), "--checkpoint", str(tiny_model_dir), "--readout", "mean"])
    assert result.exit_code == 2 and "--readout must be one of greedy, expected" in result.output


def test_cli_readout_expected_asks_for_probabilities(folder, tiny_model_dir, monkeypatch):
    asked = []

    def spy(*args, tens_probs=False, **kwargs):
        asked.append(tens_probs)
        return grey_level_complete(*args, **kwargs)

    monkeypatch.setattr(tatar.scorer, "complete", spy)
    result = CliRunner().invoke(app, ["score", str(folder), "--checkpoint", str(tiny_model_dir), "--readout",
                                      "expected"])
    assert result.exit_code == 0, result.output
    assert asked and all(asked)
