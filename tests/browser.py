"""Headless Chromium driven over the DevTools protocol on a pipe (standard library only).

Chromium reads protocol messages from file descriptor 3 and writes to 4 when started with
``--remote-debugging-pipe``; each message is a JSON object followed by a NUL byte. No browser
is downloaded: the system's Debian ``chromium`` is used (``.ci/run`` installs it). Used as
``with Browser() as b: result = b.load(page)`` (see tests/test_report.py).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-pipe", "--hide-scrollbars",
         "--mute-audio", "--disable-dev-shm-usage")
TIMEOUT_S = 60.0
IMAGES_JS = """Promise.all(Array.from(document.images).map(function(i){
  return i.decode().then(function(){return {ok:true,w:i.naturalWidth,h:i.naturalHeight,
  alt:i.alt};}, function(e){return {ok:false,alt:i.alt,error:String(e)};});}))"""


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What loading a page produced."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot_png: bytes = b""


class Browser:
    """One headless Chromium process and one page (tab) attached in flat session mode."""

    def __init__(self, width: int = 1280, height: int = 1600) -> None:
        exe = find_chromium()
        if exe is None:
            raise RuntimeError("no chromium executable on PATH")
        self._profile = tempfile.TemporaryDirectory(prefix="vae-anomaly-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child needs them at 3 and 4: move them out of the way first, then dup2 there
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        os.close(to_child_r)
        os.close(from_child_w)

        def child_fds() -> None:  # runs in the child between fork and exec
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""
        self.proc: subprocess.Popen[bytes] | None = None
        reserved = []  # keep 3 and 4 taken so subprocess's own pipes get higher numbers
        while any(not _is_open(fd) for fd in (3, 4)):
            reserved.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        try:
            # its own session: closing kills the renderer and zygote children too
            self.proc = subprocess.Popen(
                [exe, *FLAGS, f"--user-data-dir={self._profile.name}",
                 f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                close_fds=False, preexec_fn=child_fds, start_new_session=True)
        finally:
            for fd in [*high, *reserved]:
                os.close(fd)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": False}, session=True)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the browser, kill what is left of its process group, free the pipes."""
        if self._to_child < 0:
            return  # already closed
        if self.proc is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.call("Browser.close", timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._to_child = self._from_child = -1
        self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise RuntimeError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: bool = False, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def _wait_for(self, method: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e["method"] == method for e in self.events):
            reply = self._read_message(deadline)
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited); return its JSON value."""
        out = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True}, session=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    def load(self, path: Path) -> PageResult:
        """Open a local file, wait for the load event, decode every image, take a screenshot."""
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        self._wait_for("Page.loadEventFired")
        result = PageResult(images=self.evaluate(IMAGES_JS))
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=True)
        result.screenshot_png = base64.b64decode(shot["data"])
        self.evaluate("0")  # flush events queued while the screenshot was taken
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                result.console_errors.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                 "assert"):
                result.console_errors.append(str(p.get("args"))[:300])
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                result.console_errors.append(p["entry"].get("text", "")[:300])
            elif e["method"] == "Network.requestWillBeSent":
                result.requests.append(p["request"]["url"])
        return result
