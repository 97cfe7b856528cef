"""What the local reference teacher writes: rationales grounded in image measures, consistent with a given score.

It reads the same rendered prompt a real teacher gets (the ``TASK:``, ``SCORE:`` and ``ATTRIBUTE name:`` lines of
``tatar/teacher/prompts/<version>/*.txt``, plus an attached image) and answers in the output contract:

- IQA, fast: two sentences, 30-50 words, naming one or two technical factors picked by the measured defect
  severities (blur, noise, compression, exposure, contrast, colour), with the verdict set by the score's band;
- IAA, slow: a narrative over the eight ArtiMuse attributes in order, paraphrasing the attribute notes when
  given and describing the measured composition, balance, palette and subject when the image is attached.

The score never appears in ``<think>``: words carry the band, the number only goes into ``<answer>``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache

from tatar.parsing import format_target
from tatar.records import ATTRIBUTES, Task
from tatar.teacher.measures import aesthetic_measures, load_rgb, quality_measures

TASK_RE = re.compile(r"^TASK:\s*(iqa|iaa)\s*$", re.MULTILINE)
SCORE_RE = re.compile(r"^SCORE:\s*([0-9]+(?:\.[0-9]+)?)", re.MULTILINE)
ATTRIBUTE_RE = re.compile(r"^ATTRIBUTE\s+(\w+):\s*(.+?)\s*$", re.MULTILINE)
DATA_URL_RE = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.DOTALL)


class BadRequest(ValueError):
    """The request is not a teacher prompt this server understands (answered with HTTP 400)."""


@dataclass(frozen=True)
class TeacherRequest:
    task: Task
    score: float
    attributes: dict[str, str]
    image: bytes | None


def parse_request(messages: list[dict]) -> TeacherRequest:
    """Task, score and attributes from the prompt lines; the first attached image (data URL) if any."""
    texts, images = [], []
    for message in messages:
        if message.get("role") == "assistant":
            continue  # a re-ask carries the rejected reply; the prompt lines come from the user turns
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
        for part in parts:
            if part.get("type") == "text":
                texts.append(part["text"])
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                if m := DATA_URL_RE.match(url):
                    images.append(base64.b64decode(m.group(1)))
    text = "\n".join(texts)
    task, score = TASK_RE.search(text), SCORE_RE.search(text)
    if not task or not score:
        raise BadRequest("the reference teacher needs 'TASK: iqa|iaa' and 'SCORE: NN.NN' lines in the prompt")
    return TeacherRequest(task=task.group(1), score=float(score.group(1)),
                          attributes=dict(ATTRIBUTE_RE.findall(text)), image=images[0] if images else None)


def band(score: float) -> int:
    """0 (very poor) .. 4 (excellent) on the 0-100 scale."""
    return min(4, max(0, int(score // 20)))


def rationale(request: TeacherRequest) -> str:
    """The full reply in the output contract, deterministic for a given request."""
    seed = hashlib.sha256(repr((request.task, request.score, sorted(request.attributes.items()))).encode()
                          + (request.image or b"")).digest()
    rng = random.Random(seed)
    if request.task == "iqa":
        if request.image is None:
            raise BadRequest("an IQA request needs an attached image")
        think = iqa_think(_quality(request.image), request.score, rng)
    else:
        measures = _aesthetics(request.image) if request.image is not None else None
        if measures is None and not request.attributes:
            raise BadRequest("an IAA request needs attribute lines or an attached image")
        think = iaa_think(request.attributes, measures, request.score, rng)
    return format_target(think, request.score)


@lru_cache(maxsize=512)  # the same images come back on re-asks and in the benchmark
def _quality(image: bytes):
    return quality_measures(load_rgb(image)).severities()


@lru_cache(maxsize=512)
def _aesthetics(image: bytes):
    return aesthetic_measures(load_rgb(image))


# ---------------------------------------------------------------------------------------------- IQA
# defect -> (clause with a {sev} slot, severity words severe/clear/slight, clause when the factor is fine)
IQA_FACTORS: dict[str, tuple[str, tuple[str, str, str], str]] = {
    "blur": ("fine detail is {sev} blurred and edges look smeared rather than crisp",
             ("heavily", "clearly", "slightly"), "edges are crisp and fine texture is resolved cleanly"),
    "noise": ("{sev} grain and speckle noise cover the smooth areas",
              ("heavy", "visible", "faint"), "smooth areas are clean and free of grain"),
    "compression": ("{sev} blocky compression artefacts break up smooth gradients",
                    ("heavy", "visible", "faint"), "gradients are smooth with no visible compression blocks"),
    "overexposure": ("the highlights are {sev} overexposed and bright areas lose their detail",
                     ("badly", "clearly", "slightly"), "highlights keep their detail without clipping"),
    "underexposure": ("the exposure is {sev} too dark, so shadow detail is crushed",
                      ("far", "clearly", "slightly"), "shadows stay open and well exposed"),
    "low_contrast": ("contrast is {sev} flat, leaving the tones muddy and grey",
                     ("very", "noticeably", "slightly"), "tonal contrast is strong and well separated"),
    "dull_colour": ("colours are {sev} washed out and close to grey",
                    ("heavily", "clearly", "slightly"), "colours are vivid and natural without a cast"),
}

# band -> (opening sentence patterns, closing sentences); {bad1} {bad2} {good1} {good2} are clauses.
IQA_BANDS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    0: (("The image is badly degraded: {bad1}, and {bad2}.",
         "Severe distortion dominates the frame: {bad1}, and {bad2}."),
        ("Little usable detail survives these distortions, so the technical quality is very poor overall.",
         "Almost nothing in the frame is rendered cleanly, so the technical quality sits at the bottom.")),
    1: (("The image shows clear technical damage: {bad1}, and {bad2}.",
         "Two defects stand out here: {bad1}, and {bad2}."),
        ("These defects are obvious at normal viewing size and hide real detail, so the technical quality is poor.",
         "The damage is plain at a glance and costs real detail, so the technical quality is low.")),
    2: (("The main technical problem is that {bad1}, while {good1}.",
         "Technically the picture is mixed: {bad1}, while {good1}."),
        ("The damage is noticeable but not destructive, so the technical quality lands in the middle range.",
         "The flaw is visible without ruining the content, so the technical quality is only fair.")),
    3: (("Technically the image holds up well: {good1}, although {bad1}.",
         "The capture is largely clean: {good1}, although {bad1}."),
        ("The flaw stays minor at normal viewing size, so the technical quality is good overall, though not flawless.",
         "Only close inspection reveals that weakness, so the technical quality is good.")),
    4: (("The image is technically clean: {good1}, and {good2}.",
         "The capture is technically excellent: {good1}, and {good2}."),
        ("No distortion is visible at normal viewing size, so the technical quality is excellent.",
         "Nothing degrades the signal in a way a viewer would notice, so the technical quality is outstanding.")),
}


def iqa_think(severities: dict[str, float], score: float, rng: random.Random) -> str:
    """Two sentences: the one or two factors the measures point at, then a verdict matching the score."""
    b = band(score)
    order = list(IQA_FACTORS)  # ties go to the more basic factor: blur, then noise, then compression...
    worst = sorted(severities, key=lambda k: (-severities[k], order.index(k)))
    best = sorted(severities, key=lambda k: (severities[k], order.index(k)))
    sev_word = 0 if b <= 1 else (1 if b == 2 else 2)

    def bad(name: str) -> str:
        clause, words, _ = IQA_FACTORS[name]
        return clause.format(sev=words[sev_word])

    fine = [k for k in best if k != worst[0]]  # a factor is never both the flaw and a strength
    clauses = {"bad1": bad(worst[0]), "bad2": bad(worst[1]),
               "good1": IQA_FACTORS[fine[0]][2], "good2": IQA_FACTORS[fine[1]][2]}
    openings, closings = IQA_BANDS[b]
    first = rng.choice(openings).format(**clauses)
    return f"{first} {rng.choice(closings)}"


# ---------------------------------------------------------------------------------------------- IAA
ATTRIBUTE_LEADS = {
    "visual_elements": "Looking first at the visual elements,",
    "composition": "Turning to the composition,",
    "gestalt": "As a gestalt, taking the parts together,",
    "technical_execution": "On technical execution,",
    "theme": "Thematically,",
    "emotion": "In terms of emotion and mood,",
    "originality": "As for originality,",
    "overall": "Overall, weighing all of this,",
}
# band -> how an attribute weighs on the verdict; low bands concede ("but") so that a neutral or positive
# observation never contradicts a low score.
VERDICTS = {
    0: ("but it does nothing to rescue the picture", "yet it leaves the viewer cold"),
    1: ("but it adds little to the picture", "yet it lifts the image only slightly"),
    2: ("which is serviceable without standing out", "and this is adequate but unremarkable"),
    3: ("which works in the image's favour", "and this is a genuine strength"),
    4: ("which is handled with real distinction", "and this is one of its clear strengths"),
}
THEMES = {0: "no clear idea", 1: "a vague, ordinary idea", 2: "a recognisable but ordinary idea",
          3: "a clearly readable idea", 4: "a strong, clearly readable idea"}
ORIGINALITY = {0: "the treatment feels generic and careless", 1: "the treatment feels generic and familiar",
               2: "the treatment is competent but familiar", 3: "the treatment shows a personal, considered eye",
               4: "the treatment feels fresh and distinctly personal"}
OVERALL = {0: "the weaknesses clearly outweigh the strengths, and the aesthetic appeal is very low",
           1: "the weaknesses outweigh the strengths, so the aesthetic appeal is below average",
           2: "strengths and weaknesses roughly cancel out, leaving an average aesthetic appeal",
           3: "the strengths clearly outweigh the weaknesses, giving a good aesthetic appeal",
           4: "the strengths dominate throughout, and the aesthetic appeal is excellent"}


FUNCTION_WORDS = {"a", "about", "an", "and", "are", "around", "as", "at", "but", "by", "for", "from", "in", "is", "its",
                  "nearly", "of", "on", "or", "roughly", "so", "that", "the", "to", "which", "with"}


def quote(note: str, max_words: int = 12) -> str:
    """A short quotation from an attribute note: its first clause, cut before any number and after at most
    ``max_words`` words, so the narrative cites the note without copying its sentences (or leaking a number)."""
    clause = re.split(r"[.;:!?]\s", note.strip() + " ", maxsplit=1)[0]
    words = []
    for word in clause.split()[:max_words]:
        if any(c.isdigit() for c in word):
            break
        words.append(word)
    while words and words[-1].lower().strip(",") in FUNCTION_WORDS:
        words.pop()
    text = " ".join(words).strip(" ,.")
    return text[:1].lower() + text[1:] if text else ""


def _measured(name: str, m) -> str | None:
    """What the measures say about an attribute (None when they cannot say anything about it)."""
    light = "bright, airy" if m.brightness > 0.6 else ("dim, low-key" if m.brightness < 0.3 else "even")
    temperature = "warm" if m.warmth > 0.6 else ("cool" if m.warmth < 0.3 else "mixed warm and cool")
    if name == "visual_elements":
        vivid = ("richly saturated" if m.saturation > 0.45
                 else "muted" if m.saturation < 0.2 else "moderately saturated")
        return f"the frame is built from {vivid}, {temperature} tones led by {m.dominant_hue} under {light} light"
    if name == "composition":
        where = {"thirds": "near a rule-of-thirds intersection", "centre": "squarely in the centre of the frame",
                 "off-centre": f"off-centre toward the {m.side}",
                 "edge": f"pushed toward the {m.side} edge"}[m.placement]
        size = "a large" if m.subject_size > 0.35 else ("a small" if m.subject_size < 0.12 else "a moderate")
        return f"the main subject sits {where} and takes up {size} share of the frame"
    if name == "gestalt":
        weight = "evenly balanced" if m.balance > 0.7 else f"tilted toward the {m.side}"
        palette = "a harmonious, narrow palette" if m.harmony > 0.5 else "a varied palette of competing hues"
        return f"the visual weight is {weight} and {palette} ties the parts together"
    if name == "technical_execution":
        if m.isolation > 2.0:
            return "the subject separates clearly from a calmer background"
        return "the subject blends into a busy surrounding rather than standing apart"
    if name == "emotion":
        mood = {("bright, airy", "warm"): "cheerful"}.get((light, temperature),
                                                         "calm" if m.brightness >= 0.3 else "moody, sombre")
        return f"the {light}, {temperature} light sets a {mood} tone"
    return None


def iaa_think(attributes: dict[str, str], measures, score: float, rng: random.Random) -> str:
    """One sentence per attribute, in ATTRIBUTES order, each weighed against the score's band: the note's gist
    when the prompt gives one, what the measures show when the image is attached, a band judgement otherwise."""
    b = band(score)
    sentences = []
    for name in ATTRIBUTES:
        lead = ATTRIBUTE_LEADS[name]
        if name == "overall":
            sentences.append(f"{lead} {OVERALL[b]}.")
            continue
        note = quote(attributes.get(name, ""))
        seen = _measured(name, measures) if measures is not None else None
        verdict = rng.choice(VERDICTS[b])
        if note and seen:
            sentences.append(f'{lead} the notes single out "{note}", and in the image {seen}, {verdict}.')
        elif note:
            sentences.append(f'{lead} the notes single out "{note}", {verdict}.')
        elif seen:
            sentences.append(f"{lead} {seen}, {verdict}.")
        elif name == "originality":
            sentences.append(f"{lead} {ORIGINALITY[b]}.")
        elif name == "theme":
            sentences.append(f"{lead} the picture carries {THEMES[b]}, {verdict}.")
    return " ".join(sentences)


# ------------------------------------------------------------------------------------------- faults
def malformed(text: str, rng: random.Random) -> str:
    """A broken variant of a good reply, each kind of which the normaliser must reject (fault injection)."""
    think = re.search(r"<think>(.*?)</think>", text, re.DOTALL).group(1)
    kind = rng.randrange(4)
    if kind == 0:
        return text.replace("</think>", "")  # missing closing tag
    if kind == 1:
        return text.replace("<think>", "<think>Step 1: ")  # numbered steps / a number in think
    if kind == 2:
        return format_target(" ".join(think.split()[:6]) + ".", 50.0)  # far too short
    return think  # no tags at all
