"""Settings from the environment and flags; ``invokeai-gateway migrate``; ``python -m app``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.cli import build_parser, main, settings_from_args
from app.core.config import Settings
from app.db.engine import make_engine

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = Settings()
    assert s.invokeai_url == "http://127.0.0.1:9090"
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("gateway.db")


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INVOKEAI_URL", "http://10.0.0.5:9999")
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    monkeypatch.setenv("GATEWAY_PORT", "9001")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.invokeai_url == "http://10.0.0.5:9999"
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert s.database_url == f"sqlite:///{tmp_path / 'gateway.db'}"
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "sqlite:////elsewhere/x.db")
    assert Settings().database_url == "sqlite:////elsewhere/x.db"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9001")
    monkeypatch.setenv("INVOKEAI_URL", "http://env:1")
    args = build_parser().parse_args(
        ["serve", "--port", "7000", "--invokeai-url", "http://flag:2", "--host", "::1"]
    )
    s = settings_from_args(args)
    assert (s.port, s.invokeai_url, s.host) == (7000, "http://flag:2", "::1")
    assert settings_from_args(build_parser().parse_args(["serve"])).port == 9001


def test_operational_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAX_UNFINISHED_RUNS", "5")
    args = build_parser().parse_args(
        [
            "serve",
            "--cors-origins",
            "https://a.example,https://b.example",
            "--max-unfinished-runs",
            "50",
            "--idempotency-ttl",
            "60",
            "--sse-ping",
            "2.5",
        ]
    )
    s = settings_from_args(args)
    assert s.cors_origin_list == ["https://a.example", "https://b.example"]
    assert (s.max_unfinished_runs, s.idempotency_ttl_seconds, s.sse_ping_seconds) == (50, 60, 2.5)


@pytest.mark.parametrize("flag", ["--api-keys", "--password", "--webhook-secret"])
def test_secrets_have_no_flags(flag: str) -> None:
    """Secrets stay in the environment: a flag would show them in the process list."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", flag, "x"])


def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    assert main(["migrate", "--data-dir", str(tmp_path / "d")]) == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'd' / 'gateway.db'}")
    assert "run" in inspect(engine).get_table_names()


def test_python_dash_m_app_is_the_console_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--invokeai-url", "--database-url", "--host", "--port", "--data-dir"):
        assert flag in out


def test_migrate_never_logs_the_database_password(tmp_path: Path) -> None:
    secret = "S3cret-DB-Pass-77"
    # A working database URL with a password (a SQLite dialect that ignores it), and the real
    # command's entry point in a process of its own.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env["GATEWAY_DATABASE_URL"] = f"sqlite+withpassword://gateway:{secret}@/gateway.db"
    script = (
        "import sys; from tests.support.sqlite_with_password import register; register(); "
        "from app.cli import main; sys.exit(main(['migrate']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gateway.db").exists()
    output = result.stdout + result.stderr
    assert "database at head: sqlite+withpassword://gateway:***@/gateway.db" in output
    assert secret not in output


def test_a_password_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """Arguments are in the process list, which every user of the machine can read."""
    url = "postgresql://gateway:S3cret@127.0.0.1:5432/gateway"
    for command in ("serve", "migrate"):
        result = subprocess.run(
            [sys.executable, "-m", "app", command, "--database-url", url],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "GATEWAY_DATABASE_URL" in result.stderr


SERVE_PROBE = """
import gc, sys
from app import cli

def fake_run(app, **options):
    loaded = [n for n in cli.UNUSED_BY_SERVE if sys.modules.get(n) is not None]
    print(gc.isenabled(), gc.get_freeze_count() > 10_000, loaded, options["ws"])

def start_then_stub(start=cli._start_serve_process):
    start()
    import uvicorn  # only now, as ``serve`` itself imports it: after the modules are marked

    uvicorn.run = fake_run

cli._start_serve_process = start_then_stub
cli.main(["serve", "--data-dir", sys.argv[1]])
"""


def test_serve_builds_the_app_with_the_collector_paused_and_hands_it_on_enabled(
    tmp_path: Path,
) -> None:
    # What ``serve`` gives uvicorn: the collector back on, the imports' objects frozen, none
    # of the modules it marks unused loaded (their libraries took the ImportError path).
    found = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split("\n")[0] == "True True [] none"
