"""Provision and start a real InvokeAI 6.14.2 on loopback, for tests and benchmarks.

The server lives in a virtualenv of its own, cached outside the checkout (about 7 GB, built
once with pip, which takes torch from this machine's local wheel store). Each start gets a
temporary root folder, so runs never share state.

Command line::

    python -m tests.support.invokeai_server provision   # build the cached virtualenv
    python -m tests.support.invokeai_server serve       # start one and print its URL
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INVOKEAI_VERSION = "6.14.2"
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")
DEFAULT_VENV = Path.home() / ".cache" / "invokeai-py-client" / f"venv-invokeai-{INVOKEAI_VERSION}"
READY_MARKER = ".provisioned"
START_ATTEMPTS = 2
STARTUP_TIMEOUT = 180.0


def venv_dir() -> Path:
    return Path(os.environ.get("INVOKEAI_VENV", DEFAULT_VENV))


def _python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise RuntimeError("InvokeAI 6.14.2 needs Python 3.11; none found on PATH")
    return found


def provision() -> Path:
    """Build the cached virtualenv with InvokeAI unless it is already complete."""
    venv = venv_dir()
    if (venv / READY_MARKER).exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_python311(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first, pinned to the wheels on this machine's disk, or pip would pick a CUDA build.
    subprocess.run([*pip, *TORCH_PINS], check=True)
    subprocess.run([*pip, f"invokeai=={INVOKEAI_VERSION}", *TORCH_PINS], check=True)
    (venv / READY_MARKER).write_text(INVOKEAI_VERSION)
    return venv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/app/version", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _logged_port(log_path: Path) -> int | None:
    # The server moves to the next free port when its port is busy; its log names the real one.
    match = re.findall(r"http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
    return int(match[-1]) if match else None


def start(
    root: Path | None = None, port: int | None = None, extra_config: str = ""
) -> RunningServer:
    """Start ``invokeai-web`` on loopback and wait until it serves its version route."""
    venv = provision()
    root = root or Path(tempfile.mkdtemp(prefix="invokeai-root-"))
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "invokeai.yaml").write_text(
        f"schema_version: 4.0.2\nhost: 127.0.0.1\nport: {port}\ndevice: cpu\n{extra_config}"
    )
    log_path = root / "server.log"
    for attempt in range(START_ATTEMPTS):
        process = _launch(venv, root, log_path)
        url = _wait_answering(process, port, log_path)
        if url is not None:
            return RunningServer(url=url, root=root, process=process, log_path=log_path)
        # Exited during start-up. Seen once right after a SIGKILL on the same root (exit 3,
        # a failed start-up); the log's tail says why, and one more try follows.
        tail = log_path.read_text(errors="replace")[-2000:]
        if attempt == START_ATTEMPTS - 1:
            raise RuntimeError(f"invokeai-web exited with {process.returncode}: ...{tail}")
        time.sleep(2.0)
    raise AssertionError("unreachable")  # pragma: no cover


def _launch(venv: Path, root: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    env = {**os.environ, "INVOKEAI_ROOT": str(root)}
    return subprocess.Popen(
        [str(venv / "bin" / "invokeai-web"), "--root", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _wait_answering(process: subprocess.Popen[bytes], port: int, log_path: Path) -> str | None:
    """The server's URL once it answers; None when it exited first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        for candidate in {port, _logged_port(log_path) or port}:
            url = f"http://127.0.0.1:{candidate}"
            if _answers(url):
                return url
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"invokeai-web did not answer within {STARTUP_TIMEOUT}s; see {log_path}")


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """The URL of a real server: ``INVOKEAI_TEST_URL`` if set, else one started here."""
    existing = os.environ.get("INVOKEAI_TEST_URL")
    if existing:
        yield existing.rstrip("/")
        return
    server = start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def installed_package_dir() -> Path:
    """The ``invokeai`` package folder inside the cached virtualenv."""
    venv = provision()
    found = sorted(venv.glob("lib/python3.*/site-packages/invokeai"))
    if not found:
        raise RuntimeError(f"invokeai is not installed in {venv}")
    return found[0]


def shipped_workflows_dir() -> Path:
    """The editor workflows that InvokeAI ships (26 files in 6.14.2)."""
    return installed_package_dir() / "app/services/workflow_records/default_workflows"


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "provision"
    if command == "provision":
        print(provision())
        return 0
    if command == "serve":
        server = start()
        print(server.url, flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            server.stop()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
