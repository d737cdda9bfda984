"""The older client (``invokeai-py-client`` 1.1.1 from PyPI), in a virtualenv of its own.

It is never a dependency of this project: it would shadow our package of the same import name.
The first use creates ``benchmarks/.work/legacy-venv`` (gitignored) with ``python -m venv`` and
pip-installs the pinned release; later runs reuse it. The benchmark talks to it only through
``_legacy_driver.py``, run by that venv's interpreter in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
VENV = WORK / "legacy-venv"
PACKAGE = "invokeai-py-client==1.1.1"
DRIVER = HERE / "_legacy_driver.py"


def legacy_python() -> Path:
    """The legacy venv's interpreter, creating the venv and installing the package if needed."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if marker.exists() and marker.read_text() == PACKAGE:
        return python
    WORK.mkdir(exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE]
    subprocess.run(pip, check=True, stderr=subprocess.DEVNULL)
    marker.write_text(PACKAGE)
    return python


def run_driver(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """Run the driver with ``args``; its JSON answer, or ``{"error": ...}`` if it crashed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # cwd outside the checkout, so our own ``invokeai_py_client`` can never be imported instead.
    done = subprocess.run(
        [str(legacy_python()), str(DRIVER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=WORK,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"driver exited {done.returncode}: {tail}"[:300]}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer
