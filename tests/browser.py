"""A real headless Chromium for the HTML report's tests: the DOM after load, a screenshot,
the network log; and a tiny PNG decoder (zlib only) to tell a blank screenshot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
INSTALL_HINT = (
    "no headless Chromium found (looked for "
    + ", ".join(CANDIDATES)
    + " and $ORCHESTRATE_TEST_BROWSER): the HTML report's browser tests did NOT run; "
    "install one with `apt-get install chromium` (.ci/run does)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",  # as root in a container there is no user namespace for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--hide-scrollbars",
    # Every host name fails to resolve: a page that needed the network would come out broken.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def find_browser() -> str | None:
    chosen = os.environ.get("ORCHESTRATE_TEST_BROWSER")
    if chosen:
        return shutil.which(chosen) or (chosen if os.access(chosen, os.X_OK) else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.runs = 0

    def run(self, page: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """One headless Chromium on `page`, in its own profile and process group (it starts
        helpers; all of them go when it is done or too slow)."""
        self.runs += 1
        profile = self.workdir / f"profile-{self.runs}"
        command = [self.executable, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return subprocess.CompletedProcess(command, process.returncode, out, err)

    def dump_dom(self, page: Path, net_log: Path | None = None) -> str:
        """The page's DOM as HTML after it loaded (and any script ran)."""
        extra = [f"--log-net-log={net_log}"] if net_log else []
        done = self.run(page, *extra, "--dump-dom")
        assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
        return done.stdout

    def screenshot(self, page: Path, png: Path, size: str = "1400,900") -> bytes:
        done = self.run(page, f"--window-size={size}", f"--screenshot={png}")
        assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
        return png.read_bytes()


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked the network stack for: requests whose isolation key is a
    file:// site. Chromium's own calls home (update checks, accounts) have other keys."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "file://" in event.get("params", {}).get("network_isolation_key", "")
    ]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the pixels (RGB or RGBA bytes) of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color_type in (2, 6) and interlace == 0, "only 8-bit RGB(A) PNGs"
    channels = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        rows.append(line)
        previous = line
    flat = b"".join(rows)
    return width, height, [flat[i : i + channels] for i in range(0, len(flat), channels)]


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    """Undo a row's PNG filter in place; one loop per filter (a screenshot has a million bytes)."""
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
    elif kind == 4:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            up_left = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - up_left
            distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
            nearest = (left, up, up_left)[distances.index(min(distances))]
            line[i] = (line[i] + nearest) & 0xFF


def colour_counts(pixels: list[bytes]) -> Counter[bytes]:
    """How many pixels (png_pixels) have each RGB colour."""
    return Counter(pixel[:3] for pixel in pixels)
