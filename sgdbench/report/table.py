"""The terminal table renderer, as ``report`` and its modules name it: it lives in
``sgdbench.text_table`` so that ``run --dry-run`` prints through it without importing this
package (whose ``__init__`` imports pandas)."""

from __future__ import annotations

from sgdbench.text_table import (
    DEFAULT_WIDTH,
    EDGES,
    GAP,
    TextTable,
    column_widths,
    render_table,
    split_columns,
    terminal_width,
    text_console,
    wrap_lines,
)

__all__ = [
    "DEFAULT_WIDTH",
    "EDGES",
    "GAP",
    "TextTable",
    "column_widths",
    "render_table",
    "split_columns",
    "terminal_width",
    "text_console",
    "wrap_lines",
]
