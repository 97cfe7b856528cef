"""The eight ArtiMuse aesthetic aspects and the words that show a narrative touched each one.

An IAA rationale should deliberate over the attributes (visual elements, composition, gestalt, technical
execution, theme, emotion, originality, overall); a narrative that names three of them is a short opinion, not
the slow thinking the IAA side of TATAR trains. Patterns are word stems matched case-insensitively at a word
start, so "compos" covers composition, composed and compositional.
"""

from __future__ import annotations

import re

from tatar.records import ATTRIBUTES

ASPECT_STEMS: dict[str, tuple[str, ...]] = {
    "visual_elements": ("visual element", "colou?r", "hue", "palette", "tone", "tonal", "light", "shadow",
                        "texture", "shape", "line", "contrast", "saturat", "brightness", "form"),
    "composition": ("compos", "fram", "balance", "rule of thirds", "symmetr", "leading line", "placement",
                    "perspective", "negative space", "layout", "arrangement", "foreground", "background", "crop"),
    "gestalt": ("gestalt", "unity", "unified", "harmon", "cohesi", "coheren", "figure-ground", "figure and ground",
                "proximity", "continuity", "closure", "grouping", "as a whole", "whole", "rhythm"),
    "technical_execution": ("technical", "execution", "sharp", "focus", "exposure", "exposed", "noise", "grain",
                            "detail", "depth of field", "blur", "clarity", "resolution", "artifact", "artefact"),
    "theme": ("theme", "thematic", "subject", "story", "storytell", "narrative", "concept", "message",
              "meaning", "topic", "motif"),
    "emotion": ("emotion", "mood", "feel", "atmospher", "evok", "calm", "seren", "joy", "melanchol", "tension",
                "nostalg", "warmth", "intimate", "dramatic", "tranquil"),
    "originality": ("original", "unique", "creativ", "novel", "fresh", "distinctive", "unusual", "clich",
                    "conventional", "innovat", "inventive", "familiar", "striking"),
    "overall": ("overall", "in sum", "altogether", "ultimately", "in conclusion", "taken together", "on balance",
                "all in all", "in the end", "final"),
}
assert tuple(ASPECT_STEMS) == ATTRIBUTES, "aspects must follow tatar.records.ATTRIBUTES"

_ASPECT_RES = {
    aspect: re.compile(r"\b(?:" + "|".join(stems) + r")", re.IGNORECASE) for aspect, stems in ASPECT_STEMS.items()
}


def aspects_touched(text: str) -> list[str]:
    """The aspects (in ATTRIBUTES order) that ``text`` mentions at least once."""
    return [aspect for aspect, pattern in _ASPECT_RES.items() if pattern.search(text)]
