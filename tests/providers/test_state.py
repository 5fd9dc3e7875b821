"""The shared-state interface: both backends (Redis, memory) held to the same behaviour."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from providers.state import (
    FAILURE,
    NEUTRAL,
    SUCCESS,
    BreakerPolicy,
    MemoryState,
    RedisState,
    breaker_view,
    shared_state,
)


def redis_available() -> bool:
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="REDIS_URL is not set or Redis is unreachable")
BACKENDS = [pytest.param("redis", marks=needs_redis), "memory"]


def make_state(kind: str, prefix: str | None = None):
    prefix = prefix or f"test:{uuid.uuid4().hex[:10]}:"
    return RedisState(settings.REDIS_URL, prefix) if kind == "redis" else MemoryState(prefix)


@pytest.fixture(params=BACKENDS)
def state(request):
    s = make_state(request.param)
    s.flush()
    yield s
    s.flush()


def run_threads(work, count: int, *, with_index: bool = False) -> None:
    """Run `work` (given its thread's index if asked) in `count` threads at once and wait for all of them."""
    threads = [threading.Thread(target=work, args=(i,) if with_index else ()) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(predicate, timeout: float = 5.0) -> bool:
    """Bounded polling (no timing assertions: only that the condition becomes true eventually)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ----------------------------------------------------------------------------------------------- plain values

def test_get_set_delete(state):
    assert state.get("a") is None
    assert state.set("a", 1) is True
    assert state.get("a") == "1"
    assert state.set("a", "two") is True and state.get("a") == "two"
    assert state.delete("a", "missing") == 1
    assert state.get("a") is None
    assert state.delete() == 0


def test_set_nx_only_sets_once(state):
    assert state.set("lock", "first", nx=True) is True
    assert state.set("lock", "second", nx=True) is False
    assert state.get("lock") == "first"


def test_ttl_and_expiry(state):
    assert state.ttl("missing") is None
    state.set("persistent", "x")
    assert state.ttl("persistent") is None
    state.set("short", "x", ttl=0.05)
    remaining = state.ttl("short")
    assert remaining is not None and 0 < remaining <= 0.05
    assert wait_until(lambda: state.get("short") is None)
    assert state.set("short", "again", nx=True) is True  # an expired key no longer blocks NX


def test_expire(state):
    assert state.expire("missing", 10) is False
    state.set("k", "v")
    assert state.expire("k", 0.05) is True
    assert wait_until(lambda: state.get("k") is None)


def test_incr_sets_ttl_only_when_creating(state):
    assert state.incr("n") == 1
    assert state.incr("n", 5) == 6
    assert state.incr("n", -2) == 4
    assert state.ttl("n") is None  # created without a ttl
    assert state.incr("c", 3, ttl=100) == 3
    first = state.ttl("c")
    assert first is not None and 0 < first <= 100
    assert state.incr("c", 1, ttl=1000) == 4
    assert state.ttl("c") <= 100  # not extended by later increments
    state.set("plain", 7)
    state.incr("plain", 1, ttl=100)
    assert state.ttl("plain") is None  # an existing key keeps its (lack of) expiry


def test_incr_ttl_expires_the_counter(state):
    state.incr("window", 1, ttl=0.05)
    assert wait_until(lambda: state.get("window") is None)
    assert state.incr("window", 1, ttl=0.05) == 1  # a fresh window


def test_incrbyfloat(state):
    assert state.incrbyfloat("f", 1.5) == pytest.approx(1.5)
    assert state.incrbyfloat("f", 0.25, ttl=100) == pytest.approx(1.75)
    assert state.ttl("f") is None
    assert state.incrbyfloat("g", 2.5, ttl=100) == pytest.approx(2.5)
    assert state.ttl("g") is not None
    assert float(state.get("f")) == pytest.approx(1.75)


def test_mget(state):
    state.set("a", 1)
    state.set("c", 3)
    assert state.mget(["a", "b", "c"]) == ["1", None, "3"]
    assert state.mget([]) == []
    assert state.mget(iter(["c"])) == ["3"]


def test_hashes(state):
    assert state.hget("h", "x") is None
    state.hset("h", {"x": 1, "y": "two"})
    state.hset("h", {"y": 2})
    assert state.hget("h", "x") == "1"
    assert state.read_hashes(["h", "nope"]) == [{"x": "1", "y": "2"}, {}]
    assert state.ttl("h") is None
    state.hset("h", {"z": 3}, ttl=100)
    assert 0 < state.ttl("h") <= 100


def test_keys_by_pattern(state):
    for key in ("cb:1:2", "cb:1:3", "cbx", "budget:1"):
        state.set(key, 1)
    assert sorted(state.keys("cb:*")) == ["cb:1:2", "cb:1:3"]
    assert sorted(state.keys()) == ["budget:1", "cb:1:2", "cb:1:3", "cbx"]


def test_flush_only_touches_its_own_prefix(state):
    kind = "redis" if isinstance(state, RedisState) else "memory"
    other = make_state(kind)  # a sibling namespace
    other.set("keep", 1)
    state.set("drop", 1)
    assert state.flush() >= 1
    assert state.get("drop") is None
    assert other.get("keep") == "1"
    other.flush()


def test_ping(state):
    assert state.ping() is True


# ----------------------------------------------------------------------------------------------- concurrency

def test_concurrent_incr_loses_nothing(state):
    def work():
        for _ in range(200):
            state.incr("hits", 1, ttl=60)

    run_threads(work, 8)
    assert state.get("hits") == "1600"


def test_incr_within_adds_only_inside_the_limit(state):
    state.set("used", 60)
    state.set("older", -5)  # a counter below zero counts as zero
    assert state.incr_within("now", 30, 100, ["used", "older"], ttl=60) == (True, 90)
    assert state.get("now") == "30" and 0 < state.ttl("now") <= 60
    assert state.incr_within("now", 11, 100, ["used", "older"]) == (False, 90)  # refused: the sum without it
    assert state.get("now") == "30"
    assert state.incr_within("now", 10, 100, ["used", "older"]) == (True, 100)  # exactly at the limit
    assert state.incr_within("fresh", 5, 4) == (False, 0) and state.get("fresh") is None


def test_concurrent_incr_within_never_passes_the_limit(state):
    barrier = threading.Barrier(8)
    admitted = []

    def work():
        barrier.wait()
        for _ in range(50):
            ok, _ = state.incr_within("bucket", 7, 1000, ["used"], ttl=60)
            if ok:
                admitted.append(7)

    run_threads(work, 8)
    assert sum(admitted) == 994 and state.get("bucket") == "994"  # 142 of 400 fit; no more


def test_decr_and_incr_takes_back_only_from_a_live_counter(state):
    state.incr("reserved", 50, ttl=60)
    assert state.decr_and_incr("reserved", 50, "used", 42, ttl=3600) == 42
    assert state.get("reserved") == "0" and 3500 < state.ttl("used") <= 3600
    assert state.decr_and_incr("expired", 50, "used", 8, ttl=3600) == 50
    assert state.get("expired") is None  # not created at -50 once its bucket has gone
    assert state.decr_and_incr("", 0, "used", 0) == 50  # nothing reserved: only the usage is added


def test_set_nx_has_exactly_one_winner(state):
    barrier = threading.Barrier(10)
    wins = []

    def work(i):
        barrier.wait()
        if state.set("once", i, ttl=60, nx=True):
            wins.append(i)

    run_threads(work, 10, with_index=True)
    assert len(wins) == 1 and state.get("once") == str(wins[0])


def test_concurrent_breaker_admit_claims_the_probe_once(state):
    policy = BreakerPolicy(failure_threshold=1, open_seconds=10)
    state.breaker_record("cb:1:1", 1000.0, FAILURE, 0, 0, policy)
    barrier = threading.Barrier(10)
    admitted = []

    def work():
        barrier.wait()
        if state.breaker_admit("cb:1:1", 1011.0, 60).allowed:
            admitted.append(1)

    run_threads(work, 10)
    assert len(admitted) == 1


# ----------------------------------------------------------------------------------------------- breaker ops

POLICY = BreakerPolicy(failure_threshold=3, window_seconds=10, min_calls=4, failure_rate=0.5, open_seconds=5,
                       latency_alpha=0.5)


def test_breaker_ops_open_probe_close(state):
    key, t = "cb:7:9", 1_000_000.0
    assert state.breaker_admit(key, t, 30).code == ""
    for i in range(2):
        assert state.breaker_record(key, t + i, FAILURE, 0, 0, POLICY) == ("closed", "closed")
    assert state.breaker_record(key, t + 2, FAILURE, 0, 0, POLICY) == ("closed", "open")
    view = state.breaker_admit(key, t + 3, 30)
    assert (view.state, view.allowed, view.retry_in) == ("open", False, pytest.approx(4.0))
    probe = state.breaker_admit(key, t + 7.5, 30)
    assert (probe.state, probe.code, probe.allowed) == ("half_open", "probe", True)
    other = state.breaker_admit(key, t + 7.6, 30)
    assert (other.code, other.allowed) == ("probe_in_flight", False)
    assert state.breaker_record(key, t + 8, SUCCESS, 120, 0, POLICY) == ("half_open", "closed")
    assert state.breaker_admit(key, t + 8.1, 30).allowed
    assert float(state.hget(key, "lat")) == pytest.approx(120)


def test_breaker_ops_retry_after_cool_down(state):
    key, t = "cb:1:2", 5_000.0
    state.breaker_record(key, t, FAILURE, 0, 7, POLICY)
    view = state.breaker_admit(key, t + 1, 30)
    assert (view.state, view.code, view.retry_in) == ("cooling_down", "cooldown", pytest.approx(6.0))
    assert state.breaker_admit(key, t + 7.01, 30).allowed


def test_breaker_ops_neutral_changes_nothing_but_frees_the_probe(state):
    key, t = "cb:3:4", 10_000.0
    for i in range(10):
        state.breaker_record(key, t + i * 0.1, NEUTRAL, 0, 0, POLICY)
    assert breaker_view(state.read_hashes([key])[0], t + 2).state == "closed"
    for i in range(3):
        state.breaker_record(key, t + 2 + i * 0.1, FAILURE, 0, 0, POLICY)
    assert state.breaker_admit(key, t + 8, 30).code == "probe"
    assert state.breaker_admit(key, t + 8.1, 30).code == "probe_in_flight"
    state.breaker_record(key, t + 8.2, NEUTRAL, 0, 0, POLICY)
    assert state.breaker_admit(key, t + 8.3, 30).code == "probe"


@needs_redis
def test_lua_and_python_breaker_agree_on_random_histories():
    """The Redis (Lua) and memory (Python) implementations of the compound operations are one behaviour."""
    rng = random.Random(1234)
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    backends = [RedisState(settings.REDIS_URL, prefix), MemoryState(prefix)]
    try:
        for history in range(20):
            key = f"cb:{history}:1"
            t = 1_700_000_000.0 + rng.random() * 100
            for _ in range(120):
                t += rng.choice([0.01, 0.3, 1.0, 2.5, 6.0])
                op = rng.random()
                if op < 0.35:
                    results = [b.breaker_admit(key, t, 4.0) for b in backends]
                else:
                    outcome = rng.choice([SUCCESS, SUCCESS, FAILURE, FAILURE, FAILURE, NEUTRAL])
                    retry_after = rng.choice([0, 0, 0, 2.0])
                    latency = rng.randint(1, 900)
                    results = [b.breaker_record(key, t, outcome, latency, retry_after, POLICY) for b in backends]
                assert results[0] == results[1], (history, t, results)
            hashes = [b.read_hashes([key])[0] for b in backends]
            assert breaker_view(hashes[0], t) == breaker_view(hashes[1], t)
            assert hashes[0].get("lat") == hashes[1].get("lat")
    finally:
        for b in backends:
            b.flush()


# ----------------------------------------------------------------------------------------------- the accessor

def test_shared_state_is_redis_when_redis_url_is_set(settings):
    settings.SHARED_STATE_PREFIX = f"test:{uuid.uuid4().hex[:10]}:"
    settings.REDIS_URL = "redis://127.0.0.1:6379/14"
    settings.SHARED_STATE_BACKEND = ""
    first = shared_state()
    assert isinstance(first, RedisState) and first.prefix == settings.SHARED_STATE_PREFIX
    assert shared_state() is first  # a singleton (per configuration)


def test_shared_state_is_memory_without_redis(settings):
    settings.SHARED_STATE_PREFIX = f"test:{uuid.uuid4().hex[:10]}:"
    settings.REDIS_URL = ""
    state = shared_state()
    assert isinstance(state, MemoryState)
    state.set("x", 1)
    assert shared_state().get("x") == "1"


def test_default_prefix():
    assert MemoryState().prefix == "ah:"


@needs_redis
def test_more_threads_than_redis_connections_wait_for_one_instead_of_failing(settings):
    """Hundreds of request threads share REDIS_MAX_CONNECTIONS connections: a thread waits for a free one."""
    settings.REDIS_MAX_CONNECTIONS = 4
    # A URL of its own (a query string redis-py ignores) gets a pool of its own, with the small limit.
    state = RedisState(settings.REDIS_URL + "?client_name=pool-limit-test", prefix=f"t-{uuid.uuid4().hex}:")
    errors: list[Exception] = []

    def work() -> None:
        try:
            for _ in range(20):
                state.incr("counter", 1)
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    run_threads(work, 40)
    assert errors == []
    assert int(state.get("counter")) == 800
    assert state.client.connection_pool.max_connections == 4
