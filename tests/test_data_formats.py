"""Each training-set format on fixtures written in its published layout (tatar/data/formats/published.py cites
where each layout comes from), with generated placeholder images: counts, score_100 ranges, attribute texts,
split selection, path safety, and every kind of bad input as a one-line error or a quarantine record."""

import csv
import json

import numpy as np
import pytest
from openpyxl import Workbook
from PIL import Image

from tatar.config import TrainSetConfig
from tatar.data.checks import CONFLICTING_DUPLICATE, MALFORMED_ROW, OUTSIDE_ROOT, check_rows, run_checks
from tatar.data.formats import FORMATS, import_train_set, transform_warning
from tatar.data.formats.artimuse import ASPECTS
from tatar.data.formats.tables import SourceError
from tatar.records import ATTRIBUTES

N = 24  # rows per fixture


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, np.uint8)).save(path, format="PNG")


def checked(cfg):
    imported = import_train_set(cfg)
    result = check_rows(imported.rows)
    return result.records, imported.quarantined + result.quarantined, imported


def score_range(records):
    """(min, max) score_100, as approx pairs: records round score_100 to 4 decimals."""
    scores = [r.score_100 for r in records]
    return min(scores), max(scores)


def approx(lo, hi):
    return (pytest.approx(lo, abs=1e-3), pytest.approx(hi, abs=1e-3))


def write_csv(path, header, rows):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_every_config_format_has_a_reader():
    from typing import get_args

    assert set(get_args(TrainSetConfig.model_fields["format"].annotation)) == set(FORMATS)


# ------------------------------------------------------------------------------------------ KonIQ
@pytest.fixture
def koniq_release(tmp_path):
    """koniq10k_distributions_sets.csv (subpic/koniq metadata): MOS on 1-5, MOS_zscore on 0-100, set column."""
    images = tmp_path / "koniq10k/1024x768"
    rows = []
    for i in range(N):
        write_image(images / f"{1000 + i}.jpg", i)
        mos = 1.1 + 3.2 * i / (N - 1)
        zscore = 3.9 + 84.5 * i / (N - 1)
        split = "test" if i % 4 == 0 else ("validation" if i % 4 == 1 else "training")
        rows.append([f"{1000 + i}.jpg", 1, 2, 3, 4, 5, 15, round(mos, 4), 0.6, round(zscore, 4), split])
    path = tmp_path / "koniq10k/koniq10k_distributions_sets.csv"
    write_csv(path, ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore", "set"], rows)
    return path, images


def test_koniq_official_csv_mos_zscore_and_split_selection(koniq_release):
    path, images = koniq_release
    records, bad, imported = checked(TrainSetConfig(name="koniq", format="koniq", path=str(path),
                                                    images=str(images)))
    assert not bad
    assert len(records) == N - N // 4  # the official test rows are left out, and counted
    assert imported.not_selected == {"test": N // 4}
    lo, hi = score_range(records)
    assert 3.9 <= lo < 10 and 80 < hi <= 88.4  # MOS_zscore is already 0-100: the benchmark's transform
    assert transform_warning(TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images))) is None


def test_koniq_mos_on_1_to_5_and_every_split(koniq_release):
    path, images = koniq_release
    cfg = TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images), score_column="MOS",
                         splits=["training", "validation", "test"])
    records, bad, _ = checked(cfg)
    assert len(records) == N and not bad
    assert score_range(records) == approx(2.5, 82.5)  # (1.1-1)/4, (4.3-1)/4
    assert "not the transform of the KonIQ-10K test labels" in transform_warning(cfg)


def test_koniq_deqa_meta_with_the_release_folder_in_its_image_paths(tmp_path):
    """DeQA-Score metas name images as KONIQ/images/x.jpg; users declare images: .../KONIQ/images."""
    images = tmp_path / "data/KONIQ/images"
    meta = []
    for i in range(N):
        write_image(images / f"{i}.jpg", i)
        meta.append({"id": f"{i}.jpg", "image": f"KONIQ/images/{i}.jpg", "gt_score": 10 + 3 * i,
                     "gt_score_norm": 1 + 4 * i / (N - 1), "std": 0.5, "level_probs": [0.2] * 5})
    path = tmp_path / "train_koniq.json"
    path.write_text(json.dumps(meta))
    cfg = TrainSetConfig(name="koniq", format="koniq", path=str(path), images=str(images))
    records, bad, _ = checked(cfg)
    assert not bad and len(records) == N
    assert records[3].image == "3.jpg" and records[3].id == "koniq/KONIQ/images/3.jpg"
    assert score_range(records) == (0.0, 100.0)  # gt_score_norm: a min-max rescale...
    assert "gt_score_norm" in transform_warning(cfg)  # ...which is not the benchmark's transform


# ------------------------------------------------------------------------------------------- SPAQ
def test_spaq_xlsx_and_its_csv_export(tmp_path):
    images = tmp_path / "SPAQ/TestImage"
    book = Workbook()
    sheet = book.active
    sheet.append(["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"])
    rows = []
    for i in range(N):
        write_image(images / f"{i + 1:05d}.jpg", i)
        row = [f"{i + 1:05d}.jpg", 4.0 + 3.8 * i, 50, 50, 50, 50, 50]
        sheet.append(row)
        rows.append(row)
    xlsx = tmp_path / "SPAQ/annotations/MOS and Image attribute scores.xlsx"
    xlsx.parent.mkdir(parents=True)
    book.save(xlsx)
    records, bad, _ = checked(TrainSetConfig(name="spaq", format="spaq", path=str(xlsx), images=str(images)))
    assert not bad and len(records) == N
    assert score_range(records) == approx(4.0, 4.0 + 3.8 * (N - 1))
    export = tmp_path / "spaq.csv"
    write_csv(export, ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"], rows)
    again, _, _ = checked(TrainSetConfig(name="spaq", format="spaq", path=str(export), images=str(images)))
    assert [(r.image, r.score_100) for r in again] == [(r.image, r.score_100) for r in records]


# ------------------------------------------------------------------------------------------ KADID
def test_kadid_dmos_csv(tmp_path):
    images = tmp_path / "kadid10k/images"
    rows = []
    for i in range(N):
        name = f"I{i // 5 + 1:02d}_{i % 5 + 1:02d}_01.png"
        write_image(images / name, i)
        rows.append([name, f"I{i // 5 + 1:02d}.png", 1.0 + 4 * i / (N - 1), 0.3])
    path = tmp_path / "kadid10k/dmos.csv"
    write_csv(path, ["dist_img", "ref_img", "dmos", "var"], rows)
    records, bad, _ = checked(TrainSetConfig(name="kadid", format="kadid", path=str(path), images=str(images)))
    assert not bad and len(records) == N
    assert score_range(records) == (0.0, 100.0)  # 1-5, higher is better as stored


# ------------------------------------------------------------------------------------------ PIPAL
def test_pipal_label_folder_needs_a_declared_elo_scale(tmp_path):
    images = tmp_path / "PIPAL/Train_Dist"
    labels = tmp_path / "PIPAL/Train_Label"
    labels.mkdir(parents=True)
    for ref in range(3):
        lines = []
        for d in range(N // 3):
            name = f"A{ref + 1:04d}_{d:02d}_00.bmp"
            write_image(images / name, ref * 10 + d)
            lines.append(f"{name},{1000 + 50 * d + ref:.4f}")
        (labels / f"A{ref + 1:04d}.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="needs a declared scale.*Elo"):
        import_train_set(TrainSetConfig(name="pipal", format="pipal", path=str(labels), images=str(images)))
    records, bad, _ = checked(TrainSetConfig(name="pipal", format="pipal", path=str(labels), images=str(images),
                                             scale=(800, 1900)))
    assert not bad and len(records) == N
    lo, hi = score_range(records)
    assert (lo, hi) == approx(100 * 200 / 1100, 100 * (200 + 350 + 2) / 1100)


# -------------------------------------------------------------------------------------------- AVA
def test_ava_txt_vote_counts_to_mean_on_1_to_10(tmp_path):
    images = tmp_path / "AVA/images"
    lines = []
    for i in range(N):
        image_id = 953000 + i
        write_image(images / f"{image_id}.jpg", i)
        votes = [0] * 10
        votes[i % 10] = 10 + i  # every vote on one value: mean = that value
        lines.append(f"{i + 1} {image_id} {' '.join(map(str, votes))} 1 21 1396")
    lines.append(" 99 953999 0 0 0 0 0 0 0 0 0 0 0 0 1")  # no votes at all
    lines.append("100 953998 1 2 three 0 0 0 0 0 0 0 0 0 1")
    path = tmp_path / "AVA/AVA.txt"
    path.write_text("\n".join(lines) + "\n")
    records, bad, _ = checked(TrainSetConfig(name="ava", format="ava", path=str(path), images=str(images)))
    assert len(records) == N
    assert score_range(records) == (0.0, 100.0)
    assert records[4].score == 5.0 and records[4].image == "953004.jpg"
    assert [(q.reason, q.detail.split(" (")[0]) for q in bad] == [
        (MALFORMED_ROW, "no votes"), (MALFORMED_ROW, "vote counts '1 2 three 0 0 0 0 0 0 0' are not integers")]
    assert "AVA.txt:26" in bad[1].detail


# ----------------------------------------------------------------------------------------- TAD66K
@pytest.mark.parametrize("header", [["image", "score"], ["img_name", "mean_score"]])
def test_tad66k_train_csv_read_by_position(tmp_path, header):
    images = tmp_path / "TAD66K/images"
    rows = []
    for i in range(N):
        write_image(images / f"hs_{i}.jpg", i)
        rows.append([f"hs_{i}.jpg", round(1.39 + 7.89 * i / (N - 1), 2)])
    path = tmp_path / "TAD66K/labels/merge/train.csv"
    path.parent.mkdir(parents=True)
    write_csv(path, header, rows)
    records, bad, _ = checked(TrainSetConfig(name="tad66k", format="tad66k", path=str(path), images=str(images)))
    assert not bad and len(records) == N
    assert score_range(records) == approx(100 * 0.39 / 9, 100 * 8.28 / 9)


# ------------------------------------------------------------------------------------- FLICKR-AES
def test_flickr_aes_image_score_txt_on_the_benchmark_transform(tmp_path):
    images = tmp_path / "FLICKR-AES/40K"
    lines = []
    for i in range(N):
        name = f"farm1_{i}_96361207_c200595017.jpg"
        write_image(images / name, i)
        lines.append(f" {name} {1 + 4 * i / (N - 1):.3f}")  # names may start with whitespace
    path = tmp_path / "FLICKR-AES/FLICKR-AES_image_score.txt"
    path.write_text("\n".join(lines) + "\n")
    records, bad, _ = checked(TrainSetConfig(name="flickr", format="flickr-aes", path=str(path), images=str(images)))
    assert not bad and len(records) == N
    # mean rating r on 1-5 -> 20 r, as the benchmark's r / 5 on 0-1
    assert score_range(records) == approx(20.0, 100.0)


# --------------------------------------------------------------------------------------- ArtiMuse
def aspect_prompt(aspect, misspelt=False):
    word = "aespect" if misspelt else "aspect"
    return f"<image>\nPlease evaluate the aesthetic quality of this image from the {word} of {aspect}."


@pytest.fixture
def artimuse_release(tmp_path):
    """score/train.json ({image, gt_score} on 0-10) and text/train.jsonl (one conversation per image and aspect)."""
    images = tmp_path / "ArtiMuse-10K/images"
    scores, lines = [], []
    for i in range(N):
        name = f"{i}_{100 + i}.jpg"
        write_image(images / name, i)
        scores.append({"image": f"images/{name}", "gt_score": round(10 * i / (N - 1), 2)})
        for k, aspect in enumerate(ASPECTS):
            lines.append({"image": f"images/{name}", "conversations": [
                {"from": "human", "value": aspect_prompt(aspect, misspelt=k % 2 == 0)},
                {"from": "gpt", "value": f"{aspect} of image {i}: a considered remark."}]})
    score_file = tmp_path / "ArtiMuse-10K/score/train.json"
    text_file = tmp_path / "ArtiMuse-10K/text/train.jsonl"
    score_file.parent.mkdir(parents=True)
    text_file.parent.mkdir(parents=True)
    score_file.write_text(json.dumps(scores))
    text_file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return score_file, text_file, images.parent, scores, lines


def test_artimuse_score_json_joined_with_conversation_text(artimuse_release):
    score_file, text_file, root, _, _ = artimuse_release
    records, bad, _ = checked(TrainSetConfig(name="artimuse", format="artimuse", path=str(score_file),
                                             text=str(text_file), images=str(root)))
    assert not bad and len(records) == N
    assert score_range(records) == (0.0, 100.0)
    rec = records[5]
    assert list(rec.attributes) == list(ATTRIBUTES)
    assert rec.attributes["gestalt"] == "Overall Gestalt of image 5: a considered remark."
    assert rec.attributes["overall"] == "Overall Evaluation of image 5: a considered remark."
    assert rec.attributes["composition"].startswith("Composition & Structure")


def test_artimuse_merged_json_of_the_paper_code(artimuse_release, tmp_path):
    _, _, root, scores, lines = artimuse_release
    snake = {"Composition & Structure": "composition_structure", "Visual Elements": "visual_elements",
             "Technical Execution": "technical_execution", "Originality & Creativity": "originality_creativity",
             "Theme & Communication": "theme_communication", "Emotion & Viewer Response": "emotion_viewer_response",
             "Overall Gestalt": "overall_gestalt", "Overall Evaluation": "overall_evaluation"}
    merged = [{**s, "aesthetic_attributes": {key: f"{key} text {i}" for key in snake.values()}}
              for i, s in enumerate(scores)]
    del merged[2]["aesthetic_attributes"]["overall_gestalt"]
    path = tmp_path / "train.with_attrs.json"
    path.write_text(json.dumps(merged))
    records, bad, _ = checked(TrainSetConfig(name="artimuse", format="artimuse", path=str(path), images=str(root)))
    assert len(records) == N - 1
    assert records[0].attributes["gestalt"] == "overall_gestalt text 0"
    assert [(q.id, q.reason) for q in bad] == [("artimuse/images/2_102.jpg", MALFORMED_ROW)]
    assert "missing attribute texts: gestalt" in bad[0].detail and "train.with_attrs.json[2]" in bad[0].detail


def test_artimuse_conversation_jsonl_alone_and_its_bad_lines(artimuse_release, tmp_path):
    _, _, root, scores, lines = artimuse_release
    score_of = {s["image"]: s["gt_score"] for s in scores}
    lines = [{**line, "gt_score": score_of[line["image"]]} for line in lines]
    lines[3]["conversations"][0]["value"] = "<image>\nPlease evaluate this image from the aspect of Lighting."
    path = tmp_path / "conversations.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    records, bad, _ = checked(TrainSetConfig(name="artimuse", format="artimuse", path=str(path), images=str(root)))
    assert len(records) == N - 1  # image 0 lost its 4th aspect
    reasons = sorted(q.detail.split(" (")[0] for q in bad)
    assert any("unknown aspect 'Lighting'" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    assert any("missing attribute texts: technical_execution" in r for r in reasons)
    assert all(q.reason == MALFORMED_ROW for q in bad)


def test_artimuse_text_without_a_score_row_is_quarantined(artimuse_release):
    score_file, text_file, root, scores, _ = artimuse_release
    score_file.write_text(json.dumps(scores[1:]))
    records, bad, _ = checked(TrainSetConfig(name="artimuse", format="artimuse", path=str(score_file),
                                             text=str(text_file), images=str(root)))
    assert len(records) == N - 1
    assert [q.detail.split(" (")[0] for q in bad] == [
        "aspect texts for images/0_100.jpg but no row for it in train.json"]


# ------------------------------------------------------------------------------ paths and duplicates
def test_paths_leaving_the_images_folder_are_quarantined_unless_allowed(tmp_path):
    images = tmp_path / "imgs"
    write_image(images / "in.png", 1)
    write_image(tmp_path / "secret.png", 2)
    path = tmp_path / "labels.csv"
    write_csv(path, ["image", "score"], [["in.png", 3], ["../secret.png", 3], [str(tmp_path / "secret.png"), 3],
                                         ["sub/../in.png", 3]])
    cfg = TrainSetConfig(name="g", format="generic", path=str(path), images=str(images), task="iqa", scale=(1, 5))
    records, bad, _ = checked(cfg)
    assert [r.image for r in records] == ["in.png", "in.png"]
    assert [q.reason for q in bad] == [OUTSIDE_ROOT, OUTSIDE_ROOT]
    assert "../secret.png leaves the declared images folder" in bad[0].detail and "labels.csv:3" in bad[0].detail
    allowed, bad, _ = checked(cfg.model_copy(update={"allow_outside_root": True}))
    assert not bad and len(allowed) == 4


def test_same_bytes_under_two_ids_with_different_labels_are_quarantined(tmp_path):
    images = tmp_path / "imgs"
    for name, value in [("a.png", 1), ("b.png", 1), ("c.png", 2), ("d.png", 2), ("e.png", 3)]:
        write_image(images / name, value)
    path = tmp_path / "labels.csv"
    write_csv(path, ["image", "score"], [["a.png", 2], ["b.png", 4], ["c.png", 3], ["d.png", 3], ["e.png", 5]])
    cfg = TrainSetConfig(name="g", format="generic", path=str(path), images=str(images), task="iqa", scale=(1, 5))
    result = run_checks(import_train_set(cfg).rows)
    assert sorted(r.image for r in result.records) == ["c.png", "d.png", "e.png"]  # equal labels: kept
    assert sorted((q.id, q.reason) for q in result.quarantined) == [("g/a.png", CONFLICTING_DUPLICATE),
                                                                     ("g/b.png", CONFLICTING_DUPLICATE)]


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("fmt", "name", "content", "message"), [
    ("generic", "labels.parquet", b"PAR1", r"labels.parquet: unsupported file type '.parquet'; expected"),
    ("kadid", "dmos.csv", b"image,mos\nx.png,3\n", r"dmos.csv: no column 'dist_img', 'dmos'; found columns 'image'"),
    ("spaq", "mos.xlsx", b"not a workbook", r"mos.xlsx: not a readable .xlsx workbook"),
    ("koniq", "meta.json", b"[{", r"meta.json:1: not valid JSON \("),
    ("ava", "AVA.csv", b"1,2\n", r"AVA.csv: the ava format reads AVA.txt"),
])
def test_unreadable_files_are_one_line_errors_naming_the_file(tmp_path, fmt, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    cfg = TrainSetConfig(name="x", format=fmt, path=str(path), images=str(tmp_path), task="iqa", scale=(1, 5))
    with pytest.raises(SourceError, match=message) as err:
        import_train_set(cfg)
    assert "\n" not in str(err.value)


def test_missing_file_names_the_file_and_what_the_format_reads(tmp_path):
    with pytest.raises(SourceError, match=r"AVA.txt: training set file not found .*format ava reads AVA.txt"):
        import_train_set(TrainSetConfig(name="ava", format="ava", path=str(tmp_path / "AVA.txt"), images="."))


def test_a_split_column_can_be_named_for_any_table_format(tmp_path):
    images = tmp_path / "kadid"
    rows = []
    for i in range(6):
        write_image(images / f"I01_{i:02d}_01.png", i)
        rows.append([f"I01_{i:02d}_01.png", "I01.png", 1 + 0.5 * i, 0.1, "test" if i < 2 else "train"])
    path = tmp_path / "dmos.csv"
    write_csv(path, ["dist_img", "ref_img", "dmos", "var", "fold"], rows)
    cfg = TrainSetConfig(name="kadid", format="kadid", path=str(path), images=str(images), split_column="fold",
                         splits=["train"])
    records, bad, imported = checked(cfg)
    assert len(records) == 4 and not bad and imported.not_selected == {"test": 2}
