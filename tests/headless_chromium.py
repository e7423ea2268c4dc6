"""Debian's headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
the browser reads commands on fd 3 and answers on fd 4, NUL-terminated JSON), so a test waits in
real time until the page says it is ready. ``--virtual-time-budget`` cannot: the GLB's textures are
decoded off the main thread (``createImageBitmap``), virtual time runs on meanwhile, and the page
was sometimes judged still "loading" (1 run in 3 on an idle machine)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # any network access would fail


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium showing ``url``; ``evaluate`` runs JavaScript in it, ``screenshot`` takes PNG bytes."""

    def __init__(self, url: str, profile: Path, window=(1100, 800)):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # in the child: its fd 3 reads our commands, its fd 4 carries its answers
            hi_r, hi_w = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        profile.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [executable(), *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", "about:blank"],
            preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False)  # preexec_fn runs before close_fds would close fds 3 and 4; ours are non-inheritable anyway
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._buffer = b""
        target = self._call("Target.createTarget", url=url)["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:  # answers and events arrive in order; keep reading until ours
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self._call("Runtime.evaluate", self._session, expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 120.0, every: float = 0.25):
        """Poll ``expression`` until it is truthy (its value) or ``timeout`` seconds pass (its last value)."""
        end = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > end:
                return value
            time.sleep(every)

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", self._session, format="png")["data"])

    def close(self):
        try:
            self._call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        os.close(self._to_child)
        os.close(self._from_child)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
