#!/usr/bin/env python
"""AgencyHub chat overhead benchmark: the deployed configuration versus the provider straight.

    make bench                                   # or: .venv/bin/python bench/chat_overhead.py
    .venv/bin/python bench/chat_overhead.py --workers 2 --threads 500   # try another server shape
    .venv/bin/python bench/chat_overhead.py --scale 0.3                  # a quicker, noisier run

What it does (everything on loopback, every process it starts is stopped in a `finally`):

1. (Re)creates the PostgreSQL database `agencyhub_bench`, migrates it, flushes Redis db 13, seeds the
   catalogue, a tenant + API key, the three providers pointed at the simulator, agency credentials and a
   tenant routing policy whose default model is openai/gpt-4o-mini.
2. Starts the provider simulator (`manage.py provider_simulator --port 9101`) and gunicorn with the
   production command from the README (see GUNICORN_ARGS), waits until both answer.
3. Drives `POST /v1/chat/completions` (plain and streamed) through AgencyHub and the same request
   straight to the simulator's OpenAI endpoint, in the same run, at concurrency 1, 10 and 100 with 0 ms
   provider latency, then 1,000 requests in flight with 1 s provider latency, then the concurrency-10
   plain scenario again (memory check).
4. Prints a table and writes bench/results/chat_overhead.json.

The load generator is asyncio over raw sockets (one keep-alive connection per concurrent client, a
pre-built request, a minimal HTTP/1.1 response parser): it costs far less CPU per request than the
server, but it does share the 2 cores with gunicorn and the simulator; its own CPU per request is
reported next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
GUNICORN = str(VENV_BIN / "gunicorn") if (VENV_BIN / "gunicorn").exists() else "gunicorn"

HOST = "127.0.0.1"
GATEWAY_PORT = 8100
SIMULATOR_PORT = 9101
DB_NAME = "agencyhub_bench"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/13"
TENANT_SLUG = "bench"
PROVIDER_KEY_ENV = "BENCH_PROVIDER_KEY"

DEPLOYED_WORKERS = 4
DEPLOYED_THREADS = 250
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def report_header(started_at: str, g_args: list[str], env: dict[str, str], extra_env: tuple[str, ...] = ()) -> dict:
    """What every results JSON starts with: when, the server command and its settings (secrets elided), the machine."""
    keys = ("DATABASE_URL", "DATABASE_POOL_MAX_SIZE", "REDIS_URL", "FIELD_ENCRYPTION_KEYS", "SECRET_KEY", "DEBUG",
            "CELERY_TASK_ALWAYS_EAGER", "LOG_LEVEL", *extra_env)
    return {
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server_command": "gunicorn " + " ".join(g_args),
        "server_env": {k: ("<generated>" if k in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS") else env[k]) for k in keys},
        "simulator_command": f"manage.py provider_simulator --port {SIMULATOR_PORT}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def gunicorn_args(workers: int, threads: int) -> list[str]:
    """The production server command (README, "Running in production"), bound to loopback, no access log."""
    return [
        "agencyhub.wsgi:application", "-k", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--bind", f"{HOST}:{GATEWAY_PORT}", "--backlog", "2048", "--keep-alive", "30", "--graceful-timeout", "90",
    ]


def server_env(secret_key: str, fernet_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # no real provider keys leak in
    env.update({
        "DATABASE_URL": DATABASE_URL,
        "DATABASE_POOL_MAX_SIZE": "15",
        "REDIS_URL": REDIS_URL,
        "FIELD_ENCRYPTION_KEYS": fernet_key,
        "SECRET_KEY": secret_key,
        "DEBUG": "false",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SETTINGS_MODULE": "agencyhub.settings",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# processes


class Processes:
    """Children started by the benchmark, each in its own session; stop() ends them by pid / own group."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        path = self.logdir / f"{name}.log"
        out = open(path, "wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        out.close()
        self.procs[name] = proc
        self.logs[name] = path
        return proc

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except (KeyError, OSError):
            return ""

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.tail(name)}")

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The child leads its own process group (start_new_session): kill what is left of it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"warning: {name} (pid {proc.pid}) did not exit")
        self.procs.clear()


def http_call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None,
              timeout: float = 10.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_until_answers(procs: Processes, name: str, port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        procs.check_alive(name)
        try:
            status, _, body = http_call(port, "GET", path, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on {HOST}:{port}{path} within {timeout:.0f}s ({last})\n{procs.tail(name)}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------------------------------
# /proc accounting


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces: split after its closing parenthesis
    return raw[raw.rindex(")") + 2:].split()


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid:  # fields[1] is ppid (field 4 of stat)
                kids.append(int(entry))
    return sorted(kids)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (+ cutime + cstime: reaped children) of the given processes, all threads."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # stat fields 14-17
    return ticks / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


@dataclass
class Tree:
    """The gunicorn master and its workers (re-read each time: a worker may have been replaced)."""

    master: int

    def workers(self) -> list[int]:
        return children_of(self.master)

    def pids(self) -> list[int]:
        return [self.master, *self.workers()]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def memory(self) -> dict:
        workers = {pid: proc_status(pid) for pid in self.workers()}
        return {
            "worker_rss_mb": round(sum(s.get("VmRSS", 0) for s in workers.values()) / 1024, 1),
            "worker_rss_mb_each": [round(s.get("VmRSS", 0) / 1024, 1) for s in workers.values()],
            "master_rss_mb": round(proc_status(self.master).get("VmRSS", 0) / 1024, 1),
            "worker_threads": [s.get("Threads", 0) for s in workers.values()],
            "worker_pids": list(workers),
        }


class Sampler(threading.Thread):
    """During a scenario: peak PostgreSQL connections to the bench DB and peak worker threads (bounded loop)."""

    def __init__(self, tree: Tree | None, interval: float = 0.5, max_seconds: float = 600):
        super().__init__(daemon=True)
        self.tree = tree
        self.interval = interval
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.peak_db_connections = 0
        self.peak_threads = 0

    def run(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        except Exception:  # noqa: BLE001 - the sampler is informative only
            return
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                (count,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DB_NAME,)).fetchone()
                self.peak_db_connections = max(self.peak_db_connections, count)
                if self.tree:
                    threads = sum(proc_status(p).get("Threads", 0) for p in self.tree.workers())
                    self.peak_threads = max(self.peak_threads, threads)
                self.stop_event.wait(self.interval)
        finally:
            conn.close()

    def finish(self) -> dict:
        self.stop_event.set()
        self.join(timeout=5)
        return {"peak_db_connections": self.peak_db_connections, "peak_worker_threads": self.peak_threads}


# --------------------------------------------------------------------------------------------------
# set-up


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def recreate_database() -> None:
    """A fresh database each run: comparable table sizes, and credentials encrypted with this run's key."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


POLICY_SNIPPET = """
import json
from providers.models import LLMModel
from routing.models import RoutingPolicy
from tenants.models import Tenant

tenant = Tenant.objects.get(slug={slug!r})
model = LLMModel.objects.select_related("provider").get(provider__kind="openai", model_id="gpt-4o-mini")
fields = {{f.name for f in RoutingPolicy._meta.get_fields()}}
defaults = {{"name": "Bench"}} if "name" in fields else {{}}
if "default_model" in fields:  # the first cut: a policy names its default model
    defaults["default_model"] = model
else:  # later: a policy names a target (one model plus fallbacks)
    from routing.models import RoutingTarget
    defaults["default_target"], _ = RoutingTarget.objects.get_or_create(name="Bench: openai/gpt-4o-mini", defaults={{"model": model}})
policy, _ = RoutingPolicy.objects.update_or_create(tenant=tenant, defaults=defaults)
print(json.dumps({{"policy": policy.pk, "model": model.model_id, "provider": model.provider.kind}}))
"""


def seed(env: dict[str, str]) -> str:
    """Migrate and seed; returns the tenant's API key (plain)."""
    log("migrate")
    manage(env, "migrate", "--noinput")
    log("load_catalog, tenant, providers -> simulator, credentials, routing policy")
    manage(env, "load_catalog")
    tenant = json.loads(manage(env, "create_tenant", TENANT_SLUG, "--name", "Bench client").strip().splitlines()[-1])
    sim = f"http://{HOST}:{SIMULATOR_PORT}"
    for kind, url in (("openai", f"{sim}/openai/v1"), ("anthropic", f"{sim}/anthropic"), ("openrouter", f"{sim}/openrouter/api/v1")):
        manage(env, "configure_provider", kind, "--base-url", url, "--enable")
        manage(env, "set_credential", kind, "--label", "agency", "--from-env", PROVIDER_KEY_ENV)
    manage(env, "shell", "-c", POLICY_SNIPPET.format(slug=TENANT_SLUG))
    return tenant["api_key"]


# --------------------------------------------------------------------------------------------------
# load generator


@dataclass
class Target:
    name: str  # "gateway" | "direct"
    port: int
    path: str
    body: dict
    key: str
    stream: bool

    def request_bytes(self) -> bytes:
        body = json.dumps(self.body, separators=(",", ":")).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def valid(self, body: bytes) -> bool:
        if self.stream:
            return b"data: [DONE]" in body and (b'"usage"' in body)
        return b'"chat.completion"' in body


def targets(api_key: str) -> dict[tuple[str, str], Target]:
    msgs = [{"role": "user", "content": "hello"}]
    stream_opts = {"stream": True, "stream_options": {"include_usage": True}}
    out = {}
    for mode, extra in (("plain", {}), ("stream", stream_opts)):
        out[("gateway", mode)] = Target("gateway", GATEWAY_PORT, "/v1/chat/completions",
                                        {"model": "auto", "messages": msgs, **extra}, api_key, bool(extra))
        out[("direct", mode)] = Target("direct", SIMULATOR_PORT, "/openai/v1/chat/completions",
                                       {"model": "gpt-4o-mini", "messages": msgs, **extra}, "sk-bench-direct", bool(extra))
    return out


class HTTPError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Minimal HTTP/1.1 response reader: (status, body, keep_alive). Handles Content-Length and chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HTTPError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get(b"connection") != b"close"
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = await reader.read()
        keep_alive = False
    return status, body, keep_alive


@dataclass
class RunStats:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_error_sample: str = ""

    def error(self, kind: str, sample: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if sample and not self.first_error_sample:
            self.first_error_sample = sample[:500]


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _client(target: Target, request: bytes, remaining: list[int], stats: RunStats, gate: asyncio.Event,
                  ready: list[int], timeout: float) -> None:
    conn = None
    try:
        conn = await asyncio.wait_for(_open(target.port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        stats.error(f"connect:{type(exc).__name__}", repr(exc))
    ready[0] += 1
    await gate.wait()
    while remaining[0] > 0:
        remaining[0] -= 1
        started = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.wait_for(_open(target.port), timeout)
            reader, writer = conn
            writer.write(request)
            status, body, keep_alive = await asyncio.wait_for(read_response(reader), timeout)
            elapsed = time.perf_counter() - started
            if status != 200:
                stats.error(f"http_{status}", body.decode(errors="replace"))
            elif not target.valid(body):
                stats.error("bad_body", body.decode(errors="replace"))
            else:
                stats.latencies.append(elapsed)
            if not keep_alive:
                writer.close()
                conn = None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HTTPError, ValueError) as exc:
            stats.error(type(exc).__name__, repr(exc))
            if conn is not None:
                conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


async def _drive(target: Target, concurrency: int, requests: int, timeout: float) -> tuple[RunStats, float]:
    request = target.request_bytes()
    stats = RunStats()
    remaining = [requests]
    ready = [0]
    gate = asyncio.Event()
    tasks = [asyncio.create_task(_client(target, request, remaining, stats, gate, ready, timeout)) for _ in range(concurrency)]
    deadline = time.monotonic() + timeout
    while ready[0] < concurrency and time.monotonic() < deadline:  # every connection open before the clock starts
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    gate.set()
    await asyncio.gather(*tasks)
    return stats, time.perf_counter() - started


def drive(target: Target, concurrency: int, requests: int, timeout: float = 60.0) -> tuple[RunStats, float]:
    return asyncio.run(_drive(target, concurrency, requests, timeout))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------------
# scenarios


class Bench:
    def __init__(self, tree: Tree, sim_pid: int, api_key: str):
        self.tree = tree
        self.sim_pid = sim_pid
        self.targets = targets(api_key)
        self.results: list[dict] = []

    def run(self, label: str, target_name: str, mode: str, concurrency: int, requests: int,
            latency_ms: int = 0, record: bool = True, timeout: float = 60.0) -> dict:
        target = self.targets[(target_name, mode)]
        sampler = Sampler(self.tree if target_name == "gateway" else None)
        sampler.start()
        cpu0, sim0, own0 = self.tree.cpu(), cpu_seconds([self.sim_pid]), os.times()
        stats, wall = drive(target, concurrency, requests, timeout)
        cpu1, sim1, own1 = self.tree.cpu(), cpu_seconds([self.sim_pid]), os.times()
        peaks = sampler.finish()
        lat = sorted(stats.latencies)
        n_err = sum(stats.errors.values())
        result = {
            "scenario": label, "target": target_name, "mode": mode, "concurrency": concurrency,
            "provider_latency_ms": latency_ms, "requests": requests, "ok": len(lat), "errors": n_err,
            "error_kinds": stats.errors, "first_error": stats.first_error_sample,
            "wall_s": round(wall, 3), "rps": round(len(lat) / wall, 1) if wall else 0.0,
            "p50_ms": round(percentile(lat, 0.50) * 1000, 2), "p95_ms": round(percentile(lat, 0.95) * 1000, 2),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2), "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "server_cpu_ms_per_req": round((cpu1 - cpu0) * 1000 / requests, 2) if target_name == "gateway" else None,
            "simulator_cpu_ms_per_req": round((sim1 - sim0) * 1000 / requests, 2),
            "loadgen_cpu_ms_per_req": round(((own1.user - own0.user) + (own1.system - own0.system)) * 1000 / requests, 2),
        }
        if target_name == "gateway":
            result.update(self.tree.memory())
            result.update(peaks)
        if record:
            self.results.append(result)
        flag = f"  ERRORS {stats.errors} e.g. {stats.first_error_sample[:200]!r}" if n_err else ""
        cpu = f" cpu {result['server_cpu_ms_per_req']} ms/req rss {result.get('worker_rss_mb')} MB" if target_name == "gateway" else ""
        log(f"{'' if record else '(warm-up) '}{label:<16} {target_name:<7} {mode:<6} c={concurrency:<4} {result['rps']:>7} req/s "
            f"p50 {result['p50_ms']:>7} p95 {result['p95_ms']:>7} p99 {result['p99_ms']:>7} ms{cpu}{flag}")
        return result

    def set_latency(self, latency_ms: int) -> None:
        http_call(SIMULATOR_PORT, "DELETE", "/_control/faults")
        if latency_ms:
            status, _, body = http_call(SIMULATOR_PORT, "POST", "/_control/faults", {"fault": "latency", "latency_ms": latency_ms})
            if status not in (200, 201):
                raise RuntimeError(f"simulator refused the latency fault: {status} {body[:200]!r}")


def scenario_plan(scale: float) -> dict:
    n = lambda x: max(20, int(x * scale))  # noqa: E731
    return {
        "warmup": [("plain", 10, n(200)), ("stream", 10, n(200)), ("plain", 100, n(400)), ("stream", 100, n(200))],
        "grid": [(1, n(300)), (10, n(1000)), (100, n(1000))],
        "inflight": {"concurrency": 1000, "rounds": 2, "latency_ms": 1000},
    }


def run_all(bench: Bench, scale: float, inflight_stream: bool, only: set[str] | None = None) -> None:
    plan = scenario_plan(scale)
    wanted = lambda group: only is None or group in only  # noqa: E731
    bench.set_latency(0)
    log("warm-up (not recorded)")
    for mode, conc, count in plan["warmup"]:
        bench.run("warmup", "direct", mode, conc, count, record=False)
        bench.run("warmup", "gateway", mode, conc, count, record=False)
    for conc, count in plan["grid"]:
        if not wanted(f"c{conc}"):
            continue
        for mode in ("plain", "stream"):
            label = f"c{conc}-{mode}"
            bench.run(label, "direct", mode, conc, count)
            bench.run(label, "gateway", mode, conc, count)
    inflight = plan["inflight"]
    conc, latency = inflight["concurrency"], inflight["latency_ms"]
    bench.set_latency(latency if wanted("inflight") else 0)
    try:
        modes = (("plain", "stream") if inflight_stream else ("plain",)) if wanted("inflight") else ()
        for mode in modes:
            label = f"inflight{conc}-{mode}"
            bench.run(label, "direct", mode, conc, conc * inflight["rounds"], latency_ms=latency, timeout=120)
            bench.run(label, "gateway", mode, conc, conc * inflight["rounds"], latency_ms=latency, timeout=120)
    finally:
        bench.set_latency(0)
    conc, count = plan["grid"][1]
    if wanted("again"):
        bench.run(f"c{conc}-plain-again", "gateway", "plain", conc, count)


# --------------------------------------------------------------------------------------------------
# report


def add_overheads(results: list[dict]) -> None:
    direct = {r["scenario"]: r for r in results if r["target"] == "direct"}
    for r in results:
        base = direct.get(r["scenario"]) or direct.get(r["scenario"].replace("-again", ""))
        if r["target"] == "gateway" and base:
            r["added_p50_ms"] = round(r["p50_ms"] - base["p50_ms"], 2)
            r["added_p95_ms"] = round(r["p95_ms"] - base["p95_ms"], 2)
            r["direct_baseline"] = base["scenario"]


def evaluate(results: list[dict]) -> dict:
    gw = {r["scenario"]: r for r in results if r["target"] == "gateway"}
    zero_latency = [r for r in gw.values() if r["provider_latency_ms"] == 0]
    checks = {}

    def check(name, value, limit, ok):
        checks[name] = {"value": value, "target": limit, "met": bool(ok)}

    worst_cpu = max((r["server_cpu_ms_per_req"] for r in zero_latency), default=None)
    check("server_cpu_ms_per_req (worst 0 ms scenario)", worst_cpu, "<= 4", worst_cpu is not None and worst_cpu <= 4)
    for mode in ("plain", "stream"):
        r1, r10 = gw.get(f"c1-{mode}"), gw.get(f"c10-{mode}")
        if r1:
            check(f"added_p50_ms c=1 {mode}", r1.get("added_p50_ms"), "<= 3", r1.get("added_p50_ms", 1e9) <= 3)
        if r10:
            check(f"added_p50_ms c=10 {mode}", r10.get("added_p50_ms"), "<= 10", r10.get("added_p50_ms", 1e9) <= 10)
    for name, r in gw.items():
        if name.startswith("inflight"):
            check(f"errors {name}", r["errors"], "== 0", r["errors"] == 0)
    first, again = gw.get("c10-plain"), gw.get("c10-plain-again")
    inflight = next((r for n, r in reversed(gw.items()) if n.startswith("inflight")), None)  # the last one
    if first and again:
        # Flat = the end-of-run figure is within 10 % (or 10 MB) of the reference. The reference is the RSS after
        # the 1,000-in-flight scenario when there is one: it grows the thread pools (500 threads a worker, each with
        # its own stack) once, and they are kept; what matters is that repeated traffic does not add more.
        ref = inflight or first
        growth = again["worker_rss_mb"] - ref["worker_rss_mb"]
        check("worker RSS growth MB (end vs after the last in-flight run)", round(growth, 1), "<= max(10 MB, 10 %)",
              growth <= max(10, 0.10 * ref["worker_rss_mb"]))
        checks["worker RSS MB: c10 first / after in-flight / c10 at the end"] = {
            "value": [first["worker_rss_mb"], inflight["worker_rss_mb"] if inflight else None, again["worker_rss_mb"]],
            "target": "informative", "met": None,
        }
    return checks


def table(results: list[dict]) -> str:
    cols = [
        ("scenario", "scenario", "<18"), ("target", "target", "<7"), ("c", "concurrency", ">5"), ("reqs", "requests", ">5"),
        ("req/s", "rps", ">7"), ("p50", "p50_ms", ">8"), ("p95", "p95_ms", ">8"), ("p99", "p99_ms", ">8"),
        ("+p50", "added_p50_ms", ">7"), ("+p95", "added_p95_ms", ">7"), ("err", "errors", ">4"),
        ("cpu ms/req", "server_cpu_ms_per_req", ">10"), ("sim cpu", "simulator_cpu_ms_per_req", ">7"),
        ("lg cpu", "loadgen_cpu_ms_per_req", ">6"), ("rss MB", "worker_rss_mb", ">7"), ("db conn", "peak_db_connections", ">7"),
    ]
    fmt = lambda v, spec: format("" if v is None else v, spec)  # noqa: E731
    lines = ["  ".join(fmt(h, s) for h, _, s in cols)]
    for r in results:
        lines.append("  ".join(fmt(r.get(k), s) for _, k, s in cols))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=DEPLOYED_WORKERS)
    parser.add_argument("--threads", type=int, default=DEPLOYED_THREADS)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the request counts (not the concurrency)")
    parser.add_argument("--no-inflight-stream", action="store_true", help="skip the streamed 1,000-in-flight scenario")
    parser.add_argument("--only", help="comma-separated scenario groups to run: c1,c10,c100,inflight,again (default: all)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/chat_overhead.json for the deployed shape)")
    args = parser.parse_args(argv)

    deployed = (args.workers, args.threads) == (DEPLOYED_WORKERS, DEPLOYED_THREADS) and not args.only
    out = args.out or RESULTS / ("chat_overhead.json" if deployed else
                                 f"chat_overhead-w{args.workers}-t{args.threads}{'-' + args.only.replace(',', '-') if args.only else ''}.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for port in (GATEWAY_PORT, SIMULATOR_PORT):
        if not port_free(port):
            print(f"port {HOST}:{port} is in use: stop what listens there first", file=sys.stderr)
            return 2

    # 1,000 client sockets here, as many again upstream in the server and the simulator: raise the soft
    # descriptor limit for this process and its children (never above the hard limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 16384:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(16384, hard) if hard != resource.RLIM_INFINITY else 16384, hard))

    from cryptography.fernet import Fernet

    env = server_env(secret_key=secrets.token_urlsafe(50), fernet_key=Fernet.generate_key().decode())
    env[PROVIDER_KEY_ENV] = "sk-bench-" + secrets.token_hex(8)

    # SIGTERM / SIGHUP end the run like Ctrl-C does: through the finally below.
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    logdir = Path(tempfile.mkdtemp(prefix="agencyhub-bench-"))
    procs = Processes(logdir)
    g_args = gunicorn_args(args.workers, args.threads)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        log(f"database {DB_NAME} (fresh), redis db 13 (flushed); logs in {logdir}")
        recreate_database()
        flush_redis()
        api_key = seed(env)

        log(f"simulator on :{SIMULATOR_PORT}")
        sim = procs.start("simulator", [PYTHON, "manage.py", "provider_simulator", "--host", HOST, "--port", str(SIMULATOR_PORT)], env)
        wait_until_answers(procs, "simulator", SIMULATOR_PORT, "/_control/health")
        log("gunicorn " + " ".join(g_args))
        gunicorn = procs.start("gunicorn", [GUNICORN, *g_args], env)
        wait_until_answers(procs, "gunicorn", GATEWAY_PORT, "/healthz")
        tree = Tree(gunicorn.pid)
        deadline = time.monotonic() + 30
        while len(tree.workers()) < args.workers and time.monotonic() < deadline:
            time.sleep(0.1)

        status, headers, body = http_call(GATEWAY_PORT, "POST", "/v1/chat/completions",
                                          {"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
                                          {"Authorization": f"Bearer {api_key}"}, timeout=30)
        if status != 200:
            raise RuntimeError(f"smoke request failed: HTTP {status} {body[:500]!r}\n{procs.tail('gunicorn')}")
        routed = {k: v for k, v in headers.items() if k.startswith("x-agencyhub-")}
        log(f"smoke request OK: {routed}")

        bench = Bench(tree, sim.pid, api_key)
        only = set(args.only.split(",")) if args.only else None
        run_all(bench, args.scale, inflight_stream=not args.no_inflight_stream, only=only)
        procs.check_alive("gunicorn")

        add_overheads(bench.results)
        checks = evaluate(bench.results)
        report = {
            **report_header(started_at, g_args, env),
            "deployed_shape": deployed,
            "scale": args.scale,
            "smoke_headers": routed,
            "scenarios": bench.results,
            "targets": checks,
        }
        out.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(table(bench.results))
        print()
        for name, c in checks.items():
            mark = "   " if c["met"] is None else ("OK " if c["met"] else "MISS")
            print(f"  {mark} {name}: {c['value']} (target {c['target']})")
        print(f"\nwritten {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        log("stopping the processes started by the benchmark")
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
