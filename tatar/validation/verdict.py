"""The judge's contract, shared by the judge (``judge``) and whoever answers judge prompts (the stand-in judge in
``tatar.standins.judge``): the marker that identifies a judge prompt, the scores per task and the verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from tatar.records import Task

JUDGE_MARKER = "You are the TATAR corpus judge."
SCORES: dict[str, tuple[str, ...]] = {
    "iqa": ("visual_fidelity", "technical_rigour", "score_consistency"),
    "iaa": ("attribute_coverage", "groundedness", "cohesion", "smoothness"),
}


@dataclass(frozen=True)
class Verdict:
    task: Task
    scores: dict[str, float]
    decision: Literal["keep", "reject"]
    issues: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({**self.scores, "decision": self.decision, "issues": self.issues})
