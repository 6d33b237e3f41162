"""Suite files: several problems in one benchmark.

A suite is a TOML file with ``[[problems]]`` entries sharing one ``[grid]`` of optimizers,
learning rates and seeds (and optional shared ``[train]``, ``[optimizers.*]``, ``[[exclude]]``,
``[[include]]``)::

    name = "suite_small"
    [train]
    steps = 200
    [grid]
    optimizer = ["sgd", "adam"]
    lr = [0.01, 0.1]
    seed = [0, 1]
    [[problems]]
    label = "quad"              # results sub-folder (default: the problem's name)
    name = "quadratic"          # the [problem] table of the member grid
    dim = 10
    train = {target_loss = 0.01}  # overrides of the shared [train]
    grid = {batch_size = "full"}  # overrides of the shared [grid]
    [[problems]]
    grid_file = "other.toml"    # or: an existing grid file, run as it is

This module only turns a suite into ordinary grids: each member becomes a grid text that
``plan.load_grid`` validates and expands like any grid file, and runs into ``DIR/<label>/`` as a
normal results folder. So resume, ``--dry-run``, ``--jobs``, Dask, the stacked engine (whose groups
come from one grid, hence one problem) and ``compare`` work per problem unchanged.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgdbench.errors import GridError, UsageError, did_you_mean

if TYPE_CHECKING:
    from sgdbench.executors import ExecutorOptions
    from sgdbench.runner import GridOutcome
    from sgdbench.spec import Grid

SUITE_KEYS = (
    "name",
    "description",
    "problems",
    "train",
    "grid",
    "optimizers",
    "exclude",
    "include",
)
MEMBER_KEYS = ("label", "grid_file", "train", "grid")  # the rest of an entry is its [problem]
SUITE_MARKER = "suite.json"  # marks a suite results folder: the suite's name and member labels
SUITE_FILE = "suite.toml"
RESERVED_LABELS = (SUITE_MARKER, SUITE_FILE, "plots")  # what the suite folder itself holds
_LABEL_RE = re.compile(r"[A-Za-z0-9_.-]+")
MAX_MEMBERS = 1000


@dataclass(frozen=True)
class Member:
    """One problem of a suite: its results sub-folder name and its loaded grid."""

    label: str
    grid: Grid


@dataclass(frozen=True)
class Suite:
    """A loaded suite: every member grid validated and expanded, nothing written yet."""

    name: str
    path: Path
    text: str
    members: list[Member]


def _read(path: Path) -> tuple[str, dict[str, Any]] | None:
    try:
        text = path.read_text(encoding="utf-8-sig")
        return text, tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None


def is_suite(path: str | Path) -> bool:
    """True when ``path`` is a readable TOML file with a ``[[problems]]`` array (a suite); any
    other file is left to the grid loader, which reports what is wrong with it."""
    read = _read(Path(path))
    return read is not None and isinstance(read[1].get("problems"), list)


def is_suite_folder(results: str | Path) -> bool:
    """True for a folder that ``sgdbench run SUITE`` wrote (it holds ``suite.json``)."""
    return (Path(results) / SUITE_MARKER).is_file()


def suite_members(results: str | Path) -> list[str]:
    """The member labels of a suite results folder, in suite order (``UsageError``: unreadable)."""
    path = Path(results) / SUITE_MARKER
    try:
        members = json.loads(path.read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: unreadable suite marker: {e}") from None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise UsageError(f"{path}: unreadable suite marker: members must be a list of names")
    return members


# ---------------------------------------------------------------------------------------------
# TOML text of a member grid. The value space is TOML's own minus dates (which no grid key
# accepts); the text is checked to read back to the same data, so an emitter slip cannot change a
# grid silently.


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are all valid TOML escapes; DEL is the one control character
        # JSON leaves bare and TOML forbids.
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    if isinstance(value, dict):
        body = ", ".join(f"{json.dumps(k)} = {_toml_value(v, key)}" for k, v in value.items())
        return "{ " + body + " }" if body else "{}"
    raise ValueError(f"{key}: unsupported value {value!r}")


def grid_text(data: dict[str, Any]) -> str:
    """A grid as TOML text: scalars, then ``[tables]``, then ``[[arrays of tables]]``."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and k in ("exclude", "include")}
    for k, v in data.items():
        if k not in tables and k not in arrays:
            lines.append(f"{json.dumps(k)} = {_toml_value(v, k)}")
    for k, table in tables.items():
        lines += ["", f"[{json.dumps(k)}]"]
        lines += [f"{json.dumps(n)} = {_toml_value(v, f'{k}.{n}')}" for n, v in table.items()]
    for k, entries in arrays.items():
        for entry in entries:
            lines += ["", f"[[{json.dumps(k)}]]"]
            lines += [f"{json.dumps(n)} = {_toml_value(v, f'{k}.{n}')}" for n, v in entry.items()]
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != data:  # pragma: no cover - a bug in the emitter, not user input
        raise AssertionError("member grid text does not read back to its data")
    return text


# ---------------------------------------------------------------------------------------------
# loading


def _fail(file: str, key: str | None, message: str) -> GridError:
    return GridError(file, key, message)


def _table(file: str, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(file, where, "must be a table")
    return value


def _member_data(
    file: str, suite: dict[str, Any], entry: dict[str, Any], label: str, where: str
) -> dict[str, Any]:
    """The member grid as data: the shared tables with the entry's overrides on top."""
    problem = {k: v for k, v in entry.items() if k not in MEMBER_KEYS}
    train = {
        **_table(file, suite, "train", "train"),
        **_table(file, entry, "train", f"{where}.train"),
    }
    grid = {**_table(file, suite, "grid", "grid"), **_table(file, entry, "grid", f"{where}.grid")}
    data: dict[str, Any] = {"name": f"{suite.get('name', Path(file).stem)}.{label}"}
    if isinstance(suite.get("description"), str):
        data["description"] = suite["description"]
    data["problem"] = problem
    for key, value in (("train", train), ("grid", grid)):
        if value:
            data[key] = value
    for key in ("optimizers", "exclude", "include"):
        if key in suite:
            data[key] = suite[key]
    return data


def _relocate(e: GridError, entry: dict[str, Any], where: str) -> GridError:
    """Name the suite's key in a member grid's error: ``problems[2].n_samples``, not
    ``problem.n_samples``; a shared key keeps its own name."""
    key = e.key
    if key is not None:
        section, _, rest = key.partition(".")
        field = re.split(r"[.\[]", rest, maxsplit=1)[0]
        if section == "problem":
            key = f"{where}.{rest}"
        elif section in ("train", "grid") and field in _as_dict(entry.get(section)):
            key = f"{where}.{key}"
    return GridError(e.file, key, e.message)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_label(file: str, where: str, label: Any, seen: dict[str, str]) -> str:
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label) or len(label) > 100:
        raise _fail(
            file, f"{where}.label", f"must be letters, digits, '_', '-' or '.', got {label!r}"
        )
    if label in RESERVED_LABELS or label.startswith("."):
        raise _fail(file, f"{where}.label", f"{label!r} is reserved")
    if label in seen:
        raise _fail(
            file, f"{where}.label", f"{label!r} is already {seen[label]}'s; give each a label"
        )
    seen[label] = where
    return label


def _load_member(
    path: Path,
    data: dict[str, Any],
    entry: Any,
    where: str,
    seen: dict[str, str],
    engine: str | None,
) -> Member:
    """One [[problems]] entry: a grid_file of its own, or a problem over the suite's shared
    tables. Its label is checked (and claimed in ``seen``) before an inline grid is loaded."""
    from sgdbench.plan import load_grid

    file = str(path)
    if not isinstance(entry, dict):
        raise _fail(file, where, "must be a table")
    label = entry.get("label")
    grid_file = entry.get("grid_file")
    if grid_file is not None:
        extra = [k for k in entry if k not in ("label", "grid_file")]
        if extra:
            raise _fail(
                file, f"{where}.{extra[0]}", "a grid_file entry takes only label and grid_file"
            )
        if not isinstance(grid_file, str) or not grid_file:
            raise _fail(file, f"{where}.grid_file", "must be a path to a grid file")
        grid = load_grid(path.parent / grid_file, engine=engine)
        label = _check_label(file, where, grid.name if label is None else label, seen)
        return Member(label, grid)
    if not isinstance(entry.get("name"), str):
        raise _fail(file, f"{where}.name", "required: the problem's name")
    label = _check_label(file, where, entry["name"] if label is None else label, seen)
    member_data = _member_data(file, data, entry, label, where)
    try:
        member_text = grid_text(member_data)
    except ValueError as e:
        raise _fail(file, where, str(e)) from None
    try:
        grid = load_grid(path, engine=engine, text=member_text)
    except GridError as e:
        raise _relocate(e, entry, where) from None
    return Member(label, grid)


def load_suite(path: str | Path, *, engine: str | None = None) -> Suite:
    """Read a suite file and load every member grid (``GridError``, exit 2, on bad input).

    Nothing is written: every member is validated before any of them runs."""
    path = Path(path)
    file = str(path)
    read = _read(path)
    if read is None:  # is_suite said yes a moment ago; a file replaced since then
        raise _fail(file, None, "cannot read the suite file")
    text, data = read
    for key in data:
        if key not in SUITE_KEYS:
            raise _fail(file, key, f"unknown key{did_you_mean(key, SUITE_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _LABEL_RE.fullmatch(name) or len(name) > 100:
        raise _fail(file, "name", f"must be letters, digits, '_', '-' or '.', got {name!r}")
    entries = data["problems"]
    if not entries:
        raise _fail(file, "problems", "needs at least one [[problems]] entry")
    if len(entries) > MAX_MEMBERS:
        raise _fail(file, "problems", f"at most {MAX_MEMBERS} problems, got {len(entries)}")
    seen: dict[str, str] = {}
    members = [
        _load_member(path, data, entry, f"problems[{i}]", seen, engine)
        for i, entry in enumerate(entries)
    ]
    return Suite(name=name, path=path, text=text, members=members)


# ---------------------------------------------------------------------------------------------
# running


def prepare_suite_dir(out_dir: Path) -> None:
    """Refuse (exit 2, nothing touched) a folder that is neither new, empty nor a suite folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_suite_folder(out_dir):
        raise UsageError(
            f"{out_dir}: not empty and not a suite results folder (no {SUITE_MARKER}); "
            "choose an empty or new folder with --out"
        )


def _write_marker(suite: Suite, out_dir: Path) -> None:
    from sgdbench.atomic import atomic_write_text

    labels = [m.label for m in suite.members]
    if is_suite_folder(out_dir):  # members of earlier suite versions stay listed (and reported)
        labels = list(dict.fromkeys([*suite_members(out_dir), *labels]))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / SUITE_FILE, suite.text)
    marker = {"suite": suite.name, "members": labels}
    atomic_write_text(out_dir / SUITE_MARKER, json.dumps(marker, indent=1) + "\n")


def run_suite(
    suite: Suite,
    out_dir: Path,
    *,
    executor: str = "serial",
    options: ExecutorOptions | None = None,
    **run_options: Any,
) -> list[tuple[str, GridOutcome]]:
    """Run every member grid into ``out_dir/<label>/``, in suite order; stops after a member
    that was interrupted or stopped early. ``run_options`` go to ``runner.run_grid``."""
    from sgdbench.runner import prepare_out_dir, run_grid

    prepare_suite_dir(out_dir)
    # Every member folder is checked before the first run, so a clash is refused up front.
    for member in suite.members:
        target = out_dir / member.label
        if target.exists():
            prepare_out_dir(target, member.grid, run_options.get("allow_new_problem", False))
    _write_marker(suite, out_dir)
    outcomes: list[tuple[str, GridOutcome]] = []
    for member in suite.members:
        outcome = run_grid(
            member.grid, out_dir / member.label, executor=executor, options=options, **run_options
        )
        outcomes.append((member.label, outcome))
        if outcome.interrupted or outcome.stopped_early:
            break
    return outcomes
