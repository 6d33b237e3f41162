"""``sgdbench report --format html``: one self-contained page, checked with a parser here and,
where Debian's chromium is installed, in a real headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sgdbench import report
from tests.helpers import cli
from tests.report_results import results


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


@pytest.fixture(scope="module")
def page(seeds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    r = cli("report", seeds, "--format", "html", "--out", out)
    assert r.exit_code == 0, r
    assert str(out) in r.stderr and r.stdout == ""
    return out


class Page(HTMLParser):
    """Tags with their attributes, table rows and text, as a test needs them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self.headers: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if tag == "th":
                self.headers.append(text)
            elif self._in_body:
                self.rows[-1].append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text())
    return p


def test_page_is_self_contained_with_every_plot(page: Path) -> None:
    p = parse(page)
    images = [a for tag, a in p.tags if tag == "img"]
    assert len(images) == 3  # curves, lr, speed
    for a in images:
        src = a["src"] or ""
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert "<svg" in svg[:2000] and "<path" in svg
        assert not re.search(r"(href|src)=\"(https?:)?//", svg)
    for tag, a in p.tags:  # nothing fetched from anywhere: no external script, style, link
        for key in ("src", "href"):
            value = a.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, value)
        assert tag != "link"
        assert not (tag == "script" and a.get("src"))
    assert {a.get("id") for tag, a in p.tags if tag == "figure"} == {
        "plot-curves",
        "plot-lr",
        "plot-speed",
    }


def test_page_has_the_reports_numbers(page: Path, seeds: Path) -> None:
    runs, table, head = report.build(seeds)
    header, rows = report.display_rows(table, wide=True)
    p = parse(page)
    assert p.headers == header
    assert sorted(p.rows) == sorted(rows)  # every configuration, formatted as the report does
    text = " ".join(" ".join(p.text).split())
    for first, _, _ in report.headline_blocks(head):
        assert " ".join(first.split()) in text
    for detail in runs["verdict_detail"].dropna().unique():  # the verdicts with their reasons
        assert detail in text
    assert 'name = "seeds"' in text  # the grid as run
    assert "torch" in text  # env.json


def test_numeric_columns_sort_by_number(page: Path, seeds: Path) -> None:
    """Cells show "1.64k" or "87.4 ms"; they sort by the number behind them."""
    table = report.build(seeds)[1]
    html = page.read_text()
    for column, value in (("samples/s", "samples_per_s_median"), ("runs", "runs")):
        for number in table[value]:
            shown = re.search(rf'<td data-sort="{re.escape(repr(float(number)))}">', html)
            assert shown, (column, number)


@pytest.mark.slow  # a second HTML page with every plot
def test_html_default_path_and_bad_folder(seeds: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seeds, copy)
    r = cli("report", copy, "--format", "html")
    assert r.exit_code == 0, r
    assert (copy / "report.html").read_text().startswith("<!DOCTYPE html>")
    r = cli("report", tmp_path / "missing", "--format", "html", "--out", tmp_path / "r.html")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_out_writes_other_formats_to_a_file(seeds: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "report.md"
    r = cli("report", seeds, "--format", "markdown", "--out", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert out.read_text() == cli("report", seeds, "--format", "markdown").stdout


@pytest.mark.slow  # a grid end to end and its HTML page
def test_lr_plot_that_cannot_be_drawn_says_why(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "g"\n[problem]\nname = "quadratic"\n[train]\nsteps = 5\ninit = [-1.5]\n'
        'target_loss = 0.01\n[grid]\nlr = 0.1\nbatch_size = "full"\n'
    )
    assert cli("run", grid, "--out", tmp_path / "g", "-q").exit_code == 0
    assert cli("report", tmp_path / "g", "--format", "html").exit_code == 0
    text = (tmp_path / "g" / "report.html").read_text()
    assert "needs two learning rates or more" in text
    assert 'id="plot-curves"' in text and 'id="plot-lr"' not in text


# ---------------------------------------------------------------------------------------------
# a real browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.skip(
            "no headless browser: install Debian's chromium (apt-get install chromium) to "
            "check the HTML report in a real browser"
        )
    return found


def run_browser(*args: str) -> subprocess.CompletedProcess[str]:
    base = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a headless browser process
def test_page_loads_in_a_browser_without_errors(page: Path, seeds: Path) -> None:
    done = run_browser("--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    errors = re.search(r'<pre id="js-errors"([^>]*)>(.*?)</pre>', dom, flags=re.S)
    assert errors is not None and "hidden" in errors.group(1), errors and errors.group(2)
    assert errors.group(2) == ""
    assert 'data-images-drawn="3/3"' in dom  # every plot decoded and drawn
    n_configs = len(report.build(seeds)[1])
    assert dom.count("<tr") == n_configs + 1


@pytest.mark.slow  # a headless browser process
def test_table_sorts_in_a_browser(page: Path) -> None:
    """#sort=N- sorts column N descending through the same code a click runs."""
    header = parse(page).headers
    column = header.index("samples/s")
    dom = run_browser("--dump-dom", page.as_uri() + f"#sort={column}-").stdout
    assert 'aria-sort="descending"' in dom
    body = dom.split("<tbody>", 1)[1]
    keys = [float(k) for k in re.findall(r'data-sort="([^"]+)">[^<]*</td></tr>', body)]
    assert len(keys) >= 2 and keys == sorted(keys, reverse=True)


@pytest.mark.slow  # a headless browser process
def test_browser_screenshot(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = run_browser("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert 0.01 < (pixels.mean(axis=2) < 0.9).mean() < 0.5  # text and plots, not a blank page
