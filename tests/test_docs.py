"""The documentation site: its build hook, the built pages, and the pages in a real browser.

* The hook's macros (``docs/_hooks/macros.py``) read numbers from ``results/`` and fail
  loudly when the data they name is not there.
* ``mkdocs build --strict`` builds the site (once per session, into a temporary
  directory); the API and CLI references are generated, a findings page shows the
  numbers of its CSV, nothing reads "nan", and no page loads a script, style sheet,
  font or image from the network.
* Headless Chromium, with networking off, screenshots the index, a findings page and an
  API page; each must render (not a blank page) and any network fetch must fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "_hooks" / "macros.py"


def _hook():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_macros", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the macros ------------------------------------------------------------------------

def test_value_reads_the_one_matching_row():
    m = _hook()
    summary = pd.read_csv(ROOT / "results/nonisomorphic/reference/summary.csv")
    want = float(summary.loc[summary["frac"] == 0.6, "u_acc_median"].iloc[0])
    assert m.expand('{{ value("nonisomorphic/reference/summary.csv", "u_acc_median", frac=0.6) }}') == f"{want:.3f}"
    assert m.expand('{{ value("med_vs_loss/library/summary.csv", "grokked", p=47) }}') == "1"


def test_a_true_false_column_reads_yes_or_no():
    """A one-row bool column comes back from pandas as numpy's bool, which is not an int:
    it must read as in the tables (yes/no), not as the number 0.000."""
    m = _hook()
    assert m.expand('{{ value("resnet_reference/library-4500/sweep.csv", "med_moves_first", seed=0) }}') in ("yes", "no")
    assert m.fmt(np.bool_(True)) == "yes" and m.fmt(False) == "no"


def test_macros_fail_when_the_data_is_not_there():
    m = _hook()
    from mkdocs.exceptions import PluginError

    for text in ['{{ value("nonisomorphic/reference/summary.csv", "u_acc_median", frac=0.9) }}',  # no row
                 '{{ value("nonisomorphic/reference/summary.csv", "u_acc_median") }}',  # three rows
                 '{{ value("nonisomorphic/reference/summary.csv", "no_such_column", frac=0.6) }}',
                 '{{ table("no_such_study/summary.csv") }}',
                 '{{ open("/etc/passwd") }}']:  # nothing but the macros in scope
        with pytest.raises(PluginError):
            m.expand(text, "test.md")


def test_spread_span_count_and_table():
    m = _hook()
    path = "embed_init/library/summary.csv"
    s = pd.read_csv(ROOT / "results" / path).set_index("embed_init").loc["circulant"]
    assert m.spread(path, "steps_to_99", embed_init="circulant") == (
        f"{s.steps_to_99_median:.0f} [{s.steps_to_99_min:.0f}, {s.steps_to_99_max:.0f}]")
    assert m.count("nonisomorphic/library/sweep.csv") == "9"
    assert m.count("nonisomorphic/library/sweep.csv", where="frac > 5") == "0"
    assert m.span("nonisomorphic/library/sweep.csv", "acc_transpose_trained") == "1.000"
    table = m.table(path, ["embed_init", "seeds", "steps_to_99"], spreads=["steps_to_99"])
    lines = table.splitlines()
    assert lines[0] == "| embed_init | seeds | steps_to_99 |" and len(lines) == 2 + 2
    assert "nan" not in table.lower()


def test_seeds_above_compares_rows_of_the_same_seed():
    m = _hook()
    sweep = pd.read_csv(ROOT / "results/square_strip/reference/sweep.csv")
    strip = sweep[(sweep["split"] == "strip") & (sweep["offset"] == 0)]
    a = strip[strip["t"] == 67].set_index("seed")["u_acc"]
    b = strip[strip["t"] == 60].set_index("seed")["u_acc"]
    got = m.seeds_above("square_strip/reference/sweep.csv", "u_acc", "split == 'strip' and t == 67 and offset == 0",
                        "split == 'strip' and t == 60 and offset == 0")
    assert got == f"{int((a > b).sum())} of 3"


def test_listed_names_the_matching_rows_by_their_keys():
    m = _hook()
    path = "nonisomorphic/library/sweep.csv"
    sweep = pd.read_csv(ROOT / "results" / path)
    got = m.listed(path, ["frac", "seed"], where="seed == 1", names={"frac": "fraction"})
    want = "; ".join(f"fraction {r.frac:g}, seed 1" for r in sweep[sweep["seed"] == 1].itertuples())
    assert got == want and got.count("; ") == (sweep["seed"] == 1).sum() - 1
    assert m.listed(path, ["seed"], where="seed > 99") == "none"
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="no column 'nope'"):
        m.listed(path, ["nope"])


def test_a_number_from_the_data_never_starts_a_numbered_list():
    m = _hook()
    from mkdocs.exceptions import PluginError

    path = "nonisomorphic/library/sweep.csv"
    with pytest.raises(PluginError, match="numbered list"):
        m.expand(f'the runs:\n  {{{{ count("{path}") }}}}. Then', "test.md")  # "9. Then": a list item
    assert m.expand(f'the runs:\n  {{{{ count("{path}") }}}} of them. Then', "test.md").endswith("9 of them. Then")
    assert m.expand(f'in {{{{ count("{path}") }}}}. Then', "test.md") == "in 9. Then"


# --- the built site ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


class _Resources(HTMLParser):
    """What a page loads: script src, stylesheet/icon/preload links, img/iframe/source/video src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & {
                "stylesheet", "icon", "preload", "modulepreload", "prefetch", "manifest", "preconnect"}:
            self.urls.append(a["href"])
        if tag == "object" and a.get("data"):
            self.urls.append(a["data"])


@pytest.mark.slow
def test_site_builds_strict_with_generated_references(site):
    api = (site / "api" / "index.html").read_text()
    assert 'id="grok_interp.runs.train_hooked"' in api
    assert 'id="grok_interp.measures.med"' in api
    cli = (site / "cli" / "index.html").read_text()
    for command in ("train", "sweep", "report", "measure", "resnet"):
        assert f"grok-interp {command}" in cli
    assert "--stop-after-grok" in cli and "--resume" in cli


@pytest.mark.slow
def test_findings_pages_show_the_data(site):
    page = (site / "findings" / "verdicts" / "index.html").read_text()
    lib = pd.read_csv(ROOT / "results/med_vs_loss/library/compare_measures.csv")
    r = lib[(lib["measure"] == "med") & (lib["p"] == 97) & (lib["seed"] == 2)].iloc[0]
    assert f"r = {r.pearson_at_lag:.2f} at that lag), not a lead" in page
    for html in (site / "findings").rglob("*.html"):
        text = re.sub(r"<[^>]+>", " ", html.read_text())
        assert not re.search(r"\bnan\b", text, re.I), f"{html.relative_to(site)} prints nan"
        assert "{{" not in text, f"{html.relative_to(site)} has an unexpanded placeholder"
    for png in ("square_strip/reference/test_accuracy.png", "nonisomorphic/reference/nonisomorphic.png"):
        assert (site / "results" / png).exists()


@pytest.mark.slow
def test_no_page_loads_anything_from_the_network(site):
    remote = re.compile(r"^(https?:)?//", re.I)
    loaded = []
    for html in site.rglob("*.html"):
        parser = _Resources()
        parser.feed(html.read_text())
        loaded += [f"{html.relative_to(site)}: {u}" for u in parser.urls if remote.match(u)]
    for css in site.rglob("*.css"):
        loaded += [f"{css.relative_to(site)}: {u}" for u in re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)",
                                                                        css.read_text())]
        loaded += [f"{css.relative_to(site)}: @import {u}" for u in re.findall(r"@import\s+['\"]?(https?://\S+)",
                                                                             css.read_text())]
    assert not loaded, loaded[:20]


# --- in a browser ------------------------------------------------------------------------

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(n)), None)

PROBE = """
<pre id="grok-probe"></pre>
<script>
(function () {
  var net = "pending";
  fetch("https://pypi.org/simple/").then(function () { net = "reachable"; }, function () { net = "blocked"; });
  setTimeout(function () {
    var imgs = Array.prototype.filter.call(document.querySelectorAll("article img"),
                                           function (i) { return !(i.complete && i.naturalWidth > 0); });
    document.getElementById("grok-probe").textContent = JSON.stringify({
      network: net, title: document.title, broken_images: imgs.map(function (i) { return i.src; }),
      text: document.querySelector("article") ? document.querySelector("article").innerText.length : 0});
  }, 2000);
})();
</script>
"""


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}",
           # networking off: every request goes to a closed local port, no name resolves
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--allow-file-access-from-files", "--virtual-time-budget=10000", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run "
                    "installs it), so the site cannot be rendered in a browser here")
@pytest.mark.parametrize("page", ["index.html", "findings/verdicts/index.html", "api/index.html"])
def test_pages_render_offline_in_headless_chromium(site, tmp_path, page):
    from PIL import Image

    path = site / page
    probe = path.with_name("probe.html")
    probe.write_text(path.read_text().replace("</body>", PROBE + "</body>"))
    try:
        dom = _chromium(probe.as_uri(), tmp_path / "p1", "--window-size=1280,2000", "--dump-dom").stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="grok-probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1).strip(), "the probe script did not run: JavaScript is broken on the page"
    info = json.loads(found.group(1))
    assert info["network"] == "blocked", "the browser could reach the network; the offline check would mean nothing"
    assert "grok_interp" in info["title"] and info["text"] > 200, info
    assert not info["broken_images"], info["broken_images"]

    shot = tmp_path / "page.png"
    _chromium(path.as_uri(), tmp_path / "p2", "--window-size=1280,1600", f"--screenshot={shot}")
    if os.environ.get("GROK_INTERP_SCREENSHOTS"):
        keep = Path(os.environ["GROK_INTERP_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / (page.replace("/", "_").replace(".html", "") + ".png"))
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    assert (pixels.min(axis=1) < 200).mean() > 0.02, "the page rendered (nearly) blank"
    assert len(np.unique(pixels, axis=0)) > 50, "the page rendered as a few flat colours: no text or styling"
