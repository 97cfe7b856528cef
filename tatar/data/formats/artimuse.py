"""ArtiMuse-10K as released, in the three layouts its users hold.

The eight aspects of the release and the snake_case keys of the paper's merge script
(``merge_attrs.py`` of the TATAR code, found in the public code index: ``ATTR_MAP``, and the prompt prefix
"Please evaluate the aesthetic quality of this image from the aespect of ", sic) map one-to-one onto
``tatar.records.ATTRIBUTES``. Names are matched exactly (after case/punctuation folding), never by first word:
"Overall Gestalt" and "Overall Evaluation" are two different aspects.

Layouts:

1. merged JSON (the merge script's output ``train.with_attrs.json``): a list of
   ``{"image", "gt_score", "aesthetic_attributes": {"composition_structure": text, ...}}``;
2. per-aspect conversation JSONL (``text/train.jsonl``): one line per image and aspect,
   ``{"image", "conversations": [{"from": "human", "value": "...from the aspect of Overall Gestalt"},
   {"from": "gpt", "value": text}]}``, joined by image file name with a score file
   (``score/train.json``: ``[{"image", "gt_score"}]`` on 0-10) given as ``text:`` next to ``path:``;
3. a conversation JSONL alone whose lines also carry ``gt_score``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tatar.data.formats.tables import MalformedRow, Rows, SourceError, read_json_rows
from tatar.records import ATTRIBUTES

# Release name -> ATTRIBUTES name; the snake_case keys of the merge script fold to the same strings.
ASPECTS = {
    "Visual Elements": "visual_elements",
    "Composition & Structure": "composition",
    "Overall Gestalt": "gestalt",
    "Technical Execution": "technical_execution",
    "Theme & Communication": "theme",
    "Emotion & Viewer Response": "emotion",
    "Originality & Creativity": "originality",
    "Overall Evaluation": "overall",
}
ATTRIBUTE_CONTAINER = "aesthetic_attributes"
_ASPECT_IN_PROMPT = re.compile(r"from\s+the\s+a[e]?spect\s+of\s+(.+?)\s*(?:[.?\n\r。？]|$)", re.IGNORECASE)


def fold(name: str) -> str:
    """"Composition & Structure" and "composition_structure" -> "composition_structure"."""
    return "_".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


_BY_FOLDED = {fold(release): ours for release, ours in ASPECTS.items()} | {a: a for a in ATTRIBUTES}


def attribute_key(source_key: str) -> str | None:
    """The ATTRIBUTES name of an aspect as the release or the merge script spells it; None if it is not one."""
    return _BY_FOLDED.get(fold(source_key))


def parse_attributes(texts: dict) -> dict[str, str]:
    """All eight texts in ATTRIBUTES order; MalformedRow naming the missing ones and any unknown key."""
    found: dict[str, str] = {}
    unknown = []
    for key, value in texts.items():
        name = attribute_key(str(key))
        if name is None:
            unknown.append(str(key))
        elif isinstance(value, str) and value.strip():
            found[name] = value.strip()
    missing = [a for a in ATTRIBUTES if a not in found]
    if missing:
        extra = f"; unknown aspect keys: {', '.join(unknown)}" if unknown else ""
        raise MalformedRow(f"missing attribute texts: {', '.join(missing)}{extra}")
    return {a: found[a] for a in ATTRIBUTES}


def aspect_of(prompt: str) -> str:
    """The aspect a human turn asks about ("...from the aspect of Overall Gestalt", also "aespect")."""
    match = _ASPECT_IN_PROMPT.search(prompt)
    if not match:
        raise MalformedRow(f"human turn names no aspect ('from the aspect of ...'): {prompt[:80]!r}")
    name = attribute_key(match.group(1))
    if name is None:
        raise MalformedRow(f"unknown aspect {match.group(1)!r}; expected one of: {', '.join(ASPECTS)}")
    return name


def _conversation_text(row: dict) -> tuple[str, str]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns[:2]):
        raise MalformedRow("no 'conversations' list with a human and a gpt turn")
    text = str(turns[1].get("value") or "").strip()
    if not text:
        raise MalformedRow("empty answer in the gpt turn")
    return aspect_of(str(turns[0].get("value") or "")), text


def _is_conversation_file(rows: Rows) -> bool:
    return any(isinstance(r, dict) and "conversations" in r for _, r in rows[:5])


def read_artimuse(path: Path, text: Path | None) -> Rows:
    """Rows ``{"image", "gt_score", "aesthetic_attributes"}`` in any of the three layouts, or MalformedRow.

    A conversation line that cannot be used is returned as its own MalformedRow (nothing dropped silently);
    an image whose conversations lack an aspect then fails as missing that attribute.
    """
    rows = read_json_rows(path)
    if text is None and not _is_conversation_file(rows):
        return rows  # layout 1: merged
    conversations = read_json_rows(text) if text is not None else rows
    if text is not None and not _is_conversation_file(conversations):
        raise SourceError(f"{text}: expected ArtiMuse per-aspect conversation lines ({{'image', 'conversations'}}); "
                          f"found none in the first lines")
    texts: dict[str, dict[str, str]] = {}
    scores: dict[str, object] = {}
    order: list[tuple[str, str]] = []  # (where, image) of first sight, for the conversation-only layout
    bad: Rows = []
    for where, row in conversations:
        try:
            if isinstance(row, MalformedRow):
                raise row
            if not isinstance(row, dict) or not row.get("image"):
                raise MalformedRow("conversation line without an 'image'")
            image = str(row["image"])
            aspect, answer = _conversation_text(row)
            key = os.path.basename(image)  # the merge script joins by file name
            if key not in texts:
                texts[key] = {}
                order.append((where, image))
            if aspect in texts[key]:
                raise MalformedRow(f"second {aspect} text for {key}")
            texts[key][aspect] = answer
            for score_key in ("gt_score", "score"):
                if score_key in row:
                    scores.setdefault(key, row[score_key])
        except MalformedRow as exc:
            bad.append((where, MalformedRow(f"{exc} ({text.name if text else path.name} conversation)")))
    if text is None:  # layout 3: scores on the conversation lines
        base = [(where, {"image": image, "gt_score": scores.get(os.path.basename(image))}) for where, image in order]
    else:
        base = rows
        scored = {os.path.basename(str(r["image"])) for _, r in rows if isinstance(r, dict) and r.get("image")}
        bad += [(where, MalformedRow(f"aspect texts for {image} but no row for it in {path.name}"))
                for where, image in order if os.path.basename(image) not in scored]
    out: Rows = list(bad)
    for where, row in base:
        if isinstance(row, dict) and row.get("image"):
            row = dict(row)
            row[ATTRIBUTE_CONTAINER] = texts.get(os.path.basename(str(row["image"])), {})
        out.append((where, row))
    return out
