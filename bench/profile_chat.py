#!/usr/bin/env python
"""Where the server's CPU goes for one `POST /v1/chat/completions`, and how many SQL queries / Redis commands it makes.

    .venv/bin/python bench/profile_chat.py
    .venv/bin/python bench/profile_chat.py -n 500
    .venv/bin/python bench/profile_chat.py --mode stream      # a streamed request instead (results: *_stream.*)
    TRACE_REDIS=1 .venv/bin/python bench/profile_chat.py      # also lists each Redis round trip of one request

Same set-up as chat_overhead.py (fresh `agencyhub_bench` database, simulator on :9101, the same environment),
but the request runs in-process through Django's test client (the whole WSGI handler, middleware, DRF view and
chat engine; not gunicorn's HTTP parsing), so cProfile sees every Python frame. The profiler's clock is
`time.process_time` (CPU, not wall), so time spent waiting on the simulator, PostgreSQL or Redis is not counted.

Writes bench/results/profile_chat.txt (readable report), profile_chat.json (figures) and profile_chat.prof
(pstats dump: `python -m pstats`, or snakeviz if you have it). Don't run it while chat_overhead.py runs
(same database and ports).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chat_overhead as co  # noqa: E402

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}

CATEGORIES = [
    # (label, regex on the frame's file name), first match wins
    ("django ORM / db backend", r"site-packages/django/db/"),
    ("django (handler, middleware, http, utils)", r"site-packages/django/"),
    ("DRF", r"site-packages/rest_framework/"),
    ("drf-spectacular", r"site-packages/drf_spectacular/"),
    ("psycopg / pool", r"site-packages/psycopg"),
    ("redis client", r"site-packages/redis/"),
    ("openai SDK", r"site-packages/openai/"),
    ("anthropic SDK", r"site-packages/anthropic/"),
    ("pydantic", r"site-packages/pydantic"),
    ("httpx2 / httpcore / h11", r"site-packages/(httpx2|httpx|httpcore|h11|anyio|sniffio)"),
    ("cryptography (Fernet)", r"site-packages/cryptography/"),
    ("celery / kombu", r"site-packages/(celery|kombu|vine|billiard)/"),
    ("other site-packages", r"site-packages/"),
    ("AgencyHub: conversations", r"/conversations/"),
    ("AgencyHub: routing", r"/routing/"),
    ("AgencyHub: billing", r"/billing/"),
    ("AgencyHub: providers", r"/providers/"),
    ("AgencyHub: tenants", r"/tenants/"),
    ("AgencyHub: agencyhub", r"/agencyhub/"),
    ("stdlib: json", r"/json/"),
    ("stdlib: logging", r"/logging/"),
    ("stdlib: ssl/socket/selectors", r"/(ssl|socket|selectors)\.py"),
    ("stdlib: threading/queue", r"/(threading|queue)\.py"),
    ("stdlib: other", r"/lib/python3"),
]


def category(filename: str, funcname: str) -> str:
    if filename == "~":
        name = funcname
        if any(s in name for s in ("socket", "recv", "send", "poll", "select", "connect")):
            return "builtins: socket I/O syscalls"
        if "json" in name or "encode" in name or "decode" in name:
            return "builtins: encode/decode"
        if "lock" in name or "acquire" in name or "wait" in name:
            return "builtins: locks"
        return "builtins: other C calls"
    for label, pattern in CATEGORIES:
        if re.search(pattern, filename):
            return label
    return "other"


def redis_commandstats() -> Counter:
    import redis

    client = redis.Redis.from_url(co.REDIS_URL)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="profiled requests (plain)")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--mode", choices=("plain", "stream"), default="plain", help="the request profiled (default plain)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu (default): where the CPU goes; wall: where the latency goes (waits on I/O included)")
    args = parser.parse_args(argv)

    for port in (co.SIMULATOR_PORT,):
        if not co.port_free(port):
            print(f"port {co.HOST}:{port} is in use (is chat_overhead.py running?)", file=sys.stderr)
            return 2
    from cryptography.fernet import Fernet

    env = co.server_env(secret_key=secrets.token_urlsafe(50), fernet_key=Fernet.generate_key().decode())
    env[co.PROVIDER_KEY_ENV] = "sk-bench-" + secrets.token_hex(8)
    procs = co.Processes(Path(tempfile.mkdtemp(prefix="agencyhub-profile-")))
    try:
        co.recreate_database()
        co.flush_redis()
        api_key = co.seed(env)
        procs.start("simulator", [co.PYTHON, "manage.py", "provider_simulator", "--host", co.HOST, "--port", str(co.SIMULATOR_PORT)], env)
        co.wait_until_answers(procs, "simulator", co.SIMULATOR_PORT, "/_control/health")

        os.environ.update(env)
        os.chdir(co.ROOT)
        sys.path.insert(0, str(co.ROOT))
        import django

        django.setup()
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")

        def plain():
            response = client.post("/v1/chat/completions", BODY, content_type="application/json")
            assert response.status_code == 200, response.content[:500]
            return response

        def stream():
            response = client.post("/v1/chat/completions", STREAM_BODY, content_type="application/json")
            assert response.status_code == 200, response.content[:500]
            body = b"".join(response.streaming_content)
            assert b"data: [DONE]" in body, body[-300:]
            return response

        co.log("warm-up: 50 plain + 20 streamed requests in-process")
        for _ in range(50):
            plain()
        for _ in range(20):
            stream()

        report: dict = {"requests_profiled": args.n}
        lines: list[str] = []
        for name, call in (("plain", plain), ("stream", stream)):
            with CaptureQueriesContext(connection) as ctx:
                call()
            queries = [q["sql"] for q in ctx.captured_queries]
            kinds = Counter(q.split()[0].upper() for q in queries)
            report[f"sql_queries_{name}"] = len(queries)
            report[f"sql_kinds_{name}"] = dict(kinds)
            lines.append(f"## SQL queries, one {name} request: {len(queries)}  {dict(kinds)}")
            for i, sql in enumerate(queries, 1):
                lines.append(f"{i:3}. {sql[:260]}")
            lines.append("")

        if os.environ.get("TRACE_REDIS"):
            import traceback
            import redis.client as rc

            calls = []
            original = rc.Redis.execute_command
            original_pipe = rc.Pipeline.execute

            def where():
                frames = [f for f in traceback.extract_stack()[:-2] if "/work/main/" in f.filename and "site-packages" not in f.filename and "bench/" not in f.filename]
                return " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames[-3:][::-1])

            def traced(self, *args, **kwargs):
                calls.append((str(args[0]), where()))
                return original(self, *args, **kwargs)

            def traced_pipe(self, *args, **kwargs):
                calls.append(("PIPELINE[" + ",".join(str(c[0][0]) for c in self.command_stack) + "]", where()))
                return original_pipe(self, *args, **kwargs)

            rc.Redis.execute_command = traced
            rc.Pipeline.execute = traced_pipe
            plain()
            rc.Redis.execute_command = original
            rc.Pipeline.execute = original_pipe
            print(f"## Redis round trips, one plain request: {len(calls)}")
            for name, site in calls:
                print(f"  {name:50} {site}")

        before = redis_commandstats()
        for _ in range(20):
            plain()
        delta = redis_commandstats() - before
        report["redis_commands_per_plain_request"] = {k: round(v / 20, 2) for k, v in sorted(delta.items())}
        lines.append(f"## Redis commands per plain request (INFO commandstats delta over 20 requests; server-wide): "
                     f"{round(sum(delta.values()) / 20, 1)}  {report['redis_commands_per_plain_request']}")
        lines.append("")

        profiled = plain if args.mode == "plain" else stream
        co.log(f"profiling {args.n} {args.mode} requests (cProfile, {args.clock} clock)")
        profiler = cProfile.Profile(time.process_time if args.clock == "cpu" else time.perf_counter)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        profiler.enable()
        for _ in range(args.n):
            profiled()
        profiler.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        # without the profiler, for the overhead-free figure
        wall1, cpu1 = time.perf_counter(), time.process_time()
        for _ in range(args.n):
            profiled()
        report["in_process_cpu_ms_per_request"] = round((time.process_time() - cpu1) * 1000 / args.n, 2)
        report["in_process_wall_ms_per_request"] = round((time.perf_counter() - wall1) * 1000 / args.n, 2)
        report["profiled_cpu_ms_per_request"] = round(cpu * 1000 / args.n, 2)
        report["profiled_wall_ms_per_request"] = round(wall * 1000 / args.n, 2)

        results = co.RESULTS
        results.mkdir(parents=True, exist_ok=True)
        suffix = ("" if args.clock == "cpu" else "_wall") + ("" if args.mode == "plain" else "_stream")
        report["clock"] = args.clock
        profiler.dump_stats(results / f"profile_chat{suffix}.prof")
        stats = pstats.Stats(profiler)
        total = sum(v[2] for v in stats.stats.values())  # tottime
        by_cat: dict[str, float] = defaultdict(float)
        for (filename, _, funcname), (_, _, tottime, _, _) in stats.stats.items():
            by_cat[category(filename, funcname)] += tottime
        report["self_time_by_component_percent"] = {k: round(100 * v / total, 1) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])}

        def top(sort_key: str, predicate=lambda key: True) -> list[dict]:
            rows = []
            for key, (cc, nc, tt, ct, _) in stats.stats.items():
                if predicate(key):
                    rows.append({"function": f"{_short(key[0])}:{key[1]}({key[2]})", "calls_per_request": round(nc / args.n, 2),
                                 "self_pct": round(100 * tt / total, 1), "cumulative_pct": round(100 * ct / total, 1)})
            rows.sort(key=lambda r: -r[sort_key])
            return rows[: args.top]

        ours = lambda key: key[0].startswith(str(co.ROOT) + "/") and "site-packages" not in key[0]  # noqa: E731
        report["top_self"] = top("self_pct")
        report["top_cumulative_project"] = top("cumulative_pct", ours)
        report["top_cumulative_all"] = top("cumulative_pct")

        lines.insert(0, (f"# profile_chat: {args.n} {args.mode} POST /v1/chat/completions in-process (Django test client), simulator at 0 ms, "
                         f"profiler clock: {args.clock}\n"
                         f"in-process CPU {report['in_process_cpu_ms_per_request']} ms/request, wall {report['in_process_wall_ms_per_request']} ms/request "
                         f"(under cProfile: {report['profiled_cpu_ms_per_request']} / {report['profiled_wall_ms_per_request']} ms)\n"))
        lines.append("## Self time by component (% of profiled time)")
        for k, v in report["self_time_by_component_percent"].items():
            lines.append(f"  {v:5.1f}%  {k}")
        for title, key in (("Project functions by cumulative time", "top_cumulative_project"),
                           ("All functions by cumulative time", "top_cumulative_all"),
                           ("All functions by self time", "top_self")):
            lines.append(f"\n## {title}\n  cum%   self%  calls/req  function")
            for r in report[key]:
                lines.append(f"  {r['cumulative_pct']:5.1f}  {r['self_pct']:5.1f}  {r['calls_per_request']:9}  {r['function']}")
        text = "\n".join(lines) + "\n"
        (results / f"profile_chat{suffix}.txt").write_text(text)
        (results / f"profile_chat{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(text)
        return 0
    finally:
        procs.stop()


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if path.startswith(str(co.ROOT) + "/"):
        return path[len(str(co.ROOT)) + 1:]
    return path.rsplit("/lib/", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
