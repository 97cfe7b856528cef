"""The synthetic IAA set: variants of each photograph that differ in framing, tilt, exposure, colour and clutter,
each scored from *measured* properties and described by ArtiMuse-style texts for all eight attributes.

A variant is a plan (framing, tilt, exposure, colour, clutter) applied to a scene. The score combines five
sub-scores in [0, 1], each computed from measurements of the rendered image against the same framing left
untouched (its "clean" twin):

- composition: where the subject - the peak of heavily smoothed gradient energy, i.e. the strongest
  concentration of detail - falls: near a rule-of-thirds point is best, dead centre a little less, elsewhere
  worse, and against the frame edge (subject cut off) worst;
- tilt: exp(-(angle / 7 deg)^2), angle of the applied rotation (horizon and verticals lean by it);
- exposure: shift of mean CIELAB lightness from the clean twin, and newly clipped shadows/highlights;
- colour: log-ratio of Hasler-Suesstrunk colourfulness to the clean twin's, and the colour cast (mean a*/b* shift);
- clutter: extra edge density over the clean twin (foreign marks drawn over the scene).

    score = 100 * (0.12 + 0.85 * (0.30 comp + 0.15 tilt + 0.20 exposure + 0.15 colour + 0.20 clutter))

The attribute texts are written from the same measurements, so they explain the score without stating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.color import rgb2lab

from tatar.config import SyntheticConfig
from tatar.data.checks import RawRow
from tatar.data.registry import SYNTHETIC_SCALE
from tatar.data.sources import crop_window, load_photo, resize, rng_for, save_png, subject, to_uint8

DATASET = "synthetic_iaa"
WEIGHTS = {"composition": 0.30, "tilt": 0.15, "exposure": 0.20, "colour": 0.15, "clutter": 0.20}
THIRDS = [(x, y) for x in (1 / 3, 2 / 3) for y in (1 / 3, 2 / 3)]
CASTS = {"warm": (0.07, 0.02, -0.07), "cool": (-0.06, 0.0, 0.08), "green": (-0.04, 0.07, -0.04),
         "magenta": (0.06, -0.06, 0.05)}


# ------------------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Plan:
    framing: str  # aimed placement: thirds | centre | edge (the texts describe the measured one)
    target: tuple[float, float]  # where the scene's subject point should land in the frame (0-1)
    crop: float  # frame side as a fraction of the scene's short side
    tilt: float = 0.0  # degrees
    ev: float = 0.0  # exposure change in stops
    saturation: float = 1.0
    cast: str | None = None
    clutter: int = 0  # number of foreign marks


def make_plan(rng: np.random.Generator, variant: int) -> Plan:
    """Variant 0 is the best version of the scene (thirds framing, nothing else); the others draw 0-3 defects."""
    framing = "thirds" if variant == 0 else str(rng.choice(["thirds", "centre", "edge"], p=[0.4, 0.3, 0.3]))
    if framing == "thirds":
        target = THIRDS[int(rng.integers(4))]
    elif framing == "centre":
        target = (0.5, 0.5)
    else:  # subject pushed against one side
        side = float(rng.choice([0.06, 0.94]))
        target = (side, float(rng.uniform(0.3, 0.7))) if rng.random() < 0.5 else (float(rng.uniform(0.3, 0.7)), side)
    plan = dict(framing=framing, target=target, crop=float(rng.uniform(0.55, 0.9)))
    if variant == 0:
        return Plan(**plan)
    for defect in rng.permutation(["tilt", "exposure", "colour", "clutter"])[: int(rng.integers(0, 4))]:
        if defect == "tilt":
            plan["tilt"] = float(rng.choice([-1, 1]) * rng.uniform(3, 14))
        elif defect == "exposure":
            plan["ev"] = float(rng.choice([-1, 1]) * rng.uniform(0.5, 1.6))
        elif defect == "colour":
            if rng.random() < 0.6:
                plan["saturation"] = float(rng.uniform(0.0, 0.45) if rng.random() < 0.5 else rng.uniform(1.7, 2.5))
            if "saturation" not in plan or rng.random() < 0.4:
                plan["cast"] = str(rng.choice(list(CASTS)))
        else:
            plan["clutter"] = int(rng.integers(3, 15))
    return Plan(**plan)


# ---------------------------------------------------------------------------------------- rendering
def _gray(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.299, 0.587, 0.114])


def _gradient(gray: np.ndarray) -> np.ndarray:
    return np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1))


def subject_point(image: np.ndarray) -> tuple[float, float]:
    """(x, y) in [0, 1] of the strongest concentration of detail: the peak of gradient energy smoothed at 1/8 of
    the frame. A peak, unlike a centroid, stays put when the frame is cropped around it."""
    energy = _gradient(_gray(image))
    # Block-average to about 32 px on the short side first: the same peak, a fraction of the smoothing cost.
    f = max(1, min(energy.shape) // 32)
    h, w = energy.shape[0] // f, energy.shape[1] // f
    energy = energy[:h * f, :w * f].reshape(h, f, w, f).mean(axis=(1, 3))
    energy = ndimage.gaussian_filter(energy, sigma=min(h, w) / 8, mode="constant")
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return (x + 0.5) / w, (y + 0.5) / h


def frame(scene: np.ndarray, plan: Plan, size: int) -> np.ndarray:
    """Tilt the scene, then cut a square frame that puts its subject point at the plan's target."""
    h, w = scene.shape[:2]
    if plan.tilt:
        rotated = np.asarray(Image.fromarray(to_uint8(scene)).rotate(plan.tilt, Image.BICUBIC), np.float64) / 255
        # Keep only the centred region the rotation left without empty corners.
        a = np.deg2rad(abs(plan.tilt))
        k = 1.0 / (np.cos(a) + np.sin(a) * max(w / h, h / w))
        ch, cw = int(h * k), int(w * k)
        scene = rotated[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        h, w = ch, cw
    side = int(min(h, w) * plan.crop)
    cx, cy = subject_point(scene)
    x = int(np.clip(cx * w - plan.target[0] * side, 0, w - side))
    y = int(np.clip(cy * h - plan.target[1] * side, 0, h - side))
    return resize(scene[y:y + side, x:x + side], (size, size))


def style(image: np.ndarray, plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Exposure, colour and clutter changes on a framed image."""
    out = np.clip(image * 2.0 ** plan.ev, 0, 1)
    if plan.saturation != 1.0:
        gray = _gray(out)[..., None]
        out = np.clip(gray + (out - gray) * plan.saturation, 0, 1)
    if plan.cast:
        out = np.clip(out + np.array(CASTS[plan.cast]), 0, 1)
    if plan.clutter:
        im = Image.fromarray(to_uint8(out))
        draw = ImageDraw.Draw(im)
        size = out.shape[0]
        for _ in range(plan.clutter):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            extent = int(rng.integers(max(2, size // 16), max(3, size // 4)))
            shape = rng.integers(3)
            if shape == 0:
                draw.rectangle([x0, y0, x0 + extent, y0 + extent // 2], fill=colour)
            elif shape == 1:
                draw.ellipse([x0, y0, x0 + extent, y0 + extent], outline=colour, width=max(1, size // 48))
            else:
                x1, y1 = (int(v) for v in rng.integers(0, size, 2))
                draw.line([x0, y0, x1, y1], fill=colour, width=max(1, size // 48))
        out = np.asarray(im, np.float64) / 255
    return out


# -------------------------------------------------------------------------------------- measurement
def measure(image: np.ndarray) -> dict[str, float]:
    """Properties of an RGB [0, 1] image that the score and the texts are built from."""
    lab = rgb2lab(image)
    lightness = lab[..., 0] / 100
    rgb = image * 255
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    gray = _gray(image)
    x, y = subject_point(image)
    return {
        "lightness": float(lightness.mean()),
        "contrast": float(lightness.std()),
        "clipped": float(((lightness < 0.03) | (lightness > 0.97)).mean()),
        # Hasler & Suesstrunk (2003) colourfulness.
        "colourfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
        "a": float(lab[..., 1].mean()),
        "b": float(lab[..., 2].mean()),
        "edge_density": float((_gradient(gray) > 0.5).mean()),
        "sharpness": float(ndimage.laplace(gray).var()),
        "subject_x": x,
        "subject_y": y,
        # Distance of the subject from the nearest frame edge (0-0.5).
        "subject_margin": min(x, 1 - x, y, 1 - y),
    }


def sub_scores(m: dict[str, float], clean: dict[str, float], tilt: float) -> dict[str, float]:
    x, y = m["subject_x"], m["subject_y"]
    d_thirds = min(np.hypot(x - tx, y - ty) for tx, ty in THIRDS)
    placement = max(1 - d_thirds / 0.2, 0.8 * (1 - np.hypot(x - 0.5, y - 0.5) / 0.2), 0.0)
    cut = np.clip((0.15 - m["subject_margin"]) / 0.1, 0, 1)  # subject against the frame edge
    cast = np.hypot(m["a"] - clean["a"], m["b"] - clean["b"])
    return {
        "composition": float((0.25 + 0.75 * placement) * (1 - 0.5 * cut)),
        "tilt": float(np.exp(-((tilt / 7.0) ** 2))),
        "exposure": float(np.exp(-(((m["lightness"] - clean["lightness"]) / 0.14) ** 2))
                          * (1 - min(1.0, 3 * max(0.0, m["clipped"] - clean["clipped"])))),
        "colour": float(np.exp(-((np.log((m["colourfulness"] + 1) / (clean["colourfulness"] + 1)) / 0.8) ** 2))
                        * np.exp(-((cast / 10.0) ** 2))),
        "clutter": float(np.exp(-max(0.0, m["edge_density"] - clean["edge_density"]) / 0.06)),
    }


def aesthetic_score(sub: dict[str, float]) -> float:
    return 100.0 * (0.12 + 0.85 * sum(WEIGHTS[k] * sub[k] for k in WEIGHTS))


# ------------------------------------------------------------------------------------ attribute texts
def _where(x: float, y: float) -> str:
    horizontal = "left" if x < 0.42 else "right" if x > 0.58 else "centre"
    vertical = "upper" if y < 0.42 else "lower" if y > 0.58 else "middle"
    if horizontal == "centre":
        return "dead centre" if vertical == "middle" else f"the {vertical} centre"
    return f"the {vertical} {horizontal}" if vertical != "middle" else f"the middle {horizontal}"


def _level(value: float, cuts: tuple[float, ...], words: tuple[str, ...]) -> str:
    return words[int(np.searchsorted(cuts, value))]


# How the overall text names each sub-score when it is the strongest / weakest aspect.
ASPECT_NAMES = {"composition": "the placement of the subject", "tilt": "the level framing",
                "exposure": "the exposure", "colour": "the colour", "clutter": "the clean, uncluttered frame"}
FRAMINGS = {"thirds": "a considered rule-of-thirds placement", "centre": "a plain, centred, documentary framing",
            "edge": "an off-balance framing that crowds one edge", "loose": "a loose, undecided placement"}


def measured_framing(m: dict[str, float]) -> str:
    """Which of FRAMINGS the measured subject position shows (whatever the plan aimed for)."""
    x, y = m["subject_x"], m["subject_y"]
    if m["subject_margin"] < 0.12:
        return "edge"
    if min(np.hypot(x - tx, y - ty) for tx, ty in THIRDS) < 0.1:
        return "thirds"
    return "centre" if np.hypot(x - 0.5, y - 0.5) < 0.1 else "loose"


def technical_faults(plan: Plan, m: dict[str, float], clean: dict[str, float]) -> list[str]:
    faults = []
    d_light = m["lightness"] - clean["lightness"]
    if abs(d_light) > 0.06:
        faults.append("the exposure is too bright, washing out the highlights" if d_light > 0
                      else "the exposure is too dark, burying the shadows")
    if plan.cast:
        faults.append(f"a {plan.cast} colour cast tints the whole frame")
    if plan.saturation < 0.5:
        faults.append("the colour has been drained almost to grey")
    elif plan.saturation > 1.5:
        faults.append("the saturation is pushed until colours bleed")
    if abs(plan.tilt) >= 2:
        faults.append(f"the frame leans about {abs(plan.tilt):.0f} degrees, so horizontals and verticals run askew")
    return faults


def attribute_texts(source: str, plan: Plan, m: dict[str, float], clean: dict[str, float],
                    sub: dict[str, float], score: float) -> dict[str, str]:
    """ArtiMuse-style descriptions of all eight attributes (ATTRIBUTES order), written from the measurements."""
    palette = _level(m["colourfulness"], (12, 30, 60, 95),
                     ("nearly monochrome", "muted", "moderately colourful", "vivid", "garish and oversaturated"))
    tones = _level(m["contrast"], (0.12, 0.22), ("flat and low in contrast", "balanced", "strong and punchy"))
    detail = _level(m["sharpness"], (0.002, 0.01), ("soft", "reasonably crisp", "crisp and finely detailed"))
    warmth = m["b"] + 0.5 * m["a"]
    placement = measured_framing(m)
    cut = m["subject_margin"] < 0.1
    cluttered = sub["clutter"] < 0.75
    faults = technical_faults(plan, m, clean)
    framing = FRAMINGS[placement]
    ranked = sorted(sub, key=sub.get)
    tier = _level(score, (35, 55, 75), ("a weak", "a flawed", "a competent", "an accomplished"))
    if m["colourfulness"] < 12:
        mood = "quiet, subdued and a little nostalgic"
    elif m["lightness"] < 0.3:
        mood = "sombre and heavy"
    elif m["lightness"] > 0.7:
        mood = "bright and airy"
    else:
        mood = "warm and inviting" if warmth > 12 else "cool and detached" if warmth < -6 else "calm and even"
    return {
        "visual_elements": f"The palette is {palette}, the tonal range is {tones}, and the detail is {detail}; "
                           f"edges and texture cover about {100 * m['edge_density']:.0f}% of the frame.",
        "composition": f"The main subject, the strongest concentration of detail, sits at "
                       f"{_where(m['subject_x'], m['subject_y'])} of a square frame, "
                       + ("pressed against the border so that it is cut off." if cut else "with room around it.")
                       + f" It reads as {framing}.",
        "gestalt": ("Scattered foreign marks break the unity of the picture and compete with the subject for "
                    "attention." if cluttered else "The forms cohere into one whole and the subject separates "
                    "clearly from its ground.") + (" The frame edge leaves the main form incomplete." if cut else ""),
        "technical_execution": (f"Technically, {'; '.join(faults)}." if faults else
                                "Technically clean: exposure, colour balance and a level horizon are all sound.")
                               + f" Focus is {detail}.",
        "theme": f"The image presents {subject(source)}; "
                 + ("the message comes across clearly." if score >= 55 else
                    "the subject is there, but the handling weakens its message."),
        "emotion": f"The mood is {mood}, "
                   + ("and the viewer is invited to linger." if score >= 60 else
                      "though the flaws keep the viewer at a distance."),
        "originality": f"Creatively it relies on {framing}"
                       + (", and the restrained handling of light and colour gives it some individuality."
                          if not faults and not cluttered and placement == "thirds" else
                          "; the departures from convention read as accidents rather than choices."
                          if faults or cluttered else "; it is conventional rather than original."),
        "overall": f"Overall, {tier} image: its strongest aspect is {ASPECT_NAMES[ranked[-1]]}, "
                   f"its weakest {ASPECT_NAMES[ranked[0]]}.",
    }


# ------------------------------------------------------------------------------------------ building
def build_iaa(cfg: SyntheticConfig, seed: int, sources: list[str], split: str, root: Path) -> list[RawRow]:
    rows = []
    for source in sources:
        for crop in range(cfg.crops_per_source):
            window = crop_window(load_photo(source), crop, seed, source, square=False)
            # Work at twice the output size so every crop is a downscale.
            h, w = window.shape[:2]
            short = 2 * cfg.image_size
            scene = resize(window, (round(w * short / min(h, w)), round(h * short / min(h, w))))
            for variant in range(cfg.iaa_variants_per_source):
                rng = rng_for(seed, "iaa", source, crop, variant)
                plan = make_plan(rng, variant)
                framed = frame(scene, plan, cfg.image_size)
                image8 = to_uint8(style(framed, plan, rng))
                clean = measure(np.asarray(to_uint8(framed), np.float64) / 255)
                m = measure(image8.astype(np.float64) / 255)
                sub = sub_scores(m, clean, plan.tilt)
                score = round(aesthetic_score(sub), 2)
                image = f"{split}/{source}_c{crop}_v{variant:02d}.png"
                save_png(image8, root / image)
                texts = attribute_texts(source, plan, m, clean, sub, score)
                rows.append(RawRow(dataset=DATASET, task="iaa", split=split, image=image, root=root.as_posix(),
                                   score=score, scale=SYNTHETIC_SCALE, where=f"synthetic variant {variant}",
                                   attributes=texts))
    return rows
