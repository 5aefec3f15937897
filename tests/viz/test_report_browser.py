"""The run report in a real browser: headless Chromium, networking disabled.

Chromium loads ``report.html`` from disk with every network request sent to a dead
proxy and every host name unresolvable. A probe copy of the page (the report plus a
small script at the end) reports where the attention widget and the plots landed and
whether a network fetch could succeed; a screenshot of the unmodified report is then
checked pixel by pixel in those regions: the circuitsvis widget must have rendered
(its React tree, its canvases, many colours where it sits) and every plot must have
decoded and drawn (not a blank page).

Skipped only where no Chromium is installed (``.ci/run`` installs Debian's). Set
``GROK_INTERP_SCREENSHOTS=DIR`` to keep the screenshot for a look.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grok_interp.viz import write_report

from ..helpers import small_run

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable") if shutil.which(n)),
    None,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium; .ci/run installs it), so the report "
        "cannot be rendered in a browser here",
    ),
]

WIDTH = 1400

PROBE = """
<pre id="grok-probe"></pre>
<script>
(function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  }
  var net = "pending";
  fetch("https://unpkg.com/circuitsvis/package.json").then(function () { net = "reachable"; },
                                                          function () { net = "blocked"; });
  setTimeout(function () {
    var w = document.querySelector(".attention-widget");
    var out = {
      network: net,
      height: document.documentElement.scrollHeight,
      widget: w && Object.assign(box(w), {
        nodes: w.querySelectorAll("*").length,
        canvases: w.querySelectorAll("canvas").length,
        text: w.innerText
      }),
      plots: Array.prototype.map.call(document.querySelectorAll("figure.plot img"), function (img) {
        return Object.assign(box(img), {id: img.parentNode.id, decoded: img.complete && img.naturalWidth > 0});
      })
    };
    document.getElementById("grok-probe").textContent = JSON.stringify(out);
  }, 3000);
})();
</script>
"""


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}",
        # networking off: every request goes to a closed local port, no name resolves
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=15000", *extra, url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _region_stats(img: Image.Image, box: dict) -> tuple[float, int]:
    """(share of non-white pixels, number of distinct colours) inside ``box``."""
    crop = img.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"]))).convert("RGB")
    pixels = np.asarray(crop).reshape(-1, 3)
    if len(pixels) == 0:
        return 0.0, 0
    return float((pixels.min(axis=1) < 235).mean()), len(np.unique(pixels, axis=0))


def test_report_renders_offline_in_headless_chromium(tmp_path):
    run = small_run(steps=300, eval_every=10, checkpoint_every=100, out=tmp_path / "run")
    report = write_report(run)
    page = report.read_text()

    probe = report.with_name("probe.html")
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = _chromium(probe.as_uri(), tmp_path / "profile1", f"--window-size={WIDTH},3000", "--dump-dom").stdout
    found = re.search(r'<pre id="grok-probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1).strip(), "the probe script did not run: JavaScript is broken on the page"
    info = json.loads(found.group(1))

    assert info["network"] == "blocked", "the browser could reach the network; the offline check would mean nothing"
    widget = info["widget"]
    assert widget is not None, "no attention widget container in the report"
    # circuitsvis mounted its React tree: the head selector with one canvas per head plus the zoomed head
    assert "Head Selector" in widget["text"] and "final L0H0" in widget["text"]
    assert widget["canvases"] >= 5 and widget["nodes"] > 30 and widget["h"] > 300
    assert {p["id"] for p in info["plots"]} >= {"plot-training", "plot-measures", "plot-fourier", "plot-clusters",
                                                 "plot-split", "plot-compare"}
    assert all(p["decoded"] and p["w"] > 300 and p["h"] > 100 for p in info["plots"]), info["plots"]

    shot = tmp_path / "report.png"
    height = min(int(info["height"]) + 50, 16000)
    _chromium(report.as_uri(), tmp_path / "profile2", f"--window-size={WIDTH},{height}", f"--screenshot={shot}")
    if os.environ.get("GROK_INTERP_SCREENSHOTS"):
        keep = Path(os.environ["GROK_INTERP_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / "report_browser_test.png")
    img = Image.open(shot)
    assert img.size == (WIDTH, height)

    ink, colours = _region_stats(img, widget)
    assert ink > 0.05 and colours > 40, f"attention widget region looks blank: {ink:.3f} ink, {colours} colours"
    for plot in info["plots"]:
        ink, colours = _region_stats(img, plot)
        assert ink > 0.02 and colours > 40, f"{plot['id']} looks blank: {ink:.3f} ink, {colours} colours"
    # and the page as a whole is not blank
    ink, colours = _region_stats(img, {"x": 0, "y": 0, "w": WIDTH, "h": height})
    assert ink > 0.05 and colours > 200
