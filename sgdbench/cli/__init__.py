"""The ``sgdbench`` command line. Heavy imports (torch, pandas) happen inside commands so that
``sgdbench --help`` stays fast. Importing the command modules registers their commands on
``app``, in the order ``--help`` lists them."""

from __future__ import annotations

# The order of these imports is the order of the commands in --help.
# isort: off
from sgdbench.cli import run  # noqa: F401
from sgdbench.cli import results  # noqa: F401
from sgdbench.cli import tools  # noqa: F401

# isort: on
from sgdbench.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
