"""Versioned teacher prompts: ``<version>/{system,iqa,iaa,iaa_image}.txt`` next to this file.

A version's texts are part of every cache key, so editing a prompt (or switching ``teacher.prompt_version``)
re-asks exactly the records that use it. Templates use ``${score}`` and ``${attributes}`` and must keep their
``TASK:`` / ``SCORE:`` / ``ATTRIBUTE name:`` lines, which the local reference teacher parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from tatar.parsing import format_score
from tatar.records import ATTRIBUTES, ManifestRecord

PROMPTS_DIR = Path(__file__).parent
TEMPLATES = ("system", "iqa", "iaa", "iaa_image")


@dataclass(frozen=True)
class Rendered:
    template: str  # which template: iqa, iaa (attribute notes, text only) or iaa_image (no notes: the image)
    system: str
    user: str
    with_image: bool


@dataclass(frozen=True)
class PromptSet:
    version: str
    texts: dict[str, str]

    def template_for(self, record: ManifestRecord) -> str:
        if record.task == "iqa":
            return "iqa"
        return "iaa" if record.attributes else "iaa_image"  # paper: the IAA teacher reads notes, not pixels

    def render(self, record: ManifestRecord) -> Rendered:
        name = self.template_for(record)
        user = Template(self.texts[name]).substitute(score=format_score(record.score_100),
                                                     attributes=attribute_lines(record.attributes or {}))
        return Rendered(template=name, system=self.texts["system"].strip(), user=user.strip(),
                        with_image=name != "iaa")


def attribute_lines(attributes: dict[str, str]) -> str:
    """One ``ATTRIBUTE name: text`` line per note, in the ArtiMuse order (unknown names after, as given)."""
    names = [a for a in ATTRIBUTES if a in attributes] + [a for a in attributes if a not in ATTRIBUTES]
    return "\n".join(f"ATTRIBUTE {name}: {' '.join(attributes[name].split())}" for name in names)


def load_prompts(version: str) -> PromptSet:
    folder = PROMPTS_DIR / version
    if not folder.is_dir():
        available = sorted(p.name for p in PROMPTS_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise FileNotFoundError(f"teacher.prompt_version {version!r}: no folder {folder} (available: {available})")
    missing = [name for name in TEMPLATES if not (folder / f"{name}.txt").exists()]
    if missing:
        raise FileNotFoundError(f"teacher prompts {folder}: missing {', '.join(f'{m}.txt' for m in missing)}")
    return PromptSet(version, {name: (folder / f"{name}.txt").read_text(encoding="utf-8") for name in TEMPLATES})
