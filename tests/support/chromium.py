"""Debian's headless Chromium, driven over the Chrome DevTools Protocol.

The protocol is JSON over a WebSocket (https://chromedevtools.github.io/devtools-protocol/),
which aiohttp, already a dependency, speaks: no WebDriver, no Node, nothing more to install
than the `chromium` package. Chromium runs with the flags a closed, shared machine needs
(no sandbox as root, no GPU, no background or update traffic) and a throwaway profile.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.support.servers import debian_binary

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str:
    """The browser, or a test failure that names the package (never a silent skip)."""
    return debian_binary("chromium", "chromium", search=os.environ.get("PATH", os.defpath))


class Page:
    """One tab: send protocol commands, collect the events they cause."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            doc = json.loads(message.data)
            if "id" in doc:
                future = self.answers.pop(doc["id"])
                if "error" in doc:
                    future.set_exception(RuntimeError(f"{doc['error']}"))
                else:
                    future.set_result(doc.get("result", {}))
            else:
                self.events.append(doc)
                self.arrived.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[number] = future
        await self.socket.send_json({"id": number, "method": method, "params": params})
        async with asyncio.timeout(60):
            return await future

    async def event(self, method: str) -> dict[str, Any]:
        """The first event of this kind (waiting for it if it has not come yet)."""
        async with asyncio.timeout(60):
            while True:
                for event in self.events:
                    if event["method"] == method:
                        return event
                self.arrived.clear()
                await self.arrived.wait()

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self) -> bytes:
        answer = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(answer["data"])

    async def close(self) -> None:
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


@asynccontextmanager
async def chromium(width: int = 1280, height: int = 1000) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab whose viewport is exactly this size."""
    binary = chromium_binary()
    profile = tempfile.mkdtemp(prefix="chromium-")
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its renderer and helper processes end with it
    )
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        browser_url = await _devtools_url(process.stderr)
        drain = asyncio.create_task(_drain(process.stderr))
        port = browser_url.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(url, max_msg_size=0) as socket:
                page = Page(socket)
                try:
                    # The viewport exactly this size, whatever the window's frame takes.
                    await page.send(
                        "Emulation.setDeviceMetricsOverride",
                        width=width,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    yield page
                finally:
                    await page.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if drain:
            await drain
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(stderr: asyncio.StreamReader) -> str:
    """Chromium says on stderr where its DevTools endpoint listens (port 0: one it chose)."""
    async with asyncio.timeout(30):
        while line := await stderr.readline():
            text = line.decode(errors="replace")
            if text.startswith("DevTools listening on "):
                return text.removeprefix("DevTools listening on ").strip()
    raise AssertionError("chromium exited without opening its DevTools endpoint")


async def _drain(stderr: asyncio.StreamReader) -> None:
    """Keep reading its log, so a full pipe never stalls the browser."""
    while await stderr.read(65536):
        pass


def png_pixels(png: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, channels (3 or 4) and the rows of an 8-bit RGB(A) PNG (what Chromium
    writes), unfiltered as the PNG specification says (https://www.w3.org/TR/png/#9Filters)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(data), width * channels
    rows, previous = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = bytes(line)
    return width, height, channels, rows


def _unfilter(kind: int, line: bytearray, up: bytes, step: int) -> None:
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        above, corner = up[i], up[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + above) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + above) // 2) & 0xFF
        elif kind == 4:
            p = left + above - corner
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - corner)
            guess = left if pa <= pb and pa <= pc else above if pb <= pc else corner
            line[i] = (line[i] + guess) & 0xFF
