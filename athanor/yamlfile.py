"""Reading YAML files into pydantic models with errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from athanor.errors import SpecError, validation_message

__all__ = ["duplicate_keys", "line_of", "load_model"]

M = TypeVar("M", bound=BaseModel)


def line_of(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location, or of its nearest parent.

    Args:
        root: The composed YAML document (``yaml.compose``).
        loc: A pydantic error location, e.g. ``("instruments", 0, "envelope", "max_volume_ul")``.
    """
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def duplicate_keys(root: yaml.Node | None) -> list[tuple[int, str, int]]:
    """Every key that appears twice in one mapping of a composed YAML document.

    YAML loaders keep the last of two equal keys without a word, so a campaign file with two
    ``budget:`` blocks would run on the second; the caller refuses them instead.

    Args:
        root: The composed YAML document (``yaml.compose``).

    Returns:
        ``(line, key, first_line)`` per repeated key, 1-based lines, in document order.
    """
    found: list[tuple[int, str, int]] = []
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        found.append((line, key.value, first[key.value]))
                    else:
                        first[key.value] = line
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return sorted(found)


def load_model(path: Path, model: type[M], what: str) -> M:
    """Read ``path`` as YAML and validate it into ``model``.

    Args:
        path: The YAML (or JSON) file.
        model: The pydantic model to validate into.
        what: What the file is, for messages (e.g. ``"lab file"``).

    Raises:
        athanor.errors.SpecError: The file is missing, is not YAML, repeats a key within one mapping,
            or does not validate; one line per problem, as ``path:line: field: message``.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{what} {path} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SpecError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a {what} must be a YAML mapping of fields")
    repeated = duplicate_keys(root)
    if repeated:
        raise SpecError(
            "\n".join(
                f"{path}:{line}: {key!r} appears a second time (first on line {first}); keep one of them"
                " (YAML would silently use the last)"
                for line, key, first in repeated
            )
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            loc = tuple(item["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = line_of(root, loc)
            where = f"{path}:{line}" if line is not None else str(path)
            lines.append(f"{where}: {field}: {validation_message(item)}")
        raise SpecError("\n".join(lines)) from None
