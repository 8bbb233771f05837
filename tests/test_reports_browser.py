"""The HTML report in a real browser: headless Chromium loads it from disk, and the
DOM it built (after load) and a screenshot are checked as a reader would.

Chromium is Debian's (``bash tools/install-chromium.sh``). Without it the test
skips locally and FAILS under CI=true. The report itself has no script; for
the image check, the test loads a copy with a tiny script prepended that, on
``load``, writes each image's naturalWidth into a data attribute and turns
``alert`` into a flag, then reads the DOM back with ``--dump-dom``.

Also a tool: ``python tests/test_reports_browser.py REPORT.html OUT.png [WIDTH HEIGHT]``
takes a screenshot (docs/report-screenshot.png is made this way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import require

# Without the background-networking flags this closed network refuses Chromium's
# own connections (component updates, sync, QUIC probes) and a run can stall.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-extensions",
    "--mute-audio",
]

PROBE = """<script>
window.alert = function () { document.documentElement.setAttribute('data-alerted', '1'); };
window.addEventListener('load', function () {
  var imgs = document.images;
  for (var i = 0; i < imgs.length; i++) {
    imgs[i].setAttribute('data-natural-width', String(imgs[i].naturalWidth));
    imgs[i].setAttribute('data-natural-height', String(imgs[i].naturalHeight));
    var box = imgs[i].getBoundingClientRect();
    imgs[i].setAttribute('data-box', [box.left, box.top, box.width].map(Math.round).join(','));
  }
  document.documentElement.setAttribute('data-probe', 'loaded');
});
</script>"""


def find_chromium() -> str | None:
    """$CHROMIUM, else chromium on PATH, else Debian's /usr/bin/chromium."""
    for cand in (
        os.environ.get("CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def run_chromium(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with the closed-network flags and a fresh profile."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (bash tools/install-chromium.sh)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )


def screenshot(html_path: str | os.PathLike[str], png_path: str | os.PathLike[str],
               width: int = 1280, height: int = 2000) -> Path:
    """A PNG of the page as a browser window of ``width`` x ``height`` shows it."""
    png = Path(png_path).resolve()
    png.unlink(missing_ok=True)
    res = run_chromium([f"--window-size={width},{height}", f"--screenshot={png}",
                        Path(html_path).resolve().as_uri()])
    if not png.is_file():
        raise RuntimeError(
            f"chromium wrote no screenshot (rc {res.returncode}): {res.stderr[-2000:]}"
        )
    return png


def dump_dom(html_path: str | os.PathLike[str]) -> str:
    """The DOM after load, serialised by Chromium."""
    res = run_chromium(
        ["--virtual-time-budget=5000", "--dump-dom", Path(html_path).resolve().as_uri()]
    )
    if res.returncode != 0 or "<html" not in res.stdout:
        raise RuntimeError(
            f"chromium --dump-dom failed (rc {res.returncode}): {res.stderr[-2000:]}"
        )
    return res.stdout


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.tags: list[tuple[str, dict[str, str], tuple[tuple[str, dict[str, str]], ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a, tuple(self.stack)))
        if tag not in ("img", "br", "meta", "col", "input", "link", "hr"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.text.append(data)


require("headless Chromium", find_chromium() is not None, "chromium (root: apt-get install)")


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_chromium()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.results import write_smoke_results
    from reports.build import build_report

    root = write_smoke_results(tmp_path_factory.mktemp("smoke"))
    return build_report(root, formats=["html"])["html"]


@pytest.mark.browser
def test_report_dom_in_chromium(chromium: str, report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    probe = report.with_name("probe.html")
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dom = _Dom()
    dom.feed(dump_dom(probe))
    html_attrs = next(a for t, a, _s in dom.tags if t == "html")
    assert html_attrs.get("data-probe") == "loaded", "the load event never fired"
    assert "data-alerted" not in html_attrs, "a string from the results ran as script"
    assert [t for t, _a, _s in dom.tags if t == "script"] == ["script"]  # only the probe

    # the AP table: 3 detector rows x 5 variant columns, in the paper's order
    rows: dict[str, list[str]] = {}
    for tag, a, stack in dom.tags:
        if tag == "td" and "data-variant" in a:
            tr = next((x for x in reversed(stack) if x[0] == "tr"), None)
            table = next((x for x in reversed(stack) if x[0] == "table"), None)
            if (
                tr
                and table
                and table[1].get("data-block") == "ap"
                and tr[1].get("data-row") == "ours"
            ):
                rows.setdefault(tr[1]["data-detector"], []).append(a["data-variant"])
    assert list(rows) == ["retinanet", "freeanchor", "fsaf"]
    assert all(v == ["baseline", "pconv", "ibn", "sepc_lite", "sepc"] for v in rows.values())

    # every plot decoded: non-zero natural size
    imgs = [a for t, a, _s in dom.tags if t == "img"]
    assert len(imgs) == 4
    for a in imgs:
        assert int(a["data-natural-width"]) > 100 and int(a["data-natural-height"]) > 100, a.get(
            "alt"
        )
    # the error-delta chart stands beside the size chart: same top, to its right, not squeezed
    (sx, sy, sw), (ex, ey, ew) = ([int(v) for v in a["data-box"].split(",")] for a in imgs[1:3])
    assert "by object size" in imgs[1]["alt"] and "TIDE" in imgs[2]["alt"]
    assert sy == ey and ex >= sx + sw and min(sw, ew) > 300

    # the failed cell's error is shown as text, exactly
    assert "RuntimeError: <script>alert(1)</script> & co" in "".join(dom.text)


@pytest.mark.browser
def test_report_screenshot_is_not_blank(chromium: str, report: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = screenshot(report, tmp_path / "report.png", 1280, 1600)
    assert png.stat().st_size > 20_000
    with Image.open(png) as im:
        assert im.size == (1280, 1600)
        rgb = im.convert("RGB")
        small = rgb.resize((320, 400))
        colours = small.getcolors(maxcolors=1 << 16) or []
        assert len(colours) > 50, "a near-uniform screenshot: the page did not render"
        px = list(small.getdata())
        non_white = sum(1 for p in px if sum(p) < 720) / len(px)
        assert non_white > 0.05
        # the failed cell's red and the plots' colours are on the page
        assert any(r > 150 and g < 90 and b < 90 for (_n, (r, g, b)) in colours)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print(__doc__)
        return 2
    w, h = (int(argv[2]), int(argv[3])) if len(argv) == 4 else (1280, 2000)
    print(screenshot(argv[0], argv[1], w, h))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
