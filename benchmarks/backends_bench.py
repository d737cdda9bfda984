"""Issue 15 ("Scale past one machine"): one gateway in front of one InvokeAI against two.

``scripts/bench backends`` writes ``benchmarks/backends_results.md`` and ``.json``. The suite
gets the URL of one real InvokeAI (server ``a``) and starts a second one itself (server ``b``,
``tests.support.invokeai_server.start()``, its own root folder), both on this machine.

1. Throughput. A batch of runs is submitted at once through the gateway (``POST
   /workflows/{id}/runs``, all requests concurrent), and the batch ends when the last run's
   terminal event (``run.succeeded`` / ``failed`` / ``canceled``) arrives on the gateway's
   ``GET /events`` stream, opened before the batch (a warm-up run, one per server, is seen
   on it first, so it is subscribed). The figure is runs / (last terminal event - first
   POST). The gateway is a real ``python -m app serve`` subprocess with a fresh SQLite file,
   started for each batch with ``INVOKEAI_URL=a=URL`` (1 backend) or ``a=URL, b=URL`` (2
   backends); the two configurations alternate, the order reversed every other round, so
   drift on the machine hits both. Each run's ``backend`` (from ``GET /runs/{id}``) gives the
   spread (a gateway with one server records none: ``None``). Each batch also records how
   busy the machine's cores were (``/proc/stat``, first POST to last terminal event: 100 %
   means no idle core was left for a second server to use), how much of that was processes
   this benchmark did not start (the machine's busy time less the CPU of this process and
   its descendants: other work sharing the machine, which skews every figure), and the
   gateway's CPU per run.
   Two workloads:

   - model-free: ``tests/workflows/noise_on_blank_canvas.json`` (a blank canvas, then
     noise on it) at ``BENCH_BACKENDS_SIZE`` px square (default 1024: InvokeAI spends most
     of a run encoding the incompressible PNG), a fresh seed per run so nothing is cached;
     ``BENCH_BACKENDS_RUNS`` runs per batch (default 40), ``BENCH_BACKENDS_ROUNDS`` rounds
     (default 3);
   - the tiny SD1.5 (random weights, built locally, installed on every server) through the
     shipped "Text to Image - SD1.5" workflow, 64x64, 30 steps, a fresh prompt per run;
     ``BENCH_BACKENDS_SD_RUNS`` per batch (default 4), ``BENCH_BACKENDS_SD_ROUNDS`` (default
     2); ``BENCH_BACKENDS_SD_RUNS=0`` skips it. Torch runs each operation on one thread per
     core by default, so two servers on one machine ask for twice the cores there are; two
     more servers started with ``OMP_NUM_THREADS=1`` (one torch thread each) are the third
     and fourth contenders (1 and 2 backends), rotated with the first two.

   Issue 15's target is a ratio (2 backends / 1 backend) >= 1.6. Both servers share this
   machine's cores, so the ratio measures how much of one InvokeAI's run time leaves cores
   idle (its single-threaded parts, Python overhead, PNG encoding, I/O), not what a second
   machine would give.

2. The gateway's own cost per run, SQLite against PostgreSQL: one backend, small noise runs
   (64 px, so runs are short), ``BENCH_BACKENDS_CPU_RUNS`` per batch (default 40) submitted at
   once and waited for as above, after a warm-up run. The gateway process's CPU time
   (utime + stime from ``/proc/<pid>/stat``) is read before the batch and one second after
   its last terminal event; the difference over the runs is CPU ms per run. The PostgreSQL
   server (``tests.support.postgres_server``, a throwaway cluster with ``fsync=off``) is
   measured the same way (its postmaster with its reaped children, plus its live backends),
   as a separate row: it is CPU the SQLite gateway spends inside its own process. The
   databases alternate over ``BENCH_BACKENDS_CPU_ROUNDS`` rounds (default 2), every round with
   a fresh database and a fresh gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from invokeai_py_client import InvokeAIClient
from tests.support import invokeai_server, tiny_models
from tests.support.editor_files import with_denoise
from tests.support.invokeai_server import free_port, running_server
from tests.support.postgres_server import find_binaries, running_postgres

from ._report import Report, Row
from .gateway_bench import wait_ready

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
NOISE_FILE = ROOT / "tests" / "workflows" / "noise_on_blank_canvas.json"
SD15_FILE = "Text to Image - SD1.5.json"
TERMINAL = ("run.succeeded", "run.failed", "run.canceled")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


RUNS = _env("BENCH_BACKENDS_RUNS", 40)
ROUNDS = _env("BENCH_BACKENDS_ROUNDS", 3)
SIZE = _env("BENCH_BACKENDS_SIZE", 1024)
SD_RUNS = _env("BENCH_BACKENDS_SD_RUNS", 4)
SD_ROUNDS = _env("BENCH_BACKENDS_SD_ROUNDS", 2)
SD_STEPS = 30
SD_SIZE = 64
CPU_RUNS = _env("BENCH_BACKENDS_CPU_RUNS", 40)
CPU_ROUNDS = _env("BENCH_BACKENDS_CPU_ROUNDS", 2)
CPU_SIZE = 64


# -- the gateway and the servers ------------------------------------------------------------


@contextmanager
def gateway(invokeai_url: str, database_url: str | None = None) -> Iterator[tuple[str, int]]:
    """``python -m app serve`` on a free port (fresh SQLite file unless ``database_url``);
    yields (url, pid) once every backend is followed."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        command = [sys.executable, "-m", "app", "serve", "--invokeai-url", invokeai_url]
        command += ["--port", str(port), "--data-dir", data, "--log-level", "warning"]
        if database_url:
            command += ["--database-url", database_url]
        proc = subprocess.Popen(command, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=2) as http:
                wait_ready(http, f"{url}/readyz", proc)
            _wait_all_healthy(url)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_all_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        backends = httpx.get(f"{url}/backends", timeout=10).json()["data"]
        if all(b["healthy"] for b in backends):
            return
        time.sleep(0.2)
    raise RuntimeError(f"not every backend became healthy: {backends}")


@contextmanager
def second_server(torch_threads: int | None = None) -> Iterator[str]:
    """Another real InvokeAI (its own root folder); ``torch_threads``: its
    ``OMP_NUM_THREADS`` (torch's threads per operation; by default one per core)."""
    saved = os.environ.get("OMP_NUM_THREADS")
    if torch_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    try:
        server = invokeai_server.start()
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of ``pid`` (and of its reaped children: cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def _descendants(root: int) -> list[int]:
    """Every live process under ``root`` (children, their children...)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with suppress(OSError, ValueError):
                parents[int(proc.name)] = _ppid(int(proc.name))
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def own_cpu_seconds() -> float:
    """CPU of this benchmark and everything it started (the InvokeAI servers, gateways,
    PostgreSQL), reaped or alive: what is left of the machine's busy time is other load."""
    total = cpu_seconds(os.getpid(), children=True)
    for pid in _descendants(os.getpid()):
        with suppress(OSError, ValueError):
            total += cpu_seconds(pid, children=True)
    return total


def invokeai_cpu_seconds() -> dict[str, float]:
    """CPU time of each ``invokeai-web`` this benchmark started, by its root folder's name."""
    found = {}
    for pid in _descendants(os.getpid()):
        with suppress(OSError, ValueError, IndexError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if any(arg.endswith("/invokeai-web") for arg in argv) and "--root" in argv:
                root = Path(argv[argv.index("--root") + 1]).name
                found[root] = cpu_seconds(pid, children=True)
    return found


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def postgres_cpu_seconds(port: int) -> float:
    """The cluster listening on ``port``: its postmaster (with reaped children) and every
    live child (the backends serving the gateway, the background workers)."""
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    master = None
    for proc in procs:
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and b"-p" in argv and str(port).encode() in argv:
            master = int(proc.name)
    if master is None:
        return float("nan")
    total = cpu_seconds(master, children=True)
    for proc in procs:
        try:
            if _ppid(int(proc.name)) == master:
                total += cpu_seconds(int(proc.name))
        except OSError:
            continue
    return total


# -- one batch -------------------------------------------------------------------------------


@dataclass
class Batch:
    """A batch's outcome: runs/s, where the runs went, how they ended."""

    runs_per_s: float
    backends: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    busy: float = 0.0  # the machine's cores busy during the batch (1.0: all of them)
    foreign: float = 0.0  # of which by processes this benchmark did not start
    gateway_ms: float = 0.0  # the gateway process's CPU per run (ms)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class _Events:
    """The gateway's ``/events`` stream, read in the background: when each run ended."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.ended: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Events:
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def _read(self) -> None:
        event = ""
        async with self.http.stream("GET", "/events", timeout=None) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in TERMINAL:
                    self.ended[json.loads(line[5:])["run_id"]] = time.perf_counter()
                    self.changed.set()

    async def wait(self, run_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(r in self.ended for r in run_ids):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{sum(r not in self.ended for r in run_ids)} runs unfinished")
            self.changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 5))


async def _post(http: httpx.AsyncClient, workflow_id: str, inputs: dict[str, Any]) -> str:
    answer = await http.post(f"/workflows/{workflow_id}/runs", json={"inputs": inputs})
    if answer.status_code != 202:
        raise RuntimeError(f"POST run: {answer.status_code} {answer.text}")
    return str(answer.json()["id"])


def _tag() -> str:
    """A fresh value per run (its seed or prompt): nothing is cached."""
    return uuid.uuid4().hex


@dataclass
class Workload:
    """A workflow to register and the inputs of its n-th run (each different)."""

    name: str
    definition: dict[str, Any]
    inputs: Callable[[dict[str, str], str], dict[str, Any]]  # (index by label, tag) -> inputs
    timeout: float


async def batch(url: str, pid: int, workload: Workload, runs: int, warm_up: int) -> Batch:
    """``warm_up`` runs at once and waited for, then ``runs`` at once."""
    limits = httpx.Limits(max_connections=runs + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        answer = (await http.post("/workflows", json=workload.definition)).json()
        workflow_id = answer["id"]
        index = {i["label"]: str(i["index"]) for i in answer["inputs"]}
        async with _Events(http) as events:
            await asyncio.sleep(0.3)
            # At once, so they spread over the servers (placed one after another, each would
            # find every server idle and go to the first); also proves the stream subscribed.
            warm = await asyncio.gather(
                *(_post(http, workflow_id, workload.inputs(index, _tag())) for _ in range(warm_up))
            )
            await events.wait(list(warm), workload.timeout * warm_up)
            cpu_before = cpu_seconds(pid)
            ticks_before = machine_ticks()
            own_before = own_cpu_seconds()
            tags = [_tag() for _ in range(runs)]
            start = time.perf_counter()
            ids = await asyncio.gather(
                *(_post(http, workflow_id, workload.inputs(index, tag)) for tag in tags)
            )
            await events.wait(list(ids), workload.timeout * runs)
            end = max(events.ended[r] for r in ids)
            ticks_after = machine_ticks()
            own_after = own_cpu_seconds()
            await asyncio.sleep(1.0)  # what the gateway does after the end counts too
            cpu_after = cpu_seconds(pid)
        finished = [(await http.get(f"/runs/{r}")).json() for r in ids]
    total = max(1, ticks_after[1] - ticks_before[1])
    busy = (ticks_after[0] - ticks_before[0]) / total
    foreign = max(0.0, busy - (own_after - own_before) * CLK_TCK / total)
    outcome = Batch(runs / (end - start), seconds=end - start, busy=busy, foreign=foreign)
    outcome.gateway_ms = (cpu_after - cpu_before) * 1000 / runs
    outcome.backends.update(str(r["backend"]) for r in finished)
    outcome.statuses.update(str(r["status"]) for r in finished)
    return outcome


def noise_workload(size: int) -> Workload:
    def inputs(_index: dict[str, str], tag: str) -> dict[str, Any]:
        return {"0": size, "1": size, "3": int(tag[:7], 16)}

    definition = json.loads(NOISE_FILE.read_text())
    return Workload(f"noise {size}x{size}", definition, inputs, timeout=60)


def sd15_workload(model_key: str) -> Workload:
    definition = json.loads((invokeai_server.shipped_workflows_dir() / SD15_FILE).read_text())
    with_denoise(definition, steps=SD_STEPS)

    def inputs(index: dict[str, str], tag: str) -> dict[str, Any]:
        return {
            index["model"]: model_key,
            index["Positive Prompt"]: f"a lighthouse, take {tag}",
            index["Width"]: SD_SIZE,
            index["Height"]: SD_SIZE,
        }

    return Workload(f"tiny SD1.5 {SD_SIZE}x{SD_SIZE}, {SD_STEPS} steps", definition, inputs, 120)


def install_tiny_sd1(invokeai_url: str) -> str:
    """Install the tiny SD1.5 in place on a server (unless it has it); its key there."""
    folder = tiny_models.ensure_built(invokeai_server.venv_dir()) / tiny_models.SD1_NAME
    with InvokeAIClient.from_url(invokeai_url) as client:
        repo = client.dnn_model_repo
        found = repo.find_models(tiny_models.SD1_NAME, base="sd-1", type="main", exact=True)
        if found:
            return str(found[0].key)
        model = repo.install_model(str(folder), config={"name": tiny_models.SD1_NAME})
        return str(model.key)


# -- 1. throughput ---------------------------------------------------------------------------


@dataclass
class Config:
    """One contender: its name and the gateway's ``INVOKEAI_URL``."""

    name: str
    invokeai_url: str
    workload: Workload | None = None  # when not the suite's (a model key is per server)
    baseline: str | None = None  # the contender its ratio compares with (default: the first)

    @property
    def backends(self) -> int:
        return self.invokeai_url.count(",") + 1


def throughput(
    report: Report, configs: list[Config], workload: Workload, runs: int, rounds: int, scenario: str
) -> None:
    """Each configuration once per round, the order rotated every round; a configuration's
    ratio compares it with its ``baseline`` (by default the first configuration)."""
    results: dict[str, list[Batch]] = {c.name: [] for c in configs}
    for round_ in range(rounds):
        shift = round_ % len(configs)
        for config in configs[shift:] + configs[:shift]:
            work = config.workload or workload
            servers_before = invokeai_cpu_seconds()
            with gateway(config.invokeai_url) as (url, pid):
                outcome = asyncio.run(batch(url, pid, work, runs, config.backends))
            servers = invokeai_cpu_seconds()
            used = {k: v - servers_before.get(k, 0.0) for k, v in servers.items()}
            print(
                f"  {workload.name}, {config.name}, round {round_ + 1}: "
                f"{outcome.runs_per_s:.3f} runs/s in {outcome.seconds:.1f} s, "
                f"cores busy {outcome.busy:.0%} (other processes {outcome.foreign:.0%}), "
                f"gateway {outcome.gateway_ms:.1f} ms CPU/run, "
                f"{dict(outcome.backends)}, {dict(outcome.statuses)}; InvokeAI CPU s by root "
                f"(warm-up included): { {k: round(v, 1) for k, v in used.items() if v >= 0.05} }",
                flush=True,
            )
            results[config.name].append(outcome)
    for config in configs:
        base = results[config.baseline or configs[0].name]
        base_median = statistics.median(o.runs_per_s for o in base)
        outcomes = results[config.name]
        spread = " / ".join(_spread(o) for o in outcomes)
        statuses = sum((o.statuses for o in outcomes), Counter[str]())
        busy = ", ".join(f"{o.busy:.0%} ({o.foreign:.0%})" for o in outcomes)
        gateway_ms = statistics.median(o.gateway_ms for o in outcomes)
        note = (
            f"{rounds} rounds x {runs} runs; runs per backend, by round: {spread}; "
            f"machine's cores busy (of which by processes not ours), by round: {busy}; "
            f"gateway {gateway_ms:.0f} ms CPU/run"
        )
        if set(statuses) != {"succeeded"}:
            note += f"; statuses {dict(statuses)}"
        row = report.add(
            Row(scenario, config.name, "runs/s", [o.runs_per_s for o in outcomes], note=note)
        )
        row.ratio = row.median / base_median
        if outcomes is not base:
            paired = [o.runs_per_s / b.runs_per_s for o, b in zip(outcomes, base, strict=True)]
            row.note += f"; ratio by round {', '.join(f'{r:.2f}' for r in paired)}"
        if config.backends == 2:
            row.target = "ratio >= 1.6"
            row.note += "; met" if row.ratio >= 1.6 else "; NOT met"


def _spread(outcome: Batch) -> str:
    return "+".join(f"{name}:{n}" for name, n in sorted(outcome.backends.items()))


# -- 2. gateway CPU per run, SQLite against PostgreSQL ----------------------------------------


def database_cost(report: Report, a: str) -> None:
    if find_binaries() is None:
        print("  PostgreSQL is not installed: the database comparison is skipped", flush=True)
        return
    workload = noise_workload(CPU_SIZE)
    gateway_ms: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    server_ms: list[float] = []
    with running_postgres() as pg:
        for round_ in range(CPU_ROUNDS):
            order = ("SQLite", "PostgreSQL") if round_ % 2 == 0 else ("PostgreSQL", "SQLite")
            for db in order:
                database_url = pg.fresh_database() if db == "PostgreSQL" else None
                with gateway(f"a={a}", database_url) as (url, pid):
                    pg_before = postgres_cpu_seconds(pg.port)
                    outcome = asyncio.run(batch(url, pid, workload, CPU_RUNS, 1))
                    pg_after = postgres_cpu_seconds(pg.port)
                gateway_ms[db].append(outcome.gateway_ms)
                if db == "PostgreSQL":
                    # the warm-up run's share is in it too: a small over-count
                    server_ms.append((pg_after - pg_before) * 1000 / CPU_RUNS)
                print(
                    f"  {db}, round {round_ + 1}: gateway {outcome.gateway_ms:.1f} ms CPU/run, "
                    f"{dict(outcome.statuses)}",
                    flush=True,
                )
    scenario = f"2. gateway CPU per run, noise {CPU_SIZE}x{CPU_SIZE}, 1 backend"
    note = f"{CPU_ROUNDS} rounds x {CPU_RUNS} runs at once; utime+stime of the gateway process"
    base = report.add(Row(scenario, "gateway, SQLite", "ms CPU/run", gateway_ms["SQLite"]))
    base.note = note
    base.ratio = 1.0
    row = report.add(Row(scenario, "gateway, PostgreSQL", "ms CPU/run", gateway_ms["PostgreSQL"]))
    row.note = note
    row.ratio = row.median / base.median
    report.add(
        Row(
            scenario,
            "PostgreSQL server itself",
            "ms CPU/run",
            server_ms,
            note="postmaster + its backends, same batches (includes the warm-up run's share)",
        )
    )


# -- the suite --------------------------------------------------------------------------------


def run(invokeai_url: str, report: Report) -> None:
    """Both parts, rows added to ``report``."""
    a = invokeai_url
    with second_server() as b:
        print(f"  second InvokeAI at {b}", flush=True)
        throughput(
            report,
            [Config("1 backend", f"a={a}"), Config("2 backends", f"a={a}, b={b}")],
            noise_workload(SIZE),
            RUNS,
            ROUNDS,
            f"1a. throughput, noise {SIZE}x{SIZE} (model-free)",
        )
        if SD_RUNS:
            with second_server(torch_threads=1) as a1, second_server(torch_threads=1) as b1:
                keys = {url: install_tiny_sd1(url) for url in (a, b, a1, b1)}
                one_thread = sd15_workload(keys[a1])  # a gateway knows its own servers' keys
                configs = [
                    Config("1 backend", f"a={a}"),
                    Config("2 backends", f"a={a}, b={b}"),
                    Config("1 backend, 1 torch thread", f"a1={a1}", one_thread),
                    Config(
                        "2 backends, 1 torch thread each",
                        f"a1={a1}, b1={b1}",
                        one_thread,
                        baseline="1 backend, 1 torch thread",
                    ),
                ]
                throughput(
                    report,
                    configs,
                    sd15_workload(keys[a]),
                    SD_RUNS,
                    SD_ROUNDS,
                    f"1b. throughput, tiny SD1.5 {SD_SIZE}x{SD_SIZE}, {SD_STEPS} steps",
                )
    database_cost(report, invokeai_url)


def main() -> int:
    report = Report("Several InvokeAI servers")
    with running_server() as invokeai_url:
        run(invokeai_url, report)
    path = report.write("backends_results")
    print(report.markdown())
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
