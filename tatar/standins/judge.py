"""The local reference teacher's judge: verdicts grounded in the same image measures as its rationales.

It plays the paper's VLM judge for the embedded default and for tests, so its checks are the ones a careful
reader would make, computed instead of looked at:

- IQA: each technical defect the rationale *claims* (not negated, with its intensity word) must be visible in
  the measured severities (``tatar.standins.measures``); visual_fidelity is the share of checkable claims the
  pixels support, less a point for a severe defect left unmentioned, so heavy blur claimed on a measurably
  sharp image scores 0 and is rejected. score_consistency compares the described severity with the score.
- IAA: coverage of the eight aspects; groundedness checks palette temperature, light and subject placement
  against the measures and that the attribute notes were used; cohesion rejects checklists and a tone that
  contradicts the score; smoothness penalises repeated and run-on sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tatar.records import ATTRIBUTES
from tatar.standins.measures import aesthetic_measures, load_rgb, quality_measures
from tatar.standins.teacher import BadRequest, TeacherRequest, parse_request
from tatar.validation.aspects import aspects_touched
from tatar.validation.verdict import JUDGE_MARKER, Verdict

# Defect (a key of QualityMeasures.severities) -> words that claim it.
DEFECT_WORDS = {
    "blur": r"blur\w*|smear\w*|out of focus|unsharp|soft focus",
    "noise": r"nois\w*|grain\w*|speckle\w*",
    "compression": r"compress\w*|jpeg|block\w*|artefact\w*|artifact\w*",
    "overexposure": r"overexpos\w*|blown|clipp\w*|too bright",
    "underexposure": r"underexpos\w*|too dark|crushed",
    "low_contrast": r"low contrast|flat|muddy",
    "dull_colour": r"washed out|desaturat\w*|dull|faded|colou?r cast",
}
# Words that name a technical factor at all, claimed or praised (technical rigour).
FACTOR_WORDS = r"sharp\w*|crisp|detail|edges?|nois\w*|grain|compress\w*|block\w*|expos\w*|highlights?|shadows?|" \
               r"contrast|tonal|colou?rs?|saturat\w*|blur\w*"
AESTHETIC_WORDS = r"composition|mood|emotion\w*|beautiful|aesthetic\w*|framing|story"
NEGATIONS = {"no", "not", "without", "free", "never", "nor", "absent", "lacks", "none"}
STRONG = {"heavy", "heavily", "severe", "severely", "strong", "strongly", "badly", "far", "very", "extreme",
          "extremely", "massive", "significant", "significantly", "pronounced", "gross", "grossly"}
MILD = {"slight", "slightly", "faint", "faintly", "mild", "mildly", "minor", "subtle", "subtly", "barely"}
# Smallest measured severity that supports a claim of each strength (mild claims are hedged: not checked).
SUPPORT = {2: 0.02, 3: 0.1}
SEVERE = 0.6  # a measured defect this bad should be mentioned

_WORD_RE = re.compile(r"[a-z']+")
_DEFECT_RES = {d: re.compile(rf"\b(?:{p})\b", re.IGNORECASE) for d, p in DEFECT_WORDS.items()}
_FACTOR_RE = re.compile(rf"\b(?:{FACTOR_WORDS})\b", re.IGNORECASE)
_AESTHETIC_RE = re.compile(rf"\b(?:{AESTHETIC_WORDS})\b", re.IGNORECASE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_LIST_RE = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*\u2022])\s|\bstep\s*\d", re.IGNORECASE)


def _clamp(x: float) -> float:
    return round(min(5.0, max(0.0, x)), 1)


def _words_around(text: str, start: int, end: int, n: int = 4) -> tuple[list[str], list[str]]:
    return _WORD_RE.findall(text[:start].lower())[-n:], _WORD_RE.findall(text[end:].lower())[:n]


@dataclass(frozen=True)
class Claim:
    defect: str
    intensity: int | None  # 1 mild, 3 strong, None when no intensity word is next to it
    negated: bool


def defect_claims(text: str) -> list[Claim]:
    """Every mention of a technical defect, with its intensity and whether it is denied ("free of grain")."""
    claims = []
    for defect, pattern in _DEFECT_RES.items():
        for m in pattern.finditer(text):
            before, after = _words_around(text, m.start(), m.end())
            near = set(before[-2:]) | set(after[:2])
            intensity = 3 if near & STRONG else (1 if near & MILD else None)
            claims.append(Claim(defect, intensity, negated=bool(set(before) & NEGATIONS)))
    return claims


def asserted_defects(claims: list[Claim]) -> dict[str, int]:
    """Defect -> claimed strength (1 mild, 2 plain, 3 strong); "slightly blurred, edges look smeared" is mild:
    an intensity word anywhere on a defect sets it, plain mentions only count when none has one."""
    strengths: dict[str, list[int | None]] = {}
    for c in claims:
        if not c.negated:
            strengths.setdefault(c.defect, []).append(c.intensity)
    return {d: max((i for i in found if i is not None), default=2) for d, found in strengths.items()}


def iqa_verdict(request: TeacherRequest, rationale: str) -> Verdict:
    severity = quality_measures(load_rgb(request.image)).severities()
    claims = defect_claims(rationale)
    asserted = asserted_defects(claims)
    issues = []

    checkable = {d: s for d, s in asserted.items() if s >= 2}
    unsupported = [d for d, s in checkable.items() if severity[d] < SUPPORT[s]]
    issues += [f"claims {'strong ' if checkable[d] == 3 else ''}{d.replace('_', ' ')} but the image measures "
               f"{severity[d]:.2f} of 1" for d in unsupported]
    fidelity = 5.0 * (1 - len(unsupported) / len(checkable)) if checkable else 4.0
    worst = max(severity, key=severity.get)
    if severity[worst] >= SEVERE and worst not in asserted:
        denied = any(c.defect == worst and c.negated for c in claims)
        issues.append(f"{'denies' if denied else 'ignores'} visible {worst.replace('_', ' ')} "
                      f"({severity[worst]:.2f} of 1)")
        fidelity -= 2 if denied else 1

    factors = {m.group(0).lower()[:5] for m in _FACTOR_RE.finditer(rationale)}
    aesthetic = len(_AESTHETIC_RE.findall(rationale))
    rigour = min(5, 2 + len(factors)) - min(2, aesthetic)
    if aesthetic:
        issues.append("uses aesthetic rather than technical language")

    described = max(asserted.values(), default=0)
    consistency = 5.0
    if request.score >= 60 and described == 3:
        consistency = 1.0
        issues.append("describes severe damage but the score is high")
    elif request.score < 40 and described <= 1:
        consistency = 1.0
        issues.append("describes a nearly clean image but the score is low")
    elif described == 2 and (request.score >= 80 or request.score < 20):
        consistency = 3.0  # plain wording where the score calls for "slight" or "severe"

    scores = {"visual_fidelity": _clamp(fidelity), "technical_rigour": _clamp(rigour),
              "score_consistency": _clamp(consistency)}
    keep = scores["visual_fidelity"] > 2 and scores["score_consistency"] > 2
    return Verdict("iqa", scores, "keep" if keep else "reject", issues)


# ---------------------------------------------------------------------------------------------- IAA
POSITIVE = r"strength\w*|excellent|favour|distinction|fresh|harmonious|good|striking|beautiful|compelling"
NEGATIVE = r"weakness\w*|drags?|generic|careless|poor|below average|holds? \w+ back|dull|bland|clumsy"
_POSITIVE_RE = re.compile(rf"\b(?:{POSITIVE})\b", re.IGNORECASE)
_NEGATIVE_RE = re.compile(rf"\b(?:{NEGATIVE})\b", re.IGNORECASE)


def _mentions(text: str, pattern: str) -> bool:
    return re.search(rf"\b(?:{pattern})\b", text, re.IGNORECASE) is not None


def iaa_verdict(request: TeacherRequest, rationale: str) -> Verdict:
    issues = []
    touched = aspects_touched(rationale)
    coverage = 5 * len(touched) / 8
    if len(touched) < 8:
        issues.append(f"skips {', '.join(a for a in ATTRIBUTES if a not in touched)}")

    groundedness = 5.0
    if request.image is not None:
        m = aesthetic_measures(load_rgb(request.image))
        warm, cool = _mentions(rationale, "warm"), _mentions(rationale, "cool|cold")
        if warm and not cool and m.warmth < 0.3:
            groundedness -= 2
            issues.append(f"calls the palette warm but only {m.warmth:.0%} of its colour is warm")
        if cool and not warm and m.warmth > 0.6:
            groundedness -= 2
            issues.append(f"calls the palette cool but {m.warmth:.0%} of its colour is warm")
        if _mentions(rationale, "bright|airy|sunlit") and not _mentions(rationale, "dim|dark") and m.brightness < 0.3:
            groundedness -= 2
            issues.append(f"calls the light bright but the mean brightness is {m.brightness:.2f}")
        if _mentions(rationale, "dim|dark|low-key") and not _mentions(rationale, "bright") and m.brightness > 0.6:
            groundedness -= 2
            issues.append(f"calls the light dark but the mean brightness is {m.brightness:.2f}")
        if _mentions(rationale, "cent(?:re|er)d?|central") and m.placement == "edge":
            groundedness -= 1
            issues.append(f"places the subject in the centre but it sits toward the {m.side} edge")
    if request.attributes:
        used = [name for name, note in request.attributes.items() if _echoes(note, rationale)]
        if len(used) < len(request.attributes) / 2:
            groundedness -= 2
            issues.append(f"uses {len(used)} of {len(request.attributes)} attribute notes")

    sentences = [s for s in _SENTENCE_RE.split(rationale.strip()) if s]
    cohesion = 5.0
    if _LIST_RE.search(rationale):
        cohesion -= 3
        issues.append("reads as a checklist or numbered steps, not a narrative")
    if len(sentences) < 4:
        cohesion -= 2
        issues.append(f"only {len(sentences)} sentences")
    positive, negative = len(_POSITIVE_RE.findall(rationale)), len(_NEGATIVE_RE.findall(rationale))
    if (request.score >= 70 and negative > positive) or (request.score < 30 and positive > negative):
        cohesion -= 2
        issues.append("its tone contradicts the score")

    smoothness = 5.0
    normalised = [" ".join(_WORD_RE.findall(s.lower())) for s in sentences]
    if len(set(normalised)) < len(normalised):
        smoothness -= 2
        issues.append("repeats a sentence")
    if any(len(s.split()) > 60 for s in sentences):
        smoothness -= 1
        issues.append("has a run-on sentence over 60 words")

    scores = {"attribute_coverage": _clamp(coverage), "groundedness": _clamp(groundedness),
              "cohesion": _clamp(cohesion), "smoothness": _clamp(smoothness)}
    keep = scores["groundedness"] > 2 and scores["cohesion"] > 2
    return Verdict("iaa", scores, "keep" if keep else "reject", issues)


def _echoes(note: str, text: str) -> bool:
    """The narrative reuses at least two of the note's content words (five letters or more)."""
    words = {w for w in _WORD_RE.findall(note.lower()) if len(w) >= 5}
    return len(words & set(_WORD_RE.findall(text.lower()))) >= min(2, len(words))


def verdict(request: TeacherRequest, rationale: str) -> Verdict:
    if request.task == "iqa":
        if request.image is None:
            raise BadRequest("an IQA judge request needs the attached image")
        return iqa_verdict(request, rationale)
    return iaa_verdict(request, rationale)


# ------------------------------------------------------------------------------- answering judge prompts
RATIONALE_RE = re.compile(r"<rationale>\n(.*?)\n</rationale>", re.DOTALL)


def reference_verdict(messages: list[dict]) -> str | None:
    """Called by the local reference teacher for every chat request: None unless it is a judge request,
    else a JSON verdict grounded in the image measures (``verdict``)."""
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    text = system if isinstance(system, str) else " ".join(
        p.get("text", "") for p in system or [] if isinstance(p, dict))
    if JUDGE_MARKER not in text:
        return None
    request = parse_request(messages)
    user = [m for m in messages if m.get("role") == "user"][:1]
    found = RATIONALE_RE.search(_texts(user))
    if not found:
        raise BadRequest("a judge request needs a <rationale> block in its first user message")
    return verdict(request, found.group(1)).to_json()


def _texts(messages: list[dict]) -> str:
    out = []
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        out += [p["text"] for p in parts if p.get("type") == "text"]
    return "\n".join(out)
