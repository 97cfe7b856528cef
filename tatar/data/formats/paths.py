"""Where a label file's image path points, relative to the source's declared image folder.

Label files name images in their own ways: a bare file name (KonIQ CSV), a path under the release's folder
(DeQA-Score metas: ``KONIQ/images/x.jpg`` while the user declares ``images: /data/KONIQ/images``), or worse,
``../x.png`` and absolute paths. A path that leaves the declared folder is refused (``outside_root``) unless the
source opts in, so the pipeline never sends arbitrary files to a teacher endpoint.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

from tatar.data.checks import OUTSIDE_ROOT  # noqa: F401 - the quarantine reason for OutsideRoot


class OutsideRoot(ValueError):
    """The image path leaves the declared images folder."""


def _strip_repeated_prefix(root: Path, rel: PurePosixPath) -> PurePosixPath:
    """``KONIQ/images/x.jpg`` under a root ending in ``KONIQ/images`` -> ``x.jpg`` (only when that file exists and
    the path as written does not, so a genuinely nested layout is kept)."""
    if (root / rel).exists():
        return rel
    parts = rel.parts
    for k in range(min(len(root.parts), len(parts) - 1), 0, -1):
        if tuple(p.lower() for p in root.parts[-k:]) == tuple(p.lower() for p in parts[:k]):
            stripped = PurePosixPath(*parts[k:])
            if (root / stripped).exists():
                return stripped
    return rel


def resolve_image(root: str, image: str, allow_outside_root: bool = False) -> tuple[str, str]:
    """(root, image relative to root) for a label file's image entry; OutsideRoot when it leaves ``root``."""
    image = image.strip().replace("\\", "/")
    root_path = Path(root)
    if PurePosixPath(image).is_absolute():
        try:
            return root, Path(image).resolve().relative_to(root_path.resolve()).as_posix()
        except ValueError:
            if allow_outside_root:
                return str(Path(image).parent), Path(image).name
            raise OutsideRoot(f"absolute image path {image} is outside the declared images folder {root}") from None
    normal = posixpath.normpath(image)
    if normal == ".." or normal.startswith("../"):
        if allow_outside_root:
            full = (root_path / normal).resolve()
            return str(full.parent), full.name
        raise OutsideRoot(f"image path {image} leaves the declared images folder {root}")
    return root, _strip_repeated_prefix(root_path, PurePosixPath(normal)).as_posix()
