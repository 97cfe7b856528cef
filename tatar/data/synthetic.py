"""The embedded default dataset, built offline and deterministically from scikit-image's photographs.

Layout under ``out_dir`` (``data/synthetic`` in the pipeline)::

    iqa/{train,test}/<photo>_c<crop>_<distortion>_<level>.png   KADID-style distortions, full-reference MOS
    iaa/{train,test}/<photo>_c<crop>_v<variant>.png             framing/tilt/exposure/colour/clutter variants

Train and test come from disjoint photographs (``data.synthetic.test_sources``); ``data.synthetic.dead_leaves``
procedural scenes join the training side only. The same seed and sizes give byte-identical files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tatar.config import SyntheticConfig
from tatar.data import dead_leaves
from tatar.data.checks import RawRow
from tatar.data.sources import split_sources
from tatar.data.synthetic_iaa import build_iaa
from tatar.data.synthetic_iqa import build_iqa


def build_synthetic(cfg: SyntheticConfig, seed: int, out_dir: Path) -> list[RawRow]:
    """Render both synthetic sets into ``out_dir`` (replacing what was there) and return their rows; each row's
    root is ``out_dir/iqa`` or ``out_dir/iaa`` as given (relative stays relative)."""
    train, test = split_sources(cfg.sources, cfg.test_sources)
    train += dead_leaves.names(cfg.dead_leaves)
    rows: list[RawRow] = []
    for task, build in (("iqa", build_iqa), ("iaa", build_iaa)):
        root = out_dir / task
        if root.exists():
            shutil.rmtree(root)  # stale images from a larger earlier build must not linger
        for split, sources in (("train", train), ("test", test)):
            part = cfg
            if task == "iqa" and split == "train" and cfg.iqa_train_crops:
                part = cfg.model_copy(update={"crops_per_source": cfg.iqa_train_crops})
            rows += build(part, seed, sources, split, root)
    return rows
