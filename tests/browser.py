"""A headless Chromium (Debian's package) driven over the DevTools protocol, for UI tests.

Just enough of the protocol to open a page, click, read its text and take a screenshot; the
`websockets` client comes with Prefect.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; stops (and removes its profile) on exit."""

    def __init__(self, width: int = 1600, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="autodev-chromium-")
        self.process = subprocess.Popen(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                f"--window-size={width},{height}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        port = None
        for line in self.process.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
            if m := re.search(r"ws://127\.0\.0\.1:(\d+)/", line):
                port = m.group(1)
                break
        assert port, "chromium did not start its DevTools endpoint"
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json").json() if t["type"] == "page")
        self.ws_url = page["webSocketDebuggerUrl"]
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _call(self, method: str, **params):
        async def call():
            async with websockets.connect(self.ws_url, max_size=50_000_000) as ws:
                msg_id = next(self._ids)
                await ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("id") == msg_id:
                        assert "error" not in reply, reply["error"]
                        return reply["result"]

        return asyncio.run(call())

    def open(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def text(self) -> str:
        return self._call("Runtime.evaluate", expression="document.body.innerText")["result"].get("value", "")

    def wait_for_text(self, *needles: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.text()
            if all(n in text for n in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.3)

    def click(self, css: str) -> None:
        found = self._call("Runtime.evaluate", expression=f"(e => e ? (e.click(), true) : false)(document.querySelector({css!r}))")
        assert found["result"]["value"], f"nothing matches {css}"

    def screenshot(self, path: Path) -> Path:
        data = self._call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
