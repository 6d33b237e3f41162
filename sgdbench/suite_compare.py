"""``sgdbench compare BASE_SUITE NEW_SUITE``: ``compare`` of each problem both suites ran.

Each member folder is an ordinary results folder, so this only pairs them by label and joins
``compare.render``'s output; a problem that only one side ran is named, not compared.
"""

from __future__ import annotations

import json
from pathlib import Path

from sgdbench import compare
from sgdbench.errors import UsageError
from sgdbench.suite import is_suite_folder, suite_members


def render(
    base: Path,
    new: Path,
    *,
    threshold: str | float = "5%",
    fail_on: list[str] | None = None,
    fmt: str = "table",
    color: bool = False,
    width: int = 100,
    all_versions: bool = False,
) -> tuple[str, bool]:
    """(text, regressed): every shared problem compared in ``fmt``; regressed if any one did."""
    if not (is_suite_folder(base) and is_suite_folder(new)):
        one = base if not is_suite_folder(base) else new
        raise UsageError(f"{one}: not a suite results folder; compare a suite with a suite")
    base_labels = [m for m in suite_members(base) if (Path(base) / m).is_dir()]
    new_labels = [m for m in suite_members(new) if (Path(new) / m).is_dir()]
    shared = [m for m in base_labels if m in new_labels]
    only_base = [m for m in base_labels if m not in new_labels]
    only_new = [m for m in new_labels if m not in base_labels]
    if not shared:
        raise UsageError(f"{base} and {new}: no problem in common")
    parts: dict[str, str] = {}
    regressed = False
    for label in shared:
        text, worse = compare.render(
            Path(base) / label,
            Path(new) / label,
            threshold=threshold,
            fail_on=fail_on,
            fmt=fmt,
            color=color,
            width=width,
            all_versions=all_versions,
        )
        parts[label] = text
        regressed = regressed or worse
    if fmt == "json":
        doc = {
            "regression": regressed,
            "problems": {label: json.loads(text) for label, text in parts.items()},
            "only_in_base": only_base,
            "only_in_new": only_new,
        }
        return json.dumps(doc, indent=2, allow_nan=False) + "\n", regressed
    heading = "## {}" if fmt == "markdown" else "== {}"
    lines = []
    for label, text in parts.items():
        lines += [heading.format(label), "", text.rstrip("\n"), ""]
    if only_base:
        lines.append(f"only in {base}: {', '.join(only_base)}")
    if only_new:
        lines.append(f"only in {new}: {', '.join(only_new)}")
    verdict = "regression in " if regressed else "no regression in "
    lines.append(f"{verdict}{len(shared)} problem(s) compared")
    return "\n".join(lines) + "\n", regressed
