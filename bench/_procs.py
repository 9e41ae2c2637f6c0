"""The processes a benchmark starts and measures: the API server, CPU time from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

import trio

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
APISERVER_STARTUP_TIMEOUT_S = 30.0


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


async def start_apiserver(*args: str,
                          timeout_s: float = APISERVER_STARTUP_TIMEOUT_S
                          ) -> tuple[trio.Process, int]:
    """``purelb apiserver`` on a free loopback port (plus ``args``); returns it and the port
    once it says it is listening."""
    cmd = [sys.executable, "-m", "purelb", "apiserver", "--listen", "127.0.0.1:0",
           "--log-level", "WARNING", *args]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(timeout_s):
        while not (b"listening on " in buf and buf.endswith(b"\n")):
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError("purelb apiserver exited before listening")
            buf += chunk
    url = buf.decode().split("listening on ", 1)[1].split()[0]
    return proc, int(url.rsplit(":", 1)[1])
