"""Reading ``params.yaml`` strictly: a syntax error, a duplicated key, a folder or a non-UTF-8 file is a one-line
error naming the file and line, never a traceback or a silently overridden setting.

PyYAML keeps the last of two equal keys without a word, so ``sft:`` written twice would drop half the settings;
the loader here refuses that instead.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated within one mapping."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_params_yaml(path: Path, error: type[Exception]) -> dict:
    """The parsed mapping of ``path``; any problem raises ``error`` with ``path:line: what to fix``."""
    if path.is_dir():
        raise error(f"{path}: is a folder; pass the params file (--params FILE)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise error(f"{path}{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {exc}") from None
    if raw is None:
        raise error(f"{path}: is empty; it needs at least one section (see the README's Configuration)")
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of sections (data, teacher, ...), got a YAML {type(raw).__name__}")
    return raw
