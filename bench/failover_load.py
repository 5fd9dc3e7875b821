#!/usr/bin/env python
"""AgencyHub failover under load: the primary provider fails (529), then times out, then recovers.

    make bench-failover                       # or: .venv/bin/python bench/failover_load.py
    .venv/bin/python bench/failover_load.py --scale 0.5            # shorter phases, noisier
    .venv/bin/python bench/failover_load.py --rate 20 --concurrency 10   # heavier load (per tenant)

What it does (everything on loopback, every process it starts is stopped in a `finally`):

1. (Re)creates the PostgreSQL database `agencyhub_bench_failover`, flushes Redis db 11, seeds what
   `chat_overhead.py` seeds (catalogue, tenant + API key, the three providers pointed at the simulator,
   agency credentials, a tenant policy) and points the policy's default target at a failover chain:
   anthropic claude-haiku-4-5 -> openai gpt-4o-mini -> openrouter anthropic/claude-haiku-4.5.
   A second, control tenant gets anthropic claude-sonnet-4-5 -> ... : the same adapter and credential,
   another model (so a breaker of its own); the faults never touch it.
2. Starts the provider simulator (port 9111) and gunicorn with the production command (port 8110),
   with PROVIDER_TIMEOUT_SECONDS=2 so that a timing-out provider costs 2 s, not 60.
3. Warms up (each provider of the chain answers in turn), measures the simulator straight (Anthropic and
   OpenAI endpoints), then drives `POST /v1/chat/completions` (20 % streamed) for both tenants at once,
   each at a steady rate, without a pause through these phases, switching the simulator's fault
   injection (`/_control/faults`, on the primary model only) at each boundary:
     baseline   no fault: the healthy path's latency, measured in the same run
     overloaded the primary answers 100 % 529 overloaded
     timeout    the primary never answers (the breaker is reset first, so timeouts must open it themselves)
     recovery   no fault: the breaker goes half-open, its probe succeeds, it closes, the primary answers again
   A thread polls the primary's breaker hash in Redis every 50 ms; each request is classified by the
   breaker's state when it was sent.
4. Prints a table (per phase and breaker state; the failover tenant next to the control tenant's requests
   of the same window), writes bench/results/failover.json and exits 1 if a target is missed:
   >= 99.9 % of the requests succeed from the first fault to the end, and with the breaker open the added
   latency p99 (failover tenant's p99 - control tenant's p99, same window) is < 50 ms. The added latency
   against the baseline phase is printed too; on a shared machine it mostly measures how the other
   processes' load changed between phases, hence the simultaneous control.

The shared pieces (process handling, database and Redis set-up, seeding, the raw-socket HTTP reader,
/proc accounting) are imported from chat_overhead.py; its module-level ports / database / Redis URL
are re-pointed at this benchmark's own before use.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import chat_overhead as co  # noqa: E402

HOST = co.HOST
GATEWAY_PORT = 8110
SIMULATOR_PORT = 9111
DB_NAME = "agencyhub_bench_failover"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/11"
STATE_PREFIX = "ah:"  # SHARED_STATE_PREFIX's default
PROVIDER_TIMEOUT_SECONDS = 2
CHAIN = [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini"), ("openrouter", "anthropic/claude-haiku-4.5")]
# The control tenant: same provider, adapter and credential for its primary, another model (a breaker of its own),
# never faulted. Its requests run at the same time as the failover tenant's and see the same machine.
CONTROL_SLUG = "bench-control"
CONTROL_CHAIN = [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1"), ("openrouter", "anthropic/claude-sonnet-4.5")]
FAULT_PHASES = ("overloaded", "timeout")
SUCCESS_TARGET_PCT = 99.9
ADDED_P99_TARGET_MS = 50.0
RESULT = co.RESULTS / "failover.json"


def log(msg: str) -> None:
    print(f"[failover {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def use_own_resources() -> None:
    """chat_overhead's helpers read these module globals at call time: point them at this benchmark's."""
    co.GATEWAY_PORT, co.SIMULATOR_PORT = GATEWAY_PORT, SIMULATOR_PORT
    co.DB_NAME, co.DATABASE_URL, co.REDIS_URL = DB_NAME, DATABASE_URL, REDIS_URL
    co.log = log


CHAIN_SNIPPET = """
import json
from providers.models import Credential, LLMModel
from routing.models import RoutingPolicy
from routing.services import target_ensure
from tenants.models import Tenant

chain = {chain!r}
target = target_ensure(name={name!r}, chain=chain)
assert target.fallbacks.count() == len(chain) - 1, "a model of the chain is missing from the catalogue"
RoutingPolicy.objects.update_or_create(tenant=Tenant.objects.get(slug={slug!r}), defaults={{"name": {name!r}, "default_target": target}})
out = []
for kind, model_id in chain:
    model = LLMModel.objects.get(provider__kind=kind, model_id=model_id)
    credential = Credential.objects.get(provider__kind=kind, tenant__isnull=True)
    out.append({{"kind": kind, "model_id": model_id, "model_pk": model.pk, "credential_pk": credential.pk}})
print(json.dumps({{"target": target.pk, "chain": out}}))
"""


def seed_chain(env: dict[str, str], slug: str, name: str, chain: list[tuple[str, str]]) -> list[dict]:
    """Point the tenant's policy at a failover chain; returns the chain's model and credential ids."""
    out = co.manage(env, "shell", "-c", CHAIN_SNIPPET.format(chain=chain, slug=slug, name=name))
    return json.loads(out.strip().splitlines()[-1])["chain"]


def seed_control_tenant(env: dict[str, str]) -> tuple[str, list[dict]]:
    tenant = json.loads(co.manage(env, "create_tenant", CONTROL_SLUG, "--name", "Bench control").strip().splitlines()[-1])
    return tenant["api_key"], seed_chain(env, CONTROL_SLUG, "Bench control chain", CONTROL_CHAIN)


# --------------------------------------------------------------------------------------------------
# the primary's breaker, watched in Redis


class BreakerWatch(threading.Thread):
    """Polls one breaker hash (`cb:{credential}:{model}`) and keeps its state changes (monotonic time, state)."""

    def __init__(self, credential_pk: int, model_pk: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.key = f"{STATE_PREFIX}cb:{credential_pk}:{model_pk}"
        self.interval = interval
        self.stop_event = threading.Event()
        self.times: list[float] = []
        self.states: list[str] = []
        self.polls = 0
        self.poll_errors = 0

    def run(self) -> None:
        import redis

        from providers.state import breaker_view  # a pure function: the breaker's own reading of its hash

        client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=2)
        try:
            while not self.stop_event.is_set():
                try:
                    state = breaker_view(client.hgetall(self.key), time.time()).state
                    self.polls += 1
                except redis.RedisError:
                    self.poll_errors += 1
                    state = None
                if state and (not self.states or self.states[-1] != state):
                    self.times.append(time.monotonic())
                    self.states.append(state)
                    if len(self.states) > 1:
                        log(f"primary breaker: {self.states[-2]} -> {state}")
                self.stop_event.wait(self.interval)
        finally:
            client.close()

    def reset(self) -> None:
        """What `breaker().reset()` does: forget the circuit (closed, no counters)."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.delete(self.key)
        finally:
            client.close()

    def state_at(self, t: float) -> str:
        i = bisect.bisect_right(self.times, t) - 1
        return self.states[i] if i >= 0 else "closed"

    def finish(self) -> list[tuple[float, str]]:
        self.stop_event.set()
        self.join(timeout=5)
        return list(zip(self.times, self.states, strict=True))


# --------------------------------------------------------------------------------------------------
# load: a steady rate (open loop, at most `concurrency` in flight), keep-alive connections, raw sockets

MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]+)"')


@dataclass
class Sample:
    t: float  # when it was sent (time.monotonic())
    latency_ms: float  # send to last byte
    mode: str  # plain | stream
    ok: bool
    model: str = ""
    error: str = ""


@dataclass
class Endpoint:
    name: str
    port: int
    plain: bytes
    stream: bytes | None
    kind: str  # gateway | direct

    def check(self, status: int, body: bytes, mode: str) -> tuple[bool, str, str]:
        """(ok, answering model, error kind)"""
        models = MODEL_RE.findall(body)
        model = models[-1].decode() if models else ""  # a stream's last chunk names the model that finished it
        if status != 200:
            return False, model, f"http_{status}"
        if self.kind == "gateway":
            if mode == "stream" and (b"data: [DONE]" not in body or b'"error":' in body):
                return False, model, "stream_error"
            if mode == "plain" and b'"chat.completion"' not in body:
                return False, model, "bad_body"
        return (True, model, "") if model else (False, model, "no_model")


def raw_request(port: int, path: str, body: dict, key: str) -> bytes:
    return co.Target("", port, path, body, key, bool(body.get("stream"))).request_bytes()


def endpoints(api_key: str, control_key: str) -> dict[str, Endpoint]:
    msgs = [{"role": "user", "content": "hello"}]
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    gw = "/v1/chat/completions"
    direct_key = "sk-bench-direct"
    return {
        "gateway": Endpoint("gateway", GATEWAY_PORT, raw_request(GATEWAY_PORT, gw, {"model": "auto", "messages": msgs}, api_key),
                            raw_request(GATEWAY_PORT, gw, {"model": "auto", "messages": msgs, **stream}, api_key), "gateway"),
        "control": Endpoint("control", GATEWAY_PORT, raw_request(GATEWAY_PORT, gw, {"model": "auto", "messages": msgs}, control_key),
                            raw_request(GATEWAY_PORT, gw, {"model": "auto", "messages": msgs, **stream}, control_key), "gateway"),
        "direct-anthropic": Endpoint("direct-anthropic", SIMULATOR_PORT, raw_request(
            SIMULATOR_PORT, "/anthropic/v1/messages", {"model": CHAIN[0][1], "max_tokens": 256, "messages": msgs}, direct_key),
            None, "direct"),
        "direct-openai": Endpoint("direct-openai", SIMULATOR_PORT, raw_request(
            SIMULATOR_PORT, "/openai/v1/chat/completions", {"model": CHAIN[1][1], "messages": msgs}, direct_key), None, "direct"),
    }


class Load:
    def __init__(self, endpoint: Endpoint, rate: float, concurrency: int, stream_share: float, timeout: float):
        self.endpoint = endpoint
        self.rate = rate
        self.concurrency = concurrency
        self.stream_share = stream_share if endpoint.stream else 0.0
        self.timeout = timeout
        self.samples: list[Sample] = []
        self.next_slot = 0.0
        self.counter = 0
        self.late = 0  # sends that could not leave on schedule (every worker busy)

    def _pick(self) -> tuple[str, bytes]:
        i, self.counter = self.counter, self.counter + 1
        if self.stream_share and int((i + 1) * self.stream_share) > int(i * self.stream_share):
            return "stream", self.endpoint.stream
        return "plain", self.endpoint.plain

    async def _worker(self, stop_at: float) -> None:
        conn = None
        try:
            while True:
                now = time.monotonic()
                if self.rate:
                    # The next slot of the schedule, but never in the past: after a stall the rate resumes, it
                    # does not burst to catch up.
                    if self.next_slot < now - 0.5 / self.rate:
                        self.late += 1
                    slot = max(self.next_slot, now)
                    self.next_slot = slot + 1 / self.rate
                    if slot >= stop_at:
                        return
                    if slot > now:
                        await asyncio.sleep(slot - now)
                elif now >= stop_at:
                    return
                mode, data = self._pick()
                sent = time.monotonic()
                started = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(co._open(self.endpoint.port), self.timeout)
                    reader, writer = conn
                    writer.write(data)
                    status, body, keep_alive = await asyncio.wait_for(co.read_response(reader), self.timeout)
                    latency = (time.perf_counter() - started) * 1000
                    ok, model, error = self.endpoint.check(status, body, mode)
                    self.samples.append(Sample(sent, latency, mode, ok, model, error))
                    if not keep_alive:
                        writer.close()
                        conn = None
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, co.HTTPError,
                        ValueError) as exc:
                    self.samples.append(Sample(sent, (time.perf_counter() - started) * 1000, mode, False, "", type(exc).__name__))
                    if conn is not None:
                        conn[1].close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    def workers(self, stop_at: float) -> list:
        self.next_slot = time.monotonic()
        return [self._worker(stop_at) for _ in range(self.concurrency)]

    async def run(self, seconds: float) -> None:
        await asyncio.gather(*self.workers(time.monotonic() + seconds))


async def run_together(loads: list[Load], seconds: float, *others) -> None:
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*[w for load in loads for w in load.workers(stop_at)], *others)


# --------------------------------------------------------------------------------------------------
# faults and phases


def set_fault(rule: dict | None) -> None:
    co.http_call(SIMULATOR_PORT, "DELETE", "/_control/faults")
    if rule:
        status, _, body = co.http_call(SIMULATOR_PORT, "POST", "/_control/faults", rule)
        if status not in (200, 201):
            raise RuntimeError(f"simulator refused the fault {rule}: {status} {body[:200]!r}")


@dataclass
class Phase:
    name: str
    seconds: float
    fault: dict | None
    reset_breaker: bool = False
    start: float = 0.0  # monotonic, set when it begins
    end: float = 0.0
    server_cpu_s: float = 0.0
    cores: dict = field(default_factory=dict)  # CPU cores in use on average: machine, this stack, everything else
    notes: list[str] = field(default_factory=list)


def machine_busy_seconds() -> float:
    """CPU time spent not idle by the whole machine (every process, every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / co.CLK_TCK


class CpuMeter:
    """Splits the machine's busy CPU into this benchmark's stack (gunicorn, simulator, load generator) and the rest
    (PostgreSQL and Redis, which serve it, and whatever else runs on the machine)."""

    def __init__(self, tree: co.Tree, sim_pid: int):
        self.tree, self.sim_pid = tree, sim_pid

    def read(self) -> tuple[float, float, float, float]:
        own = os.times()
        gunicorn = self.tree.cpu()
        ours = gunicorn + co.cpu_seconds([self.sim_pid]) + own.user + own.system
        return time.monotonic(), machine_busy_seconds(), ours, gunicorn

    @staticmethod
    def cores(a: tuple, b: tuple) -> dict:
        wall = max(1e-6, b[0] - a[0])
        machine, ours = (b[1] - a[1]) / wall, (b[2] - a[2]) / wall
        return {"machine": round(machine, 2), "gunicorn+simulator+loadgen": round(ours, 2),
                "others (PostgreSQL, Redis, rest of the machine)": round(max(0.0, machine - ours), 2)}


def phases(scale: float, keep_breaker: bool) -> list[Phase]:
    s = lambda x: max(10.0, x * scale)  # noqa: E731
    return [
        Phase("baseline", s(40), None),
        Phase("overloaded", s(60), {"provider": "anthropic", "model": CHAIN[0][1], "fault": "overloaded", "rate": 1.0}),
        Phase("timeout", s(60), {"provider": "anthropic", "model": CHAIN[0][1], "fault": "timeout", "rate": 1.0,
                                 "latency_ms": PROVIDER_TIMEOUT_SECONDS * 1000 * 15}, reset_breaker=not keep_breaker),
        # BREAKER_OPEN_SECONDS (30 s) until the half-open probe, then some time closed again
        Phase("recovery", max(s(45), 40.0), None),
    ]


async def run_phases(loads: list[Load], plan: list[Phase], watch: BreakerWatch, meter: CpuMeter) -> None:
    async def controller() -> None:
        for phase in plan:
            before = await asyncio.to_thread(meter.read)
            if phase.reset_breaker:
                await asyncio.to_thread(watch.reset)
                phase.notes.append("breaker reset at the start")
            await asyncio.to_thread(set_fault, phase.fault)
            phase.start = time.monotonic()
            log(f"phase {phase.name} ({phase.seconds:.0f} s): fault {json.dumps(phase.fault) if phase.fault else 'none'}")
            await asyncio.sleep(phase.seconds)
            phase.end = time.monotonic()
            after = await asyncio.to_thread(meter.read)
            phase.server_cpu_s = after[3] - before[3]
            phase.cores = meter.cores(before, after)
            log(f"phase {phase.name} done; CPU cores in use: {phase.cores}")
        await asyncio.to_thread(set_fault, None)

    await run_together(loads, sum(p.seconds for p in plan) + 0.5, controller())


# --------------------------------------------------------------------------------------------------
# figures


def summarize(label: str, samples: list[Sample], model_provider: dict[str, str], **extra) -> dict:
    """Count, success rate, who answered and latency percentiles (of the successful requests) of these samples."""
    lat = sorted(s.latency_ms for s in samples if s.ok)
    n = len(samples)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.error] = errors.get(s.error, 0) + 1
    answered: dict[str, int] = {}
    for s in samples:
        if s.ok:
            p = model_provider.get(s.model, s.model)
            answered[p] = answered.get(p, 0) + 1
    pct = lambda q: round(co.percentile(lat, q), 1) if lat else None  # noqa: E731
    span = (max(s.t for s in samples) - min(s.t for s in samples)) if n > 1 else 0
    return {
        "window": label, "requests": n, "ok": len(lat), "failed": n - len(lat),
        "success_pct": round(100.0 * len(lat) / n, 3) if n else None,
        "streamed": sum(1 for s in samples if s.mode == "stream"),
        "answered_by": dict(sorted(answered.items(), key=lambda kv: -kv[1])), "errors": errors,
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 1) if lat else None,
        "req_per_s": round(n / span, 1) if span else None, **extra,
    }


def added(row: dict, base: dict, suffix: str) -> None:
    for q in ("p50", "p95", "p99"):
        if row.get(f"{q}_ms") is not None and base.get(f"{q}_ms") is not None:
            row[f"added_{q}_ms{suffix}"] = round(row[f"{q}_ms"] - base[f"{q}_ms"], 1)


def windows(plan: list[Phase]) -> list[tuple[str, tuple[str, ...], str]]:
    """(label, phases, breaker filter) — the breaker filter applies to the primary's state when a request was sent."""
    out = [("baseline", ("baseline",), "any")]
    for p in plan[1:]:
        out.append((f"{p.name}: all", (p.name,), "any"))
        if p.name in FAULT_PHASES:
            out += [(f"{p.name}: before open", (p.name,), "closed"), (f"{p.name}: breaker open", (p.name,), "open")]
        else:
            out += [(f"{p.name}: breaker still open", (p.name,), "open"), (f"{p.name}: closed again", (p.name,), "closed")]
    out += [
        (OPEN_WINDOW, FAULT_PHASES, "open"),
        (AFTER_FAULT_WINDOW, tuple(p.name for p in plan[1:]), "any"),
        ("whole run", tuple(p.name for p in plan), "any"),
    ]
    return out


OPEN_WINDOW = "under fault, breaker open"
AFTER_FAULT_WINDOW = "from the first fault to the end"


def analyse(samples: list[Sample], control: list[Sample], plan: list[Phase], watch: BreakerWatch,
            model_provider: dict[str, str]) -> dict:
    """Figures of the failover tenant's requests per window, next to the control tenant's requests of the same window.

    A request belongs to the phase in which it was sent; a baseline request must also have finished before the first
    fault (those still in flight at the switch failed over). Added latency is given twice: against the baseline phase
    (the healthy path measured before, as the issue words it) and against the control requests sent at the same
    time (the same machine load, so what other processes do to the latency cancels out)."""
    def split(ss: list[Sample]) -> dict[str, list[Sample]]:
        out = {}
        for p in plan:
            out[p.name] = [s for s in ss if p.start <= s.t < p.end and (p is not plan[0] or s.t + s.latency_ms / 1000 < p.end)]
        return out

    mine, theirs = split(samples), split(control)
    state = {id(s): watch.state_at(s.t) for s in samples + control}

    def pick(by_phase: dict[str, list[Sample]], phase_names: tuple[str, ...], breaker: str) -> list[Sample]:
        ss = [s for name in phase_names for s in by_phase[name]]
        if breaker == "any":
            return ss
        return [s for s in ss if (state[id(s)] == "closed") == (breaker == "closed")]

    rows, base = [], None
    for label, phase_names, breaker in windows(plan):
        row = summarize(label, pick(mine, phase_names, breaker), model_provider, phases="+".join(phase_names), breaker=breaker)
        ctrl = summarize(label, pick(theirs, phase_names, breaker), model_provider)
        row["control"] = {k: ctrl[k] for k in ("requests", "success_pct", "answered_by", "p50_ms", "p95_ms", "p99_ms", "max_ms")}
        added(row, ctrl, "_vs_control")
        if base is None:
            base = row
        else:
            added(row, base, "_vs_baseline")
        if len(phase_names) == 1 and breaker == "any":
            p = next(p for p in plan if p.name == phase_names[0])
            n = len(mine[p.name]) + len(theirs[p.name])
            row["server_cpu_ms_per_req"] = round(p.server_cpu_s * 1000 / n, 1) if n else None
        rows.append(row)
    opened_at = {}
    for p in plan[1:]:
        first_open = next((t for t, st in zip(watch.times, watch.states, strict=True) if p.start <= t < p.end and st != "closed"), None)
        opened_at[p.name] = round(first_open - p.start, 2) if first_open is not None else None
    by_label = {r["window"]: r for r in rows}
    return {"rows": rows, "by_label": by_label, "opened_after_s": opened_at}


def evaluate(analysis: dict, plan: list[Phase], watch: BreakerWatch) -> dict:
    checks = {}

    def check(name, value, target, met):
        checks[name] = {"value": value, "target": target, "met": None if met is None else bool(met)}

    rows = analysis["by_label"]
    ok_pct = lambda r: r["success_pct"] is not None and r["success_pct"] >= SUCCESS_TARGET_PCT  # noqa: E731
    after = rows[AFTER_FAULT_WINDOW]
    check("success rate from the first fault to the end (%)", after["success_pct"], f">= {SUCCESS_TARGET_PCT}", ok_pct(after))
    for name in FAULT_PHASES:
        check(f"success rate, {name} phase (%)", rows[f"{name}: all"]["success_pct"], f">= {SUCCESS_TARGET_PCT}", ok_pct(rows[f"{name}: all"]))
    below = lambda v: v is not None and v < ADDED_P99_TARGET_MS  # noqa: E731
    op = rows[OPEN_WINDOW]
    check(f"added p99 with the breaker open, both fault phases, vs the control at the same time (ms) [{op['requests']} requests]",
          op.get("added_p99_ms_vs_control"), f"< {ADDED_P99_TARGET_MS:g}", below(op.get("added_p99_ms_vs_control")) and op["requests"] >= 100)
    for name in FAULT_PHASES:
        r = rows[f"{name}: breaker open"]
        check(f"added p99 with the breaker open, {name} phase, vs the control (ms)", r.get("added_p99_ms_vs_control"),
              f"< {ADDED_P99_TARGET_MS:g}", below(r.get("added_p99_ms_vs_control")))
    check("added p99 with the breaker open, both fault phases, vs the baseline phase (ms)", op.get("added_p99_ms_vs_baseline"),
          f"< {ADDED_P99_TARGET_MS:g} (informative: other processes' load differs between phases)", None)
    base = rows["baseline"]
    check("A/A: baseline p99 minus the control's p99 in the same phase (ms)", base.get("added_p99_ms_vs_control"),
          "informative: the noise floor of the comparison", None)
    opened = analysis["opened_after_s"]
    for name in FAULT_PHASES:
        check(f"breaker opened in the {name} phase (s after its start)", opened.get(name), "opens", opened.get(name) is not None)
    rec = next(p for p in plan if p.name == "recovery")
    closed = [t for t, st in zip(watch.times, watch.states, strict=True) if rec.start <= t and st == "closed"]
    check("breaker closed again in the recovery phase (s after its start)",
          round(closed[0] - rec.start, 2) if closed else None, "informative", None)
    ctrl = after["control"]
    check("control tenant: success rate / answered by, from the first fault to the end",
          [ctrl["success_pct"], ctrl["answered_by"]], "informative (never faulted)", None)
    return checks


def primary_calls(plan: list[Phase], primary: dict, wall_minus_monotonic: float) -> dict[str, dict[str, int]]:
    """Calls the gateway actually made to the primary per phase, by outcome, from its attempt log (a skipped candidate
    is not logged): with the breaker open only the half-open probes should reach it."""
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT extract(epoch FROM created_at), outcome FROM providers_attemptlog "
                            "WHERE model_id = %s AND credential_id = %s", (primary["model_pk"], primary["credential_pk"])).fetchall()
    out: dict[str, dict[str, int]] = {p.name: {} for p in plan}
    for epoch, outcome in rows:
        t = float(epoch) - wall_minus_monotonic
        phase = next((p.name for p in plan if p.start <= t < p.end), None)
        if phase:
            out[phase][outcome] = out[phase].get(outcome, 0) + 1
    return out


COLS = [
    ("window", "window", "<34"), ("reqs", "requests", ">5"), ("ok %", "success_pct", ">7"), ("fail", "failed", ">4"),
    ("p50", "p50_ms", ">7"), ("p95", "p95_ms", ">7"), ("p99", "p99_ms", ">7"), ("max", "max_ms", ">7"),
    ("ctl p50", ("control", "p50_ms"), ">7"), ("ctl p99", ("control", "p99_ms"), ">7"),
    ("+p50 c", "added_p50_ms_vs_control", ">7"), ("+p95 c", "added_p95_ms_vs_control", ">7"),
    ("+p99 c", "added_p99_ms_vs_control", ">7"), ("+p99 b", "added_p99_ms_vs_baseline", ">7"),
    ("cpu ms/r", "server_cpu_ms_per_req", ">8"),
]


def table(rows: list[dict]) -> str:
    fmt = lambda v, spec: format("" if v is None else v, spec)  # noqa: E731
    get = lambda r, k: r.get(k[0], {}).get(k[1]) if isinstance(k, tuple) else r.get(k)  # noqa: E731
    lines = ["  ".join(fmt(h, s) for h, _, s in COLS) + "  answered by"]
    for r in rows:
        who = ", ".join(f"{k} {v}" for k, v in r["answered_by"].items())
        lines.append("  ".join(fmt(get(r, k), s) for _, k, s in COLS) + f"  {who}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=12.0,
                        help="requests per second sent by each tenant, the failing one and the control (0: closed loop); default 12")
    parser.add_argument("--concurrency", type=int, default=16, help="at most this many requests in flight per tenant; default 16")
    parser.add_argument("--stream-share", type=float, default=0.2, help="share of streamed requests; default 0.2")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the phase durations")
    parser.add_argument("--keep-breaker", action="store_true",
                        help="do not reset the breaker between the 529 and the timeout phase (then only probes meet the timeouts)")
    parser.add_argument("--workers", type=int, default=co.DEPLOYED_WORKERS)
    parser.add_argument("--threads", type=int, default=co.DEPLOYED_THREADS)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)

    use_own_resources()
    co.RESULTS.mkdir(parents=True, exist_ok=True)
    for port in (GATEWAY_PORT, SIMULATOR_PORT):
        if not co.port_free(port):
            print(f"port {HOST}:{port} is in use: stop what listens there first", file=sys.stderr)
            return 2

    from cryptography.fernet import Fernet

    env = co.server_env(secret_key=secrets.token_urlsafe(50), fernet_key=Fernet.generate_key().decode())
    env[co.PROVIDER_KEY_ENV] = "sk-bench-" + secrets.token_hex(8)
    env["PROVIDER_TIMEOUT_SECONDS"] = str(PROVIDER_TIMEOUT_SECONDS)

    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    logdir = Path(tempfile.mkdtemp(prefix="agencyhub-failover-"))
    procs = co.Processes(logdir)
    watch: BreakerWatch | None = None
    g_args = co.gunicorn_args(args.workers, args.threads)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        log(f"database {DB_NAME} (fresh), redis db 11 (flushed); logs in {logdir}")
        co.recreate_database()
        co.flush_redis()
        api_key = co.seed(env)
        chain = seed_chain(env, co.TENANT_SLUG, "Bench failover chain", CHAIN)
        control_key, control_chain = seed_control_tenant(env)
        model_provider = {c["model_id"]: c["kind"] for c in chain + control_chain}
        for slug, ch in ((co.TENANT_SLUG, chain), (CONTROL_SLUG, control_chain)):
            log(f"{slug}: default target " + " -> ".join(f"{c['kind']} {c['model_id']}" for c in ch))

        log(f"simulator on :{SIMULATOR_PORT}")
        sim = procs.start("simulator", [co.PYTHON, "manage.py", "provider_simulator", "--host", HOST, "--port", str(SIMULATOR_PORT)], env)
        co.wait_until_answers(procs, "simulator", SIMULATOR_PORT, "/_control/health")
        set_fault(None)
        log(f"gunicorn {' '.join(g_args)} (PROVIDER_TIMEOUT_SECONDS={PROVIDER_TIMEOUT_SECONDS})")
        gunicorn = procs.start("gunicorn", [co.GUNICORN, *g_args], env)
        co.wait_until_answers(procs, "gunicorn", GATEWAY_PORT, "/healthz")
        tree = co.Tree(gunicorn.pid)
        deadline = time.monotonic() + 30
        while len(tree.workers()) < args.workers and time.monotonic() < deadline:
            time.sleep(0.1)

        status, headers, body = co.http_call(GATEWAY_PORT, "POST", "/v1/chat/completions",
                                             {"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
                                             {"Authorization": f"Bearer {api_key}"}, timeout=30)
        routed = {k: v for k, v in headers.items() if k.startswith("x-agencyhub-")}
        if status != 200 or routed.get("x-agencyhub-provider") != CHAIN[0][0]:
            raise RuntimeError(f"smoke request: HTTP {status} {routed} {body[:500]!r}\n{procs.tail('gunicorn')}")
        log(f"smoke request OK: {routed}")

        eps = endpoints(api_key, control_key)
        conc, rate, share = args.concurrency, args.rate, args.stream_share

        loads = lambda timeout: [Load(eps[n], rate, conc, share, timeout) for n in ("gateway", "control")]  # noqa: E731
        log("warm-up, both tenants, with each provider of the chain answering in turn (not recorded)")
        primary_fault = {"provider": "anthropic", "model": CHAIN[0][1], "fault": "overloaded"}
        for answering, seconds in (("openrouter", 5), ("openai", 5), ("anthropic", 10)):  # every SDK client warms up
            set_fault(primary_fault if answering != "anthropic" else None)
            if answering == "openrouter":
                co.http_call(SIMULATOR_PORT, "POST", "/_control/faults", {"provider": "openai", "model": CHAIN[1][1], "fault": "overloaded"})
            asyncio.run(run_together(loads(30), seconds))
            set_fault(None)
            for c in chain + control_chain:
                BreakerWatch(c["credential_pk"], c["model_pk"]).reset()

        direct_rows = []
        for name in ("direct-anthropic", "direct-openai"):
            load = Load(eps[name], rate, conc, 0.0, 30)
            asyncio.run(load.run(10))
            direct_rows.append(summarize(name, load.samples, model_provider, phases="simulator straight", breaker=""))
            log(f"{name}: {len(load.samples)} requests, p50 {direct_rows[-1]['p50_ms']} p99 {direct_rows[-1]['p99_ms']} ms")

        plan = phases(args.scale, args.keep_breaker)
        watch = BreakerWatch(chain[0]["credential_pk"], chain[0]["model_pk"])
        watch.start()
        wall_minus_monotonic = time.time() - time.monotonic()
        failing, control = loads(60)
        asyncio.run(run_phases([failing, control], plan, watch, CpuMeter(tree, sim.pid)))
        transitions = watch.finish()
        procs.check_alive("gunicorn")
        log(f"{len(failing.samples)} + {len(control.samples)} (control) requests sent; "
            f"{failing.late + control.late} could not leave on schedule (every client busy)")

        analysis = analyse(failing.samples, control.samples, plan, watch, model_provider)
        checks = evaluate(analysis, plan, watch)
        calls = primary_calls(plan, chain[0], wall_minus_monotonic)
        rows = direct_rows + analysis["rows"]
        t_ref = plan[0].start
        report = {
            **co.report_header(started_at, g_args, env, extra_env=("PROVIDER_TIMEOUT_SECONDS",)),
            "load": {"per_tenant_rate_per_s": rate, "per_tenant_max_in_flight": conc, "stream_share": share,
                     "late_sends": failing.late + control.late, "requests": len(failing.samples), "control_requests": len(control.samples)},
            "chain": chain,
            "control_chain": control_chain,
            "smoke_headers": routed,
            "phases": [{"name": p.name, "seconds": p.seconds, "fault": p.fault, "notes": p.notes, "cpu_cores": p.cores,
                        "starts_at_s": round(p.start - t_ref, 2)} for p in plan],
            "breaker_transitions": [{"at_s": round(t - t_ref, 2), "state": st} for t, st in transitions],
            "breaker_polls": watch.polls, "breaker_poll_errors": watch.poll_errors,
            "opened_after_s": analysis["opened_after_s"],
            "primary_calls_by_phase": calls,
            "windows": rows,
            "targets": checks,
            "timeline_columns": ["tenant", "sent_at_s", "latency_ms", "mode", "ok", "model", "error", "primary_breaker"],
        }
        timeline = sorted(([tenant, round(x.t - t_ref, 3), round(x.latency_ms, 1), x.mode, x.ok, x.model, x.error, watch.state_at(x.t)]
                           for tenant, ss in (("failover", failing.samples), ("control", control.samples)) for x in ss),
                          key=lambda row: row[1])
        text = json.dumps(report, indent=1)
        args.out.write_text(text[:-2] + ',\n "timeline": [\n' + ",\n".join("  " + json.dumps(r) for r in timeline) + "\n ]\n}\n")
        print()
        print(f"load per tenant: {rate:g} req/s, at most {conc} in flight, {share:.0%} streamed; provider timeout "
              f"{PROVIDER_TIMEOUT_SECONDS} s. Latencies in ms, of the failover tenant; ctl = the control tenant in the same "
              "window;\n+pXX c = pXX minus the control's pXX; +p99 b = p99 minus the baseline phase's p99")
        print(table(rows))
        print()
        print("primary breaker: " + ", ".join(f"{st} at {t - t_ref:.1f} s" for t, st in transitions))
        print("phases start at: " + ", ".join(f"{p.name} {p.start - t_ref:.1f} s" for p in plan))
        print("calls that reached the primary (attempt log): " + "; ".join(
            f"{name} " + (", ".join(f"{k} {v}" for k, v in c.items()) or "none") for name, c in calls.items()))
        print(f"CPU cores in use on average (of {os.cpu_count()}): machine / this stack / others (PostgreSQL, Redis, rest): "
              + "; ".join(f"{p.name} {p.cores.get('machine')} / {p.cores.get('gunicorn+simulator+loadgen')} / "
                          f"{p.cores.get('others (PostgreSQL, Redis, rest of the machine)')}" for p in plan))
        print()
        for name, c in checks.items():
            mark = "    " if c["met"] is None else ("OK  " if c["met"] else "MISS")
            print(f"  {mark} {name}: {c['value']} (target {c['target']})")
        print(f"\nwritten {args.out.relative_to(co.ROOT) if args.out.is_relative_to(co.ROOT) else args.out}")
        return 0 if all(c["met"] is not False for c in checks.values()) else 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if watch is not None and watch.is_alive():
            watch.finish()
        try:
            set_fault(None)
        except OSError:
            pass
        log("stopping the processes started by the benchmark")
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
