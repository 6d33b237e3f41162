"""Reading a grid file: its text (a byte-order mark allowed), its TOML, a bound on its nesting,
and its schema. Every error is a ``GridError`` naming the file and the dotted key. No torch."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sgdbench.errors import GridError
from sgdbench.limits import MAX_DEPTH
from sgdbench.schema import GridFile, SchemaError, validate


def read(path: str | Path, text: str | None = None) -> tuple[str, dict[str, Any]]:
    """The text of the grid file at ``path`` and its parsed TOML. ``text``: the grid's TOML
    when it is not read from ``path`` (a suite member); ``path`` still names it in errors."""
    file, path = str(path), Path(path)
    try:
        # utf-8-sig: Windows editors start files with a byte-order mark, which TOML rejects.
        text = path.read_text(encoding="utf-8-sig") if text is None else text
    except FileNotFoundError:
        raise GridError(file, None, "no such file") from None
    except IsADirectoryError:
        raise GridError(file, None, "is a folder, not a grid file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GridError(file, None, f"cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GridError(file, None, f"TOML syntax error: {e}") from None
    except RecursionError:
        raise GridError(
            file, None, f"nested too deeply to parse (the limit is {MAX_DEPTH} levels)"
        ) from None
    deep = _too_deep(data, "")
    if deep is not None:
        raise GridError(file, deep, f"nested more than {MAX_DEPTH} levels deep")
    return text, data


def load(path: str | Path, text: str | None = None) -> tuple[str, dict[str, Any], GridFile]:
    """Read and validate the grid file at ``path``: its text, its TOML and its ``GridFile``."""
    text, data = read(path, text)
    # Absent sections are empty tables, so that their required keys are what the error names.
    for section in ("problem", "train", "grid"):
        data.setdefault(section, {})
    try:
        return text, data, validate(data)
    except SchemaError as e:
        raise GridError(str(path), e.key, e.message) from None


def _too_deep(value: Any, key: str, depth: int = 0) -> str | None:
    """The key under which ``value`` nests tables or arrays more than ``MAX_DEPTH`` deep."""
    if depth > MAX_DEPTH:
        return key
    items: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for k, v in items:
        sub = key  # name only the outer two levels: a deep value's path is hundreds of keys long
        if depth < 2:
            sub = f"{key}{k}" if k.startswith("[") else (f"{key}.{k}" if key else k)
        found = _too_deep(v, sub, depth + 1)
        if found is not None:
            return found
    return None
