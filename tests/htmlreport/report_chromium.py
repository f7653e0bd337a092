"""Load a page in Debian's headless Chromium over the DevTools protocol (127.0.0.1, a free port).

``inspect_page(path)`` starts ``chromium --headless --remote-debugging-port=0``, opens the
file, waits until Bokeh has drawn (the number of canvases in the page, shadow roots
included, stops changing), and returns the console errors and uncaught exceptions, counts
of DOM and Bokeh model elements from ``PROBE_JS``, and a PNG screenshot. Chromium is stopped
by its PID. The websocket client is tornado's (a dependency of Bokeh, so of the report extra).

Usage::

    page = inspect_page(Path("report.html"))
    assert not page.errors and page.counts["canvases"] > 0
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support import require_binary, stop_process

# Canvases (Bokeh draws each plot on canvases inside shadow roots), Bokeh plot views and
# glyph models by type, and the report's own HTML rows.
PROBE_JS = """(() => {
  const canvases = (root) => [...root.querySelectorAll('*')].reduce(
      (n, el) => n + (el.tagName === 'CANVAS' ? 1 : 0) + (el.shadowRoot ? canvases(el.shadowRoot) : 0), 0);
  const models = window.Bokeh && Bokeh.documents.length ? [...Bokeh.documents[0].all_models] : [];
  const named = (name) => models.filter((m) => m.constructor.__name__ === name);
  const strips = named('VStrip').length ? named('ColumnDataSource').filter((s) => 'x0' in s.data) : [];
  return JSON.stringify({
    ready: document.readyState === 'complete',
    bokeh_documents: window.Bokeh ? Bokeh.documents.length : 0,
    canvases: canvases(document),
    plots: named('Figure').length,
    lines: named('Line').length,
    images: named('Image').length,
    vstrip_glyphs: named('VStrip').length,
    alert_strips: strips.reduce((n, s) => Math.max(n, s.data.x0.length), 0),
    evidence_rows: document.querySelectorAll('tr.evidence-row').length,
    alert_periods: document.querySelectorAll('.alert-period').length,
    probe_tables: document.querySelectorAll('table.probe').length,
    scripts_with_src: document.querySelectorAll('script[src], link[href]').length,
  });
})()"""


@dataclass
class PageResult:
    errors: list[str]
    counts: dict
    screenshot_png: bytes


def _start_chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    binary = require_binary("chromium")
    process = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                                "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}", "--remote-allow-origins=*",
                                "--no-first-run", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: _stop_chromium stops its helpers too
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return process, int(port_file.read_text().splitlines()[0])
        if process.poll() is not None:
            break
        time.sleep(0.1)
    _stop_chromium(process)
    raise RuntimeError("chromium did not open its DevTools port")


def _stop_chromium(process: subprocess.Popen) -> None:
    """The browser, then every process it started: a helper still writing the profile after the browser exited
    made removing the profile fail ("Directory not empty")."""
    stop_process(process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader while a member is left
        except ProcessLookupError:
            return
        time.sleep(0.05)


class _DevTools:
    def __init__(self, connection) -> None:
        self.connection = connection
        self.next_id = 0
        self.errors: list[str] = []

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append("log: " + str(params["entry"].get("text")))

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.connection.write_message(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            raw = await self.connection.read_message()
            if raw is None:
                raise RuntimeError("the DevTools connection closed")
            message = json.loads(raw)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._event(message)

    async def evaluate(self, expression: str) -> dict:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return json.loads(result["result"]["value"])


async def _inspect(ws_url: str, url: str, width: int, height: int, timeout: float) -> PageResult:
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)
    tools = _DevTools(connection)
    for domain in ("Runtime", "Log", "Page"):
        await tools.call(f"{domain}.enable")
    await tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    await tools.call("Page.navigate", url=url)
    deadline, previous, counts = time.monotonic() + timeout, -1, {}
    while time.monotonic() < deadline:
        counts = await tools.evaluate(PROBE_JS)
        if counts["ready"] and counts["canvases"] == previous and (counts["canvases"] or not counts["bokeh_documents"]):
            break
        previous = counts["canvases"]
        await asyncio.sleep(0.5)
    await asyncio.sleep(0.5)  # let the last frames paint and late console messages arrive
    await tools.call("Runtime.evaluate", expression="0")
    shot = await tools.call("Page.captureScreenshot", format="png")
    connection.close()
    return PageResult(tools.errors, counts, base64.b64decode(shot["data"]))


def inspect_page(path: Path, width: int = 1400, height: int = 2400, timeout: float = 60.0) -> PageResult:
    """Open ``path`` in headless Chromium and report what it drew (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="rs-chromium-") as profile:
        process, port = _start_chromium(Path(profile))
        try:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t.get("type") == "page")
            return asyncio.run(_inspect(page["webSocketDebuggerUrl"], path.resolve().as_uri(), width, height, timeout))
        finally:
            _stop_chromium(process)


def png_is_blank(png: bytes) -> bool:
    """True when the image is (nearly) one colour: no more than a handful of distinct colours."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    return colours is not None and len(colours) <= 4
