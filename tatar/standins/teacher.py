"""What the local reference teacher writes: rationales grounded in image measures, consistent with a given score.

It reads the same rendered prompt a real teacher gets (the ``TASK:``, ``SCORE:`` and ``ATTRIBUTE name:`` lines of
``tatar/teacher/prompts/<version>/*.txt``, plus an attached image) and answers in the output contract:

- IQA, fast: two sentences, 30-50 words, on one or two technical factors (blur, noise, compression, exposure,
  contrast, colour) picked by the measures: the main defect with its strength in words and where it shows (a
  3 x 3 reading of the frame, or everywhere), then a second defect or a factor that is clean; the verdict and
  the strength words follow the score's band (a low score never rests on a "slight" defect);
- IAA, slow: a narrative over the eight ArtiMuse attributes in order, paraphrasing the attribute notes when
  given and describing the measured composition, balance, palette and subject when the image is attached.

Phrasing variants are drawn by a generator seeded from the request (image hash, score, notes), so the writing is
deterministic per request yet two images rarely share a rationale (the validate stage rejects repeats). The score
never appears in ``<think>``: words carry the band and the magnitudes, the number only goes into ``<answer>``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from functools import cached_property

from tatar.parsing import format_target
from tatar.records import ATTRIBUTES, Task
from tatar.standins.measures import (
    AestheticMeasures,
    QualityView,
    Spot,
    aesthetic_measures,
    load_rgb,
    quality_view,
)

TASK_RE = re.compile(r"^TASK:\s*(iqa|iaa)\s*$", re.MULTILINE)
SCORE_RE = re.compile(r"^SCORE:\s*([0-9]+(?:\.[0-9]+)?)", re.MULTILINE)
ATTRIBUTE_RE = re.compile(r"^ATTRIBUTE\s+(\w+):\s*(.+?)\s*$", re.MULTILINE)
DATA_URL_RE = re.compile(r"data:image/[\w.+-]+;base64,")


class BadRequest(ValueError):
    """The request is not a teacher prompt this server understands (answered with HTTP 400)."""


class TeacherRequest:
    """A parsed prompt: task, score, attribute notes and the attached image, if any. An image that came as a data
    URL is kept as sent and decoded only when ``image`` is first read; ``digest`` (sha256 of its base64 text, the
    same for raw bytes given directly) identifies it, so measures of an image seen before are reused without
    decoding it again."""

    def __init__(self, task: Task, score: float, attributes: dict[str, str], image: bytes | None = None, *,
                 image_b64: str | None = None):
        self.task, self.score, self.attributes = task, score, attributes
        self._image, self._image_b64 = image, image_b64

    @property
    def image(self) -> bytes | None:
        if self._image is None and self._image_b64 is not None:
            try:
                self._image = base64.b64decode(self._image_b64)
            except ValueError as exc:  # binascii.Error
                raise BadRequest(f"the attached image is not valid base64: {exc}") from None
        return self._image

    @cached_property
    def digest(self) -> str | None:
        if self._image_b64 is not None:
            return hashlib.sha256(self._image_b64.encode()).hexdigest()
        if self._image is not None:
            return hashlib.sha256(base64.b64encode(self._image)).hexdigest()
        return None

    def __repr__(self) -> str:
        return (f"TeacherRequest(task={self.task!r}, score={self.score!r}, attributes={self.attributes!r}, "
                f"image={'sha256 of base64 ' + self.digest[:12] if self.digest else None})")


def parse_request(messages: list[dict]) -> TeacherRequest:
    """Task, score and attributes from the prompt lines; the first attached image (data URL) if any."""
    texts, image = [], None
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
                if image is None and (m := DATA_URL_RE.match(url)):
                    image = url[m.end():]
    text = "\n".join(texts)
    task, score = TASK_RE.search(text), SCORE_RE.search(text)
    if not task or not score:
        raise BadRequest("the reference teacher needs 'TASK: iqa|iaa' and 'SCORE: NN.NN' lines in the prompt")
    return TeacherRequest(task=task.group(1), score=float(score.group(1)),
                          attributes=dict(ATTRIBUTE_RE.findall(text)), image_b64=image)


def band(score: float) -> int:
    """0 (very poor) .. 4 (excellent) on the 0-100 scale."""
    return min(4, max(0, int(score // 20)))


def rationale(request: TeacherRequest) -> str:
    """The full reply in the output contract, deterministic for a given request: the wording is drawn from the
    measures, with phrasing variants picked by a generator seeded from the request (image hash included)."""
    digest = request.digest
    rng = random.Random(hashlib.sha256(repr((request.task, request.score, sorted(request.attributes.items()),
                                              digest)).encode()).digest())
    if request.task == "iqa":
        if digest is None:
            raise BadRequest("an IQA request needs an attached image")
        think = iqa_think(_cached(_quality_cache, request, quality_view), request.score, rng)
    else:
        measures = _cached(_aesthetic_cache, request, aesthetic_measures) if digest is not None else None
        if measures is None and not request.attributes:
            raise BadRequest("an IAA request needs attribute lines or an attached image")
        think = iaa_think(request.attributes, measures, request.score, rng)
    return format_target(think, request.score)


# Image measures are cached by content hash: the same image comes back on re-asks, for both tasks, and in the
# benchmark, and a digest key keeps no image bytes alive.
_CACHE_SIZE = 4096
_quality_cache: dict[str, QualityView] = {}
_aesthetic_cache: dict[str, AestheticMeasures] = {}


def _cached(cache: dict, request: TeacherRequest, compute):
    """``compute`` of the request's image, by content hash; the image is decoded only on a miss."""
    key = request.digest
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))  # oldest first
        cache[key] = compute(load_rgb(request.image))
    return cache[key]


# ---------------------------------------------------------------------------------------------- IQA
# Words for how strong a defect looks. The reference judge reads the strong and mild sets next to a defect word
# (tatar.standins.judge STRONG / MILD); the plain ones claim a defect without grading it.
INTENSITY = {
    "strong": (("heavy", "severe", "strong", "pronounced", "significant"),
               ("heavily", "severely", "strongly", "badly", "significantly")),
    "plain": (("clear", "visible", "noticeable", "obvious", "evident", "moderate"),
              ("clearly", "visibly", "noticeably", "obviously", "evidently", "moderately")),
    "mild": (("slight", "faint", "mild", "minor", "subtle"), ("slightly", "faintly", "mildly", "subtly")),
}
TOO = {"strong": ("far too",), "plain": ("clearly too", "noticeably too"), "mild": ("slightly too",)}
# defect -> clauses claiming it ({adj} / {adv} / {too} stand next to the defect word; {where} says where it shows).
# A defect word (blur, grain, flat, dull, ...) appears only in its own factor's clauses.
IQA_BAD: dict[str, tuple[str, ...]] = {
    "blur": ("fine detail is {adv} blurred {where}", "{adj} blur smears the edges {where}",
             "edges {where} look {adv} smeared rather than crisp", "{adj} blur softens fine texture {where}",
             "outlines {where} are {adv} blurred and lose definition"),
    "noise": ("{adj} grain covers the smooth areas {where}", "{adj} speckle noise sits in the even tones {where}",
              "the smooth tones {where} carry {adj} noise", "{adj} noise speckles the plain surfaces {where}",
              "smooth surfaces {where} show {adj} grain"),
    "compression": ("{adj} compression blocks break up the gradients {where}",
                    "{adj} blocking from compression shows {where}",
                    "gradients {where} dissolve into {adj} compression artefacts",
                    "{adj} compression artefacts tile the smooth areas {where}"),
    "overexposure": ("the highlights {where} are {adv} blown",
                     "bright areas {where} are {adv} overexposed and lose detail",
                     "{adj} clipping wipes out highlight detail {where}",
                     "the exposure runs {too} bright {where}, clipping the highlights"),
    "underexposure": ("the exposure is {too} dark {where}, so shadow detail is crushed",
                      "shadows {where} are {adv} crushed", "the image is {adv} underexposed, with detail lost {where}",
                      "dark tones {where} are {adv} crushed into black"),
    "low_contrast": ("contrast is {adv} flat {where}, leaving muddy tones", "tones {where} look {adv} muddy and grey",
                     "{adj} low contrast mutes the tonal range {where}", "the tonal range is {adv} flat {where}"),
    "dull_colour": ("colours {where} are {adv} washed out",
                    "{adj} desaturation leaves the colours {where} close to grey",
                    "colours {where} look {adv} faded", "hues {where} are {adv} desaturated toward grey"),
}
# defect -> clauses saying the factor is fine ({deg} grades how fine); defect words only under a negation.
IQA_GOOD: dict[str, tuple[str, ...]] = {
    "blur": ("edges {where} stay {deg}crisp", "fine texture {where} is resolved {deg}cleanly",
             "detail {where} is {deg}sharp and well defined", "outlines {where} are {deg}crisp"),
    "noise": ("smooth areas {where} are {deg}clean and free of grain", "even tones {where} stay {deg}clean",
              "plain surfaces {where} show no visible noise", "smooth tones {where} are {deg}clean, without grain"),
    "compression": ("gradients {where} are {deg}smooth with no compression blocks",
                    "tonal transitions {where} stay {deg}smooth", "smooth gradients {where} show no blocking"),
    "overexposure": ("highlights {where} keep their detail", "bright tones {where} hold detail without clipping",
                     "the brightest areas {where} stay {deg}well controlled"),
    "underexposure": ("shadows {where} stay {deg}open", "dark tones {where} keep their detail",
                      "shadow detail {where} is {deg}well preserved"),
    "low_contrast": ("tonal contrast {where} is {deg}strong and well separated", "tones {where} separate {deg}cleanly",
                     "contrast {where} is {deg}firm and punchy"),
    "dull_colour": ("colours {where} are {deg}vivid and natural", "colour {where} is {deg}rich without any cast",
                    "hues {where} stay {deg}saturated and true"),
}
# How fine a factor is (its soft grade) -> degree words for the good clauses.
DEGREES = ((0.15, ("very ", "notably ", "remarkably ")), (0.45, ("",)), (1.01, ("fairly ", "reasonably ")))
REGIONS = {
    (0, 0): ("in the upper-left corner", "toward the top left"), (0, 1): ("along the top", "across the upper middle"),
    (0, 2): ("in the upper-right corner", "toward the top right"),
    (1, 0): ("along the left side", "on the left of the frame"), (1, 1): ("in the centre", "around the middle"),
    (1, 2): ("along the right side", "on the right of the frame"),
    (2, 0): ("in the lower-left corner", "toward the bottom left"),
    (2, 1): ("along the bottom", "across the lower middle"),
    (2, 2): ("in the lower-right corner", "toward the bottom right"),
}
EVERYWHERE = ("across the whole frame", "everywhere in the frame", "all over the frame", "throughout the frame")
UNIFORM = 0.75  # a defect at least half as visible in this share of the regions counts as everywhere

# (band, what the second clause is) -> opening sentences. {bad1} is the main defect; {second} is a second defect
# ("bad") or a factor that is fine ("good"); {good1} is a factor that is fine. A claimed defect comes before a
# clean-factor clause wherever it is checked, so no negation ("free of grain") stands next to it.
IQA_OPENINGS: dict[tuple[int, str], tuple[str, ...]] = {
    (0, "bad"): ("The image is badly degraded: {bad1}, and {second}.",
                 "Severe distortion dominates the frame: {bad1}, and {second}.",
                 "{Bad1}, and on top of that {second}.",
                 "The most damaging problem is that {bad1}, and in addition {second}.",
                 "Technically the picture is in very poor shape, as {bad1} and {second}."),
    (0, "good"): ("The image is badly degraded: {bad1}, even though {second}.",
                  "Severe distortion dominates the frame: {bad1}, although {second}.",
                  "{Bad1}, and that outweighs the fact that {second}.",
                  "The most damaging problem is that {bad1}, while {second}.",
                  "Technically the picture is in very poor shape, as {bad1}, even if {second}."),
    (1, "bad"): ("The image shows clear technical damage: {bad1}, and {second}.",
                 "Two defects stand out here: {bad1}, and {second}.",
                 "{Bad1}, and {second} as well.",
                 "The most damaging problem is that {bad1}, and besides that {second}.",
                 "Technically the picture struggles, since {bad1} and {second}."),
    (1, "good"): ("The image shows clear technical damage: {bad1}, although {second}.",
                  "One defect dominates here: {bad1}, while {second}.",
                  "{Bad1}, even though {second}.",
                  "The most damaging problem is that {bad1}, whereas {second}.",
                  "Technically the picture struggles, since {bad1}, though {second}."),
    (2, "bad"): ("The main technical problem is that {bad1}, and {second} too.",
                 "Two defects hold the picture back: {bad1}, and {second}.",
                 "{Bad1}, and {second}.",
                 "Quality suffers because {bad1} and {second}.",
                 "Technically the picture is mixed, as {bad1}, and {second} as well."),
    (2, "good"): ("The main technical problem is that {bad1}, while {second}.",
                  "Technically the picture is mixed: {bad1}, yet {second}.",
                  "{Bad1}, but {second}.",
                  "Quality is held back because {bad1}, although {second}.",
                  "One defect stands out: {bad1}, whereas {second}."),
    (3, "good"): ("The one weakness is that {bad1}, while {second}.",
                  "Close inspection shows that {bad1}, but otherwise {second}.",
                  "Only a small flaw shows: {bad1}, whereas {second}.",
                  "The capture is largely clean: {bad1}, yet {second}.",
                  "Apart from the fact that {bad1}, the capture holds up and {second}."),
    (4, "good"): ("The image is technically clean: {good1}, and {second}.",
                  "The capture is technically excellent, as {good1} and {second}.",
                  "{Good1}, and {second}.",
                  "Everything technical holds up here: {good1}, while {second}.",
                  "Looking closely, {good1}, and {second}."),
    (4, "bad"): ("The image is technically clean: {good1}, and the only blemish is that {second}.",
                 "{Good1}, and the one trace of a flaw is that {second}.",
                 "The capture is technically excellent: {good1}, and only close inspection shows that {second}.",
                 "Looking closely, {good1}, and the only weakness is that {second}."),
}
# band -> closing sentences; {reach} says how far the main defect (or the clean rendering) extends.
IQA_CLOSINGS: dict[int, tuple[str, ...]] = {
    0: ("{Reach}, so the technical quality is very poor.",
        "{Reach}, which puts the technical quality at the very bottom.",
        "Little usable detail survives these distortions, so the technical quality is very poor overall.",
        "Almost nothing in the frame is rendered cleanly, so the technical quality sits at the bottom.",
        "At any viewing size the damage dominates, leaving the technical quality at the bottom of the scale.",
        "The signal is too damaged to carry fine structure, so the technical quality is very poor."),
    1: ("{Reach}, so the technical quality is poor.", "{Reach}, and the lost detail keeps the technical quality low.",
        "These defects are obvious at normal viewing size and hide real detail, so the technical quality is poor.",
        "The damage is plain at a glance and costs real detail, so the technical quality is low.",
        "A viewer notices the damage immediately, which makes the technical quality poor."),
    2: ("{Reach}, so the technical quality lands in the middle range.",
        "{Reach}, leaving the technical quality only fair.",
        "The damage is noticeable but not destructive, so the technical quality lands in the middle range.",
        "The flaw is visible without ruining the content, so the technical quality is only fair.",
        "It costs some fine detail but leaves the content readable, so the technical quality sits in the middle."),
    3: ("{Reach}, so the technical quality is good, though not flawless.",
        "{Reach}, which keeps the technical quality good.",
        "The flaw stays minor at normal viewing size, so the technical quality is good overall, though not flawless.",
        "Only close inspection reveals that weakness, so the technical quality is good.",
        "At normal viewing size the weakness barely registers, which keeps the technical quality good."),
    4: ("{Reach}, so the technical quality is excellent.", "{Reach}, which makes the technical quality outstanding.",
        "No distortion is visible at normal viewing size, so the technical quality is excellent.",
        "Nothing degrades the signal in a way a viewer would notice, so the technical quality is outstanding.",
        "Even under close inspection the signal holds up, so the technical quality is excellent."),
}
# band 3 with a plainly visible defect: no closing that calls it barely visible
IQA_CLOSINGS_PLAIN_FLAW = ("{Reach}, so the technical quality is good, though not flawless.",
                           "{Reach}, which keeps the technical quality good.",
                           "The rest of the signal is clean enough that the technical quality stays good.",
                           "The weakness is real but contained, so the technical quality is still good.")
REACH = {
    "everywhere": ("the damage reaches every part of the frame", "the defect runs from edge to edge",
                   "no part of the frame escapes it", "it affects the whole picture evenly"),
    "local": ("the damage is patchy rather than uniform", "it is confined to part of the frame",
              "some regions are spared, though not enough", "it is strongest in one region and lighter elsewhere"),
    "moderate_everywhere": ("the flaw reaches across the frame without hiding the content",
                            "it shows throughout but stays moderate"),
    "moderate_local": ("the flaw stays within part of the frame", "it is limited to one part of the frame"),
    "minor_everywhere": ("the flaw is spread thinly across the frame", "the weakness is faint but present throughout"),
    "minor_local": ("the flaw is confined to a small part of the frame", "the rest of the frame renders cleanly"),
    "trace": ("the flaw never rises above a trace", "a viewer would hardly notice that trace"),
    "clean": ("this clean rendering holds from edge to edge", "the signal stays clean across the whole frame",
              "every region of the frame renders cleanly"),
}
IQA_WORD_RANGE = (30, 50)  # the prompt's contract


def strength(b: int, severity: float) -> str:
    """How strongly to word a defect: the measured severity, kept consistent with the score's band (a low score
    never rests on a mild defect, a high one never on a severe one)."""
    if b == 0:
        return "strong" if severity >= 0.1 else "plain"
    if b == 1:
        return "strong" if severity >= 0.5 else "plain"
    if b == 2:
        return "strong" if severity >= 0.85 else ("plain" if severity >= 0.02 else "mild")
    if b == 3:
        return "plain" if severity >= 0.4 else "mild"
    return "mild"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _where_bad(spot: Spot, rng: random.Random) -> str:
    if spot.spread >= UNIFORM:
        return rng.choice(EVERYWHERE)
    return rng.choice(("", "mostly ", "especially ")) + rng.choice(REGIONS[spot.worst])


def _where_good(soft: float, spot: Spot, rng: random.Random) -> str:
    return rng.choice(EVERYWHERE) if soft < 0.3 else rng.choice(REGIONS[spot.best])


def iqa_think(view: QualityView, score: float, rng: random.Random) -> str:
    """Two sentences, 30-50 words, on one or two technical factors: the measured defects (how strong, where,
    the secondary one) or the factors that are clean, then a verdict matching the score's band."""
    b = band(score)
    sev, soft = view.severity, view.soft
    order = list(IQA_BAD)
    worst = sorted(sev, key=lambda k: (-sev[k], -soft[k], order.index(k)))
    finest = sorted(soft, key=lambda k: (soft[k], order.index(k)))

    def bad(name: str) -> str:
        grade = strength(b, sev[name])
        adjs, advs = INTENSITY[grade]
        return rng.choice(IQA_BAD[name]).format(adj=rng.choice(adjs), adv=rng.choice(advs), too=rng.choice(TOO[grade]),
                                                where=_where_bad(view.spots[name], rng))

    def good(name: str) -> str:
        degree = next(words for limit, words in DEGREES if soft[name] < limit)
        return rng.choice(IQA_GOOD[name]).format(deg=rng.choice(degree),
                                                 where=_where_good(soft[name], view.spots[name], rng))

    main = worst[0]
    if b == 4:  # two clean factors, or one and a mild mention of a defect the measures cannot ignore
        second_is_bad = sev[main] >= 0.3
        good1, good2 = [k for k in finest if k != main][:2] if second_is_bad else finest[:2]
        spread_key = "trace" if second_is_bad else "clean"
    else:
        runner = worst[1]
        second_is_bad = b <= 2 and sev[runner] >= (0.15 if b <= 1 else 0.3)
        fine = next(k for k in finest if k != main)
        extent = "everywhere" if view.spots[main].spread >= UNIFORM else "local"
        grade = "" if b <= 2 else ("moderate_" if strength(b, sev[main]) == "plain" else "minor_")
        spread_key = grade + extent
    openings = IQA_OPENINGS[(b, "bad" if second_is_bad else "good")]
    closings = IQA_CLOSINGS_PLAIN_FLAW if b == 3 and strength(b, sev[main]) == "plain" else IQA_CLOSINGS[b]

    def draft() -> str:
        if b == 4:
            clauses = {"good1": good(good1), "second": bad(main) if second_is_bad else good(good2)}
        else:
            clauses = {"bad1": bad(main), "second": bad(runner) if second_is_bad else good(fine)}
        clauses |= {k.capitalize(): _cap(v) for k, v in clauses.items()}
        first = rng.choice(openings).format(**clauses)
        return f"{first} {rng.choice(closings).format(Reach=_cap(rng.choice(REACH[spread_key])))}"

    lo, hi = IQA_WORD_RANGE
    best = ""
    for _ in range(64):  # drafts drawn in order until one fits the word range: deterministic per request
        think = draft()
        if lo <= len(think.split()) <= hi:
            return think
        best = min(best or think, think, key=lambda d: abs(len(d.split()) - (lo + hi) / 2))
    return best  # never seen on the embedded default; the normaliser cuts it to range


# ---------------------------------------------------------------------------------------------- IAA
ATTRIBUTE_LEADS: dict[str, tuple[str, ...]] = {
    "visual_elements": ("Looking first at the visual elements,", "Starting with the visual elements,",
                        "Beginning with colour, light and line,", "First, on the level of visual elements,"),
    "composition": ("Turning to the composition,", "As for the composition,", "In terms of composition,",
                    "Compositionally,"),
    "gestalt": ("As a gestalt, taking the parts together,", "Seen as a whole,", "Taking the parts together as a whole,",
                "On the level of gestalt and unity,"),
    "technical_execution": ("On technical execution,", "As for the technical execution,", "In its technical execution,",
                            "Technically,"),
    "theme": ("Thematically,", "As for the theme,", "On the level of theme,", "In terms of its theme and message,"),
    "emotion": ("In terms of emotion and mood,", "Emotionally,", "As for the mood it creates,",
                "On the emotional side,"),
    "originality": ("As for originality,", "In terms of originality,", "When it comes to originality,",
                    "On originality,"),
    "overall": ("Overall, weighing all of this,", "Taken together,", "On balance,", "All in all,",
                "Ultimately, weighing these points,"),
}
# band -> how an attribute weighs on the verdict; low bands concede ("but") so that a neutral or positive
# observation never contradicts a low score.
VERDICTS = {
    0: ("but it does nothing to rescue the picture", "yet it leaves the viewer cold",
        "which only deepens its weaknesses", "and this drags the image further down",
        "but the result stays bland and lifeless"),
    1: ("but it adds little to the picture", "yet it lifts the image only slightly",
        "which remains more of a weakness than a strength", "and this holds the picture back",
        "but the effect feels rather bland"),
    2: ("which is serviceable without standing out", "and this is adequate but unremarkable",
        "which neither helps nor hurts much", "and this is competent if ordinary", "which does its job quietly"),
    3: ("which works in the image's favour", "and this is a genuine strength", "which adds real interest",
        "and this serves the picture well", "which gives it a good footing"),
    4: ("which is handled with real distinction", "and this is one of its clear strengths", "which makes it compelling",
        "and this is excellent by any measure", "which lifts it well above the ordinary"),
}
CITES = ('the notes single out "{note}"', 'the description points to "{note}"', 'we are told of "{note}"',
         'the expert mentions "{note}"', 'the notes speak of "{note}"')
THEMES = {0: ("no clear idea", "no readable idea at all"), 1: ("a vague, ordinary idea", "only a faint, ordinary idea"),
          2: ("a recognisable but ordinary idea", "a plain, familiar idea"),
          3: ("a clearly readable idea", "a well-defined idea"),
          4: ("a strong, clearly readable idea", "a vivid, confidently stated idea")}
ORIGINALITY = {0: ("the treatment feels generic and careless", "nothing in the treatment rises above the generic"),
               1: ("the treatment feels generic and familiar", "the approach is familiar and rather generic"),
               2: ("the treatment is competent but familiar", "the approach is sound if conventional"),
               3: ("the treatment shows a personal, considered eye", "the approach feels considered and distinctive"),
               4: ("the treatment feels fresh and distinctly personal",
                   "the approach is fresh and unmistakably personal")}
OVERALL = {0: ("the weaknesses clearly outweigh the strengths, and the aesthetic appeal is very low",
               "little works in its favour, and its weaknesses leave the aesthetic appeal very low"),
           1: ("the weaknesses outweigh the strengths, so the aesthetic appeal is below average",
               "its weaknesses weigh more than its few strengths, leaving the aesthetic appeal below average"),
           2: ("strengths and weaknesses roughly cancel out, leaving an average aesthetic appeal",
               "the picture balances its strengths against its weaknesses and ends with an average aesthetic appeal"),
           3: ("the strengths clearly outweigh the weaknesses, giving a good aesthetic appeal",
               "its strengths carry the picture past its weaknesses, for a good aesthetic appeal"),
           4: ("the strengths dominate throughout, and the aesthetic appeal is excellent",
               "its strengths hold from first glance to last, and the aesthetic appeal is excellent")}


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


def _share(x: float) -> str:
    """A share of the frame in words (numbers are not allowed inside the rationale)."""
    for limit, words in ((0.06, "a sliver"), (0.14, "about a tenth"), (0.22, "about a fifth"),
                         (0.29, "about a quarter"), (0.42, "about a third"), (0.6, "about half"), (1.01, "most")):
        if x < limit:
            return words
    return "most"


def _measured(name: str, m: AestheticMeasures, rng: random.Random) -> str | None:
    """What the measures say about an attribute (None when they cannot say anything about it)."""
    light = "bright, airy" if m.brightness > 0.6 else ("dim, low-key" if m.brightness < 0.3 else "even")
    temperature = "warm" if m.warmth > 0.6 else ("cool" if m.warmth < 0.3 else "mixed warm and cool")
    if name == "visual_elements":
        vivid = ("richly saturated" if m.saturation > 0.45
                 else "muted" if m.saturation < 0.2 else "moderately saturated")
        return rng.choice((f"the frame is built from {vivid}, {temperature} tones led by {m.dominant_hue}",
                           f"{m.dominant_hue} leads a {vivid}, {temperature} set of tones")) + f" under {light} light"
    if name == "composition":
        where = {"thirds": "near a rule-of-thirds intersection", "centre": "squarely in the centre of the frame",
                 "off-centre": f"off-centre toward the {m.side}",
                 "edge": f"pushed toward the {m.side} edge"}[m.placement]
        share = _share(m.subject_size)
        return rng.choice((f"the main subject sits {where} and takes up {share} of the frame",
                           f"the eye lands {where}, on a subject filling {share} of the frame"))
    if name == "gestalt":
        weight = "evenly balanced" if m.balance > 0.7 else f"tilted toward the {m.side}"
        palette = "a harmonious, narrow palette" if m.harmony > 0.5 else "a varied palette of competing hues"
        return rng.choice((f"the visual weight is {weight} and {palette} ties the parts together",
                           f"{palette} holds the parts together while the visual weight is {weight}"))
    if name == "technical_execution":
        if m.isolation > 2.0:
            return rng.choice(("the subject separates clearly from a calmer background",
                               "a calmer background lets the subject stand clear of it"))
        return rng.choice(("the subject blends into a busy surrounding rather than standing apart",
                           "a busy surrounding swallows the subject instead of setting it apart"))
    if name == "emotion":
        mood = {("bright, airy", "warm"): "cheerful"}.get((light, temperature),
                                                         "calm" if m.brightness >= 0.3 else "moody, sombre")
        return rng.choice((f"the {light}, {temperature} light sets a {mood} tone",
                           f"a {mood} tone comes from the {light}, {temperature} light"))
    return None


def iaa_think(attributes: dict[str, str], measures: AestheticMeasures | None, score: float,
              rng: random.Random) -> str:
    """One sentence per attribute, in ATTRIBUTES order, each weighed against the score's band: the note's gist
    when the prompt gives one, what the measures show when the image is attached, a band judgement otherwise."""
    b = band(score)
    sentences = []
    for name in ATTRIBUTES:
        lead = rng.choice(ATTRIBUTE_LEADS[name])
        if name == "overall":
            sentences.append(f"{lead} {rng.choice(OVERALL[b])}.")
            continue
        note = quote(attributes.get(name, ""))
        seen = _measured(name, measures, rng) if measures is not None else None
        verdict = rng.choice(VERDICTS[b])
        cite = rng.choice(CITES).format(note=note)
        if note and seen:
            sentences.append(f"{lead} {cite}, and in the image {seen}, {verdict}.")
        elif note:
            sentences.append(f"{lead} {cite}, {verdict}.")
        elif seen:
            sentences.append(f"{lead} {seen}, {verdict}.")
        elif name == "originality":
            sentences.append(f"{lead} {rng.choice(ORIGINALITY[b])}.")
        elif name == "theme":
            sentences.append(f"{lead} the picture carries {rng.choice(THEMES[b])}, {verdict}.")
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
