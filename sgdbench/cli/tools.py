"""``sgdbench lr-find``, ``list`` and ``schema``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sgdbench.cli.base import (
    Command,
    Flag,
    ListWhat,
    _fail,
    app,
)
from sgdbench.errors import SgdbenchError


class LrFindFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("lr-find", cls=Command)
def lr_find(
    grid: Annotated[
        Path, typer.Argument(help="grid file (TOML); its first configuration is tested")
    ],
    start: Annotated[float, typer.Option(min=0, help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option(min=0, help="last learning rate")] = 10.0,
    steps: Annotated[
        int, typer.Option(min=2, help="steps of the range test (with --sweep: per lr)")
    ] = 100,
    stop_factor: Annotated[
        float, typer.Option(help="stop once the smoothed loss exceeds this times its minimum")
    ] = 4.0,
    beta: Annotated[
        float | None,
        typer.Option(help="EMA smoothing factor [0.98 for minibatches, 0 for full batch]"),
    ] = None,
    sweep: Annotated[
        bool,
        Flag("--sweep", help="train K log-spaced lrs at once (stacked engine) instead"),
    ] = False,
    k: Annotated[int, typer.Option("--k", min=2, help="--sweep: number of learning rates")] = 64,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="picture file [results/<name>/plots/lr_find.png]"),
    ] = None,
    fmt: Annotated[
        LrFindFormat, typer.Option("--format", help="table | json (every point)")
    ] = LrFindFormat.table,
    verbose: Annotated[bool, Flag("--verbose", "-v")] = False,
) -> None:
    """Learning-rate range test: grow the lr exponentially, record loss vs lr, suggest lrs.

    Example: sgdbench lr-find experiments/quickstart.toml --start 1e-5 --end 10

    With --sweep: sgdbench lr-find grid.toml --sweep --k 64 --steps 200
    """
    try:
        from sgdbench import lrfind_report

        text = lrfind_report.main(
            grid,
            start=start,
            end=end,
            steps=steps,
            stop_factor=stop_factor,
            beta=beta,
            sweep=sweep,
            k=k,
            out=out,
            fmt=fmt.value,
        )
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    sys.stdout.write(text)


@app.command("list", cls=Command)
def list_(what: Annotated[ListWhat, typer.Argument(help="problems | optimizers | keys")]) -> None:
    """List built-in problems or available optimizers with their parameters, or the keys of a
    grid file."""
    if what is ListWhat.keys:
        from sgdbench.schema import key_rows

        for key, default, meaning in key_rows():
            print(f"{key} [{default.strip('`')}]: {meaning}")
        return
    if what is ListWhat.problems:
        from sgdbench.problems.registry import PROBLEMS

        for info in PROBLEMS.values():
            print(f"{info.name}: {info.summary}")
            for p in info.params:
                default = "required" if p.required else f"default {p.default!r}"
                choices = f" ({' | '.join(p.choices)})" if p.choices else ""
                print(f"    {p.name} [{p.kind}, {default}]{choices}: {p.help}")
        print('plug-in: name = "package.module:function" returning an sgdbench.Problem')
        return
    from sgdbench import optimizer_catalog

    # Read from torch's source when it reads plainly (no 4 s torch import), else ask torch.
    catalog = optimizer_catalog.keyword_defaults(optimizer_catalog.RESERVED)
    if catalog is None:
        from sgdbench import optimizers

        catalog = {
            cls.__name__: optimizers.keyword_defaults(name)
            for name, cls in optimizers.optimizer_classes().items()
        }
    for class_name, defaults in sorted(catalog.items(), key=lambda item: item[0].lower()):
        why = optimizer_catalog.UNSUPPORTED.get(class_name)
        note = f"  ({why})" if why else ""
        kwargs = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        print(f"{class_name}: {kwargs}{note}")
    for name, preset in optimizer_catalog.BUILTIN_PRESETS.items():
        body = ", ".join(f"{k}={v!r}" for k, v in preset.items() if k != "type")
        print(f"preset {name}: {preset['type']}({body})")


@app.command("schema", cls=Command)
def schema_() -> None:
    """Print the JSON Schema of a grid file, for editor completion and checks.

    Example: sgdbench schema > grid.schema.json, then start a grid with
    #:schema ./grid.schema.json (Taplo / Even Better TOML).
    """
    import json

    from sgdbench.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
