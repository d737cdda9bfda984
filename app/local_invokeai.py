"""A local InvokeAI 6.14.2 on CPU: provisioned once into a cached virtualenv, started on loopback.

The embedded default of the main command (``scripts/run``, ``python -m app.local_invokeai``):
when no InvokeAI answers at the configured URL, it provisions this one, starts it, says so,
serves the gateway on it, and stops it when the gateway stops. The test suite starts its
servers with the same code (``tests/support/invokeai_server.py``), so what the tests run
against is what a first run gets.

The server lives in a virtualenv of its own, cached outside the checkout
(``~/.cache/invokeai-py-client``, about 7 GB, built once with pip; torch is pinned to the CPU
wheels). It runs without model weights: image nodes that need no model work, model loaders
report that no model is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

__all__ = [
    "INVOKEAI_VERSION",
    "RunningServer",
    "answers",
    "free_port",
    "installed_package_dir",
    "main",
    "provision",
    "shipped_workflows_dir",
    "start",
    "venv_dir",
]

INVOKEAI_VERSION = "6.14.2"
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")
DEFAULT_VENV = Path.home() / ".cache" / "invokeai-py-client" / f"venv-invokeai-{INVOKEAI_VERSION}"
READY_MARKER = ".provisioned"
START_ATTEMPTS = 2
STARTUP_TIMEOUT = 180.0
DEFAULT_URL = "http://127.0.0.1:9090"
LOCAL_MODE_ENV = "GATEWAY_LOCAL_INVOKEAI"
"""``auto`` (default): start the local InvokeAI when none answers; ``never``: do not."""


def venv_dir() -> Path:
    """The cached virtualenv (``INVOKEAI_VENV`` overrides the default place)."""
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
    # torch first, pinned, or pip would pick a CUDA build.
    subprocess.run([*pip, *TORCH_PINS], check=True)
    subprocess.run([*pip, f"invokeai=={INVOKEAI_VERSION}", *TORCH_PINS], check=True)
    (venv / READY_MARKER).write_text(INVOKEAI_VERSION)
    return venv


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class RunningServer:
    """A started ``invokeai-web``: its URL, root folder, process and log."""

    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Terminate it (SIGTERM, then SIGKILL after 20 s) and wait for it."""
        _end(self.process)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s; returns once the process is gone."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str) -> bool:
    """True when an InvokeAI answers its version route at ``url``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/app/version", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def _logged_port(log_path: Path) -> int | None:
    # The server moves to the next free port when its port is busy; its log names the real one.
    match = re.findall(r"http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
    return int(match[-1]) if match else None


def start(root: Path, port: int | None = None, extra_config: str = "") -> RunningServer:
    """Start ``invokeai-web`` on loopback with ``root`` and wait until it serves its version."""
    venv = provision()
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "invokeai.yaml").write_text(
        f"schema_version: 4.0.2\nhost: 127.0.0.1\nport: {port}\ndevice: cpu\n{extra_config}"
    )
    log_path = root / "server.log"
    for attempt in range(START_ATTEMPTS):
        process = _launch(venv, root, log_path)
        try:
            url = _wait_answering(process, port, log_path)
        except BaseException:  # Ctrl-C or SIGTERM while it starts: it must not outlive us
            _end(process)
            raise
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
            if answers(url):
                return url
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"invokeai-web did not answer within {STARTUP_TIMEOUT}s; see {log_path}")


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


# -- the main command: the gateway, on a local InvokeAI when none answers ------------------


def _url_from(argv: Sequence[str]) -> str:
    """The InvokeAI URL that ``serve`` will use: ``--invokeai-url``, else the environment."""
    for i, arg in enumerate(argv):
        if arg == "--invokeai-url" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--invokeai-url="):
            return arg.split("=", 1)[1]
    return os.environ.get("INVOKEAI_URL", DEFAULT_URL)


def _local_port(url: str) -> int | None:
    """The URL's own port when it names this machine and the port is free, else None."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        return None
    return parts.port if _port_is_free(parts.port) else None


def _say(message: str) -> None:
    """One line on stderr, before uvicorn's own log lines."""
    sys.stderr.write(f"invokeai-gateway: {message}\n")
    sys.stderr.flush()


def start_local_for(url: str, data_dir: Path) -> RunningServer:
    """Provision (first time: minutes) and start the local InvokeAI, saying what happens."""
    _say(
        f"no InvokeAI answers at {url}; starting the embedded InvokeAI {INVOKEAI_VERSION} "
        f"(CPU, no model weights; set {LOCAL_MODE_ENV}=never to not do this)"
    )
    if not (venv_dir() / READY_MARKER).exists():
        _say(f"provisioning it into {venv_dir()} (first run only: several minutes, ~7 GB)")
    server = start(data_dir / "invokeai", port=_local_port(url))
    _say(f"embedded InvokeAI {INVOKEAI_VERSION} is up at {server.url} (log: {server.log_path})")
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """``invokeai-gateway serve`` with the embedded default: the flags are ``serve``'s."""
    from app.cli import main as gateway_main

    args = list(sys.argv[1:] if argv is None else argv)
    url = _url_from(args)
    if os.environ.get(LOCAL_MODE_ENV, "auto") == "never" or answers(url):
        return gateway_main(["serve", *args])
    data_dir = Path(os.environ.get("GATEWAY_DATA_DIR", "data"))
    # uvicorn handles SIGINT and SIGTERM itself, then raises the signal again with the handler
    # found before it: this one turns it into SystemExit, so the ``finally`` below stops
    # InvokeAI too (and asyncio's own Ctrl-C handler, which would cancel the server, stays out).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    server = start_local_for(url, data_dir)
    try:
        return gateway_main(["serve", *args, "--invokeai-url", server.url])
    finally:
        _say(f"stopping the embedded InvokeAI at {server.url}")
        server.stop()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _main_interruptible() -> int:
    """``main``; Ctrl-C (uvicorn re-raises it after its graceful stop) ends with 130, quietly."""
    try:
        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(_main_interruptible())
