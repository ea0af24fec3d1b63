"""A real nats-server with JetStream for the feed tests, started at a free port and stopped by
its process id (the fixtures `nats_broker` and `broker` are in conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """A real nats-server with JetStream on 127.0.0.1, started and stopped by its process id."""

    def __init__(self, folder: Path) -> None:
        if not os.path.exists(NATS_SERVER):
            pytest.fail("nats-server is not installed (.ci/run installs Debian's nats-server)")
        self.folder, self.port = folder, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", str(self.folder), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.process.pid, sig)
        self.process.wait(timeout=10)
