"""``uner serve`` in a child process on a free port of 127.0.0.1: for the tests and the bench."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


class ServerProcess:
    """``uner serve --model MODEL --port 0 ARGS`` until :meth:`stop` (or the ``with`` block's end).

    ``url`` is known once the server listens (before the model is loaded); :meth:`wait_ready`
    waits for ``/health`` to say 200. Everything the server logs is kept in ``log``.
    """

    def __init__(self, model: Path | str, *args: str, env: dict | None = None) -> None:
        command = [sys.executable, "-m", "uner.cli", "serve", "--model", str(model), "--port", "0", *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.log: list[str] = []
        self.stdout = ""
        self._url_known = threading.Event()
        self.url: str | None = None
        threading.Thread(target=self._read_log, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            if self.url is None and (match := _LISTENING.search(line)):
                self.url = match.group(1)
                self._url_known.set()
        self._url_known.set()  # the process ended: nobody waits forever

    def _read_stdout(self) -> None:
        self.stdout = self.process.stdout.read()

    def wait_listening(self, timeout: float = 60) -> str:
        if not self._url_known.wait(timeout) or self.url is None:
            raise RuntimeError("uner serve did not start listening; its log:\n" + "\n".join(self.log))
        return self.url

    def wait_ready(self, timeout: float = 180) -> str:
        import httpx

        url = self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uner serve did not become ready; its log:\n" + "\n".join(self.log))

    def terminate(self) -> None:
        """SIGTERM: the server stops taking requests and finishes those in flight."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
