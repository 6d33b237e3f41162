"""Errors that the command line turns into one-line messages and exit codes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def describe(e: BaseException) -> str:
    """``Type: first line of the message``: how a failed run's message is written."""
    first_line = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__


class SgdbenchError(Exception):
    """Base class: the message is shown to the user as one line."""

    exit_code = 1


class GridError(SgdbenchError):
    """A problem with the grid file, located by file and dotted key.

    Rendered as ``grid.toml: grid.lr[2]: must be > 0, got -0.1``.
    """

    exit_code = 2

    def __init__(self, file: str, key: str | None, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + message)


class UsageError(SgdbenchError):
    """Bad command-line usage or an unusable results folder (exit 2)."""

    exit_code = 2


class KeyedError(ValueError):
    """An invalid value for ``key`` (a problem parameter, a schedule parameter, ...).

    The grid loader prefixes the section (``problem.``) and turns it into a ``GridError``.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"; did you mean batch_size?"`` for the closest of ``options``, or "" when none is close.

    Appended to every "unknown key" message, so a misspelled key names its likely intent.
    """
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
