"""``sgdbench report DIR --format html``: the whole report as one self-contained HTML page.

Everything is inline: the plots are SVG data URIs, the style sheet and the few lines of
JavaScript that sort the table live in the page, so the file opens offline, attached to a pull
request or copied off a cluster. The numbers come from ``report.build`` (the same summary
table, headline and verdicts as every other format) and the pictures from ``plot.plot``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError

PLOTS = (
    ("curves", "step", "Loss curves"),
    ("lr", "step", "Learning-rate sensitivity"),
    ("speed", "step", "Speed to target"),
)
# Header of report.display_rows(wide=True) -> the summary column whose number sorts it.
SORT_COLUMNS = report.SORT_BY

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.muted { color: #666; }
.headline p { margin: 0.3em 0; }
.headline .first { font-weight: 600; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #eee; text-align: right;
         white-space: nowrap; }
th.label, td.label { text-align: left; }
th { cursor: pointer; user-select: none; background: #f6f6f6; position: sticky; top: 0; }
th[aria-sort=ascending]::after { content: " ▲"; }
th[aria-sort=descending]::after { content: " ▼"; }
tr.fastest td { background: #e8f5e9; }
tr.diverged td { color: #b03000; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
"""

# Sorting by a header click; errors land in #js-errors so a headless browser can read them.
SCRIPT = """
window.onerror = function (message, source, line) {
  var box = document.getElementById("js-errors");
  box.hidden = false;
  box.textContent += message + " (line " + line + ")\\n";
};
function sortTable(th) {
  var table = th.closest("table"), body = table.tBodies[0];
  var index = Array.prototype.indexOf.call(th.parentNode.children, th);
  var descending = th.getAttribute("aria-sort") === "ascending";
  var rows = Array.prototype.slice.call(body.rows);
  function key(row) {
    var cell = row.cells[index], raw = cell.getAttribute("data-sort");
    var text = raw === null ? cell.textContent : raw;
    var number = parseFloat(text);
    return { empty: text === "" || text === "-", number: number, text: text };
  }
  var numeric = rows.every(function (r) { var k = key(r); return k.empty || !isNaN(k.number); });
  rows.sort(function (a, b) {
    var ka = key(a), kb = key(b);
    if (ka.empty !== kb.empty) { return ka.empty ? 1 : -1; }  // blanks last either way
    var order = numeric ? ka.number - kb.number : ka.text.localeCompare(kb.text);
    return descending ? -order : order;
  });
  rows.forEach(function (r) { body.appendChild(r); });
  Array.prototype.forEach.call(th.parentNode.children, function (h) {
    h.removeAttribute("aria-sort");
  });
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
}
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () { sortTable(th); });
});
// A link may carry a sorted view: report.html#sort=3 (ascending) or #sort=3- (descending).
var wanted = location.hash.match(/^#sort=(\\d+)(-?)$/);
if (wanted) {
  var th = document.querySelectorAll("table.sortable th")[Number(wanted[1])];
  sortTable(th);
  if (wanted[2] === "-") { sortTable(th); }
}
window.addEventListener("load", function () {
  var images = document.querySelectorAll("figure img");
  var drawn = Array.prototype.filter.call(images, function (img) {
    return img.complete && img.naturalWidth > 0;
  });
  document.body.setAttribute("data-images-drawn", drawn.length + "/" + images.length);
});
"""


def render_html(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    sort: str | None = None,
    target_loss: float | None = None,
    all_versions: bool = False,
) -> str:
    """The report of a results folder as one self-contained HTML page."""
    results = Path(results)
    runs, table, head = report.build(
        results,
        by=by,
        best=best,
        sort=sort,
        target_loss=target_loss,
        all_versions=all_versions,
    )
    title = f"{results.name}: {len(table)} {'group(s)' if by else 'configuration(s)'}"
    return page(
        title,
        f'<p class="muted">{_e(str(results))}{" — best lr per group" if best else ""}</p>',
        _headline(head),
        "<h2>Configurations</h2>",
        '<p class="muted">Medians over seeds [interquartile range]; click a header to sort.</p>',
        _table(table, head),
        _verdicts(runs, table),
        _plots(results, best=best),
        file_section("Grid as run", results / "grid.toml"),
        environment_section(results / "env.json"),
    )


def page(title: str, *sections: str) -> str:
    """A whole self-contained page: ``title`` as its heading, then the sections (HTML), then
    the sorting script. Empty sections are left out."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sgdbench · {_e(title)}</title><style>{STYLE}</style></head><body>",
        '<pre id="js-errors" hidden></pre>',
        f"<h1>{_e(title)}</h1>",
        *sections,
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def escape(text: Any) -> str:
    """Text as HTML (quotes too: safe in attributes)."""
    return html.escape(str(text), quote=True)


_e = escape


def _headline(head: report.Headline) -> str:
    out = ['<section class="headline">']
    for first, details, is_list in report.headline_blocks(head):
        out.append(f'<p class="first">{_e(first)}</p>')
        if is_list:
            out.append("<ul>" + "".join(f"<li>{_e(d)}</li>" for d in details) + "</ul>")
        elif details:
            out.append(f"<p>{_e(' '.join(details))}</p>")
    out.append("</section>")
    return "\n".join(out)


def _sort_value(value: Any) -> str | None:
    if value is None or isinstance(value, str | bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return repr(number) if math.isfinite(number) else ("" if math.isnan(number) else "1e308")


def _table(table: pd.DataFrame, head: report.Headline) -> str:
    header, rows = report.display_rows(table, wide=True)
    labels = table.attrs["labels"]
    fastest = head.fastest["configuration"] if head.fastest else None
    out = ['<div class="scroll"><table class="sortable" id="configurations"><thead><tr>']
    for i, h in enumerate(header):
        cls = ' class="label"' if i < len(labels) else ""
        out.append(f'<th scope="col"{cls}>{_e(h)}</th>')
    out.append("</tr></thead><tbody>")
    for (_, r), cells in zip(table.iterrows(), rows, strict=True):
        classes = []
        if fastest and report.describe(r, labels) == fastest:
            classes.append("fastest")
        elif r.get("n_diverged"):
            classes.append("diverged")
        out.append(f'<tr class="{" ".join(classes)}">' if classes else "<tr>")
        for i, (h, cell) in enumerate(zip(header, cells, strict=True)):
            column = labels[i] if i < len(labels) else SORT_COLUMNS.get(h)
            key = _sort_value(r[column]) if column in r else None
            out.append(cell_html(cell, label=i < len(labels), sort_key=key))
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def cell_html(text: str, *, label: bool, sort_key: str | None) -> str:
    """A table cell: a label (left-aligned) or a value, with the number it sorts by, if any."""
    attrs = ' class="label"' if label else ""
    if sort_key is not None:
        attrs += f' data-sort="{sort_key}"'
    return f"<td{attrs}>{escape(text)}</td>"


def _verdicts(runs: pd.DataFrame, table: pd.DataFrame) -> str:
    """Each configuration's verdict, and the reasons stored with its runs' verdicts (runs with
    the same verdict and reason share a line, their seeds listed)."""
    labels = table.attrs["labels"]
    by_run = runs.set_index("run_id")
    items = []
    for _, r in table.iterrows():
        reasons: dict[str, list[str]] = {}
        for rid in r["run_ids"]:
            if rid not in by_run.index:
                continue
            run = by_run.loc[rid]
            detail = run.get("verdict_detail") or run.get("message") or ""
            why = f"{run.get('verdict') or run['status']}" + (f": {detail}" if detail else "")
            reasons.setdefault(why, []).append(f"{run['seed']} ({rid})")
        lines = "".join(
            f'<li>{_e(why)} <span class="muted">— seed {_e(", ".join(seeds))}</span></li>'
            for why, seeds in reasons.items()
        )
        items.append(
            f"<li><b>{_e(report.describe(r, labels))}</b>: {_e(r.get('verdict', ''))}"
            + (f"<ul>{lines}</ul>" if lines else "")
            + "</li>"
        )
    return '<h2>Verdicts</h2><ul class="verdicts">' + "".join(items) + "</ul>"


def _plots(results: Path, *, best: bool) -> str:
    from sgdbench import plot

    out = ["<h2>Plots</h2>"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, x, caption in PLOTS:
            path = Path(tmp) / f"{kind}.svg"
            try:
                plot.plot(results, kind=kind, x=x, out=path, best=best)
            except UsageError as e:  # e.g. one learning rate, no target: say why, go on
                out.append(f'<p class="muted">{_e(caption)}: not drawn ({_e(e)}).</p>')
                continue
            out.append(figure(kind, caption, path))
    return "\n".join(out)


def figure(kind: str, caption: str, svg: Path) -> str:
    """An SVG file inlined as a figure (a data URI: the page needs no other file)."""
    data = base64.b64encode(svg.read_bytes()).decode("ascii")
    return (
        f'<figure id="plot-{kind}"><img alt="{_e(caption)}" '
        f'src="data:image/svg+xml;base64,{data}"><figcaption>{_e(caption)}'
        "</figcaption></figure>"
    )


def file_section(title: str, path: Path) -> str:
    if not path.exists():
        return f'<h2>{_e(title)}</h2><p class="muted">{_e(path.name)} not found.</p>'
    return f"<h2>{_e(title)}</h2><pre>{_e(path.read_text())}</pre>"


def environment_section(path: Path) -> str:
    if not path.exists():
        return file_section("Environment", path)
    try:
        text = json.dumps(json.loads(path.read_text()), indent=2)
    except json.JSONDecodeError:
        text = path.read_text()
    return f"<h2>Environment</h2><pre>{_e(text)}</pre>"
