"""The one small interface to shared fast state: circuit breakers, cool-downs, latency, budget counters, rate limits.

Production (and the test suite) use `RedisState`: every web and worker process on every host sees the same
values. `make run` (no REDIS_URL) uses `MemoryState`: the same behaviour, in this process only.

Generic operations: `get`, `set` (with ttl / nx), `delete`, `incr` / `incrbyfloat` (ttl set when the key is
created), `expire`, `ttl`, `mget`, `hget`, `hset`, `read_hashes`, `hincr_many`, `keys` (SCAN), `flush`, `ping`.

There is deliberately no "run any script" escape hatch: a compound operation that must be atomic is a method
here, written twice — in Lua for Redis (one round trip, atomic on the server) and under a lock for memory — and
both are held to the same behavioural tests. Today those are the circuit breaker's `breaker_admit` and
`breaker_record` (see providers/breaker.py for what the states mean), and the counter pair behind daily budgets,
`incr_within` (reserve) and `decr_and_incr` (settle): one round trip each instead of two and three.

Keys are given without the prefix (`SHARED_STATE_PREFIX`, default "ah:"); the backend adds it. Values come back
as `str` (or None), as Redis stores them.
"""

from __future__ import annotations

import fnmatch
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis
from django.conf import settings

DEFAULT_PREFIX = "ah:"

# What a caller may catch to "fail open" when the shared state cannot be reached.
UNAVAILABLE: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)


# --------------------------------------------------------------------------------------------- breaker logic

WINDOW_SLOTS = 10  # the failure-rate window is a ring of 10 time slots (window / 10 seconds each)
_WINDOW_FIELDS = tuple(f"{c}{i}" for i in range(WINDOW_SLOTS) for c in ("t", "n", "f"))

# Breaker outcomes, as passed to `breaker_record`.
SUCCESS, FAILURE, NEUTRAL = "s", "f", "n"


@dataclass(frozen=True)
class BreakerPolicy:
    """The thresholds `breaker_record` applies (read from settings by providers.breaker)."""

    failure_threshold: int = 5  # consecutive counted failures that open the circuit
    window_seconds: float = 60.0  # the failure-rate window
    min_calls: int = 10  # ... which needs at least this many calls in the window
    failure_rate: float = 0.5  # ... and at least this share of failures
    open_seconds: float = 30.0  # how long an opened circuit stays open before a half-open probe
    latency_alpha: float = 0.3  # EWMA weight of the newest successful latency
    key_ttl_seconds: int = 86_400  # an idle breaker's hash is forgotten after this


@dataclass(frozen=True)
class BreakerView:
    """A breaker's state as seen at `now`.

    state: closed | open | half_open | cooling_down (closed or half-open, but a retry-after cool-down runs).
    code: "" (closed: call it), "probe" (half-open, the probe slot is free), "open", "cooldown",
    "probe_in_flight" (half-open, another caller holds the probe slot).
    """

    state: str
    code: str
    retry_in: float | None

    @property
    def allowed(self) -> bool:
        return self.code in ("", "probe")


def _f(value: Any) -> float:
    try:
        return float(value) if value not in (None, "", False) else 0.0
    except (TypeError, ValueError):
        return 0.0


def breaker_view(h: Mapping[str, Any] | None, now: float) -> BreakerView:
    """Pure function: what a breaker hash means at `now`. Mirrored by the Lua in ADMIT_LUA."""
    h = h or {}
    now = float(_num(now))  # the precision Redis is given (keeps both backends identical)
    st = h.get("st") or "closed"
    ou, pu, cu = _f(h.get("ou")), _f(h.get("pu")), _f(h.get("cu"))
    if st == "open" and now < ou:
        return BreakerView("open", "open", round(max(ou, cu) - now, 6))
    if cu > now:
        return BreakerView("cooling_down", "cooldown", round(cu - now, 6))
    if st == "closed":
        return BreakerView("closed", "", None)
    if pu > now:
        return BreakerView("half_open", "probe_in_flight", round(pu - now, 6))
    return BreakerView("half_open", "probe", None)


def _num(x: float) -> str:
    return f"{x:.6f}"


def _py_admit(h: dict[str, str], now: float, probe_lease: float) -> BreakerView:
    now, probe_lease = float(_num(now)), float(_num(probe_lease))
    view = breaker_view(h, now)
    if view.code == "probe":
        h["st"] = "half_open"
        h["pu"] = _num(now + probe_lease)
    return view


def _py_record(h: dict[str, str], now: float, outcome: str, latency_ms: float, retry_after: float,
               p: BreakerPolicy) -> tuple[str, str]:
    """Pure mirror of RECORD_LUA. Mutates `h`; returns (state before, state after) as closed/open/half_open."""
    now = float(_num(now))
    latency_ms, retry_after = float(_num(latency_ms)), float(_num(retry_after))
    st = h.get("st") or "closed"
    ou, cu, cf = _f(h.get("ou")), _f(h.get("cu")), int(_f(h.get("cf")))
    eff = "open" if (st == "open" and now < ou) else ("closed" if st == "closed" else "half_open")
    new = eff
    if retry_after > 0 and now + retry_after > cu:
        h["cu"] = _num(now + retry_after)
    width = p.window_seconds / WINDOW_SLOTS
    b = math.floor(now / width)

    def add(fail: bool) -> tuple[int, int]:
        slot = b % WINDOW_SLOTS
        if h.get(f"t{slot}") is None or int(_f(h.get(f"t{slot}"))) != b:
            h[f"t{slot}"], h[f"n{slot}"], h[f"f{slot}"] = str(b), "0", "0"
        h[f"n{slot}"] = str(int(h[f"n{slot}"]) + 1)
        if fail:
            h[f"f{slot}"] = str(int(h[f"f{slot}"]) + 1)
        calls = fails = 0
        for i in range(WINDOW_SLOTS):
            tag = h.get(f"t{i}")
            if tag is not None and b - WINDOW_SLOTS < int(_f(tag)) <= b:
                calls += int(_f(h.get(f"n{i}")))
                fails += int(_f(h.get(f"f{i}")))
        return calls, fails

    def open_() -> None:
        h["st"], h["ou"], h["pu"] = "open", _num(now + p.open_seconds), "0"

    if outcome == SUCCESS:
        lat = h.get("lat")
        h["lat"] = _num(latency_ms if lat is None else p.latency_alpha * latency_ms + (1 - p.latency_alpha) * _f(lat))
        if eff == "half_open":
            for name in (*_WINDOW_FIELDS, "ou", "pu"):
                h.pop(name, None)
            h["st"], h["cf"] = "closed", "0"
            new = "closed"
        elif eff == "closed":
            h["cf"] = "0"
            add(False)
    elif outcome == FAILURE:
        h["cf"] = str(cf + 1)
        if eff == "half_open":
            open_()
            new = "open"
        elif eff == "closed":
            calls, fails = add(True)
            if cf + 1 >= p.failure_threshold or (calls >= p.min_calls and fails >= p.failure_rate * calls):
                open_()
                new = "open"
    elif st == "half_open":  # NEUTRAL: the provider answered; free the probe slot for the next caller
        h["pu"] = "0"
    h.setdefault("st", "closed")
    return eff, new


ADMIT_LUA = """
local k = KEYS[1]
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local h = redis.call('HMGET', k, 'st', 'ou', 'pu', 'cu')
local st = h[1] or 'closed'
local ou = tonumber(h[2]) or 0
local pu = tonumber(h[3]) or 0
local cu = tonumber(h[4]) or 0
local function f(x) return string.format('%.6f', x) end
if st == 'open' and now < ou then return {'open', 'open', f(math.max(ou, cu) - now)} end
if cu > now then return {'cooling_down', 'cooldown', f(cu - now)} end
if st == 'closed' then return {'closed', '', ''} end
if pu > now then return {'half_open', 'probe_in_flight', f(pu - now)} end
redis.call('HSET', k, 'st', 'half_open', 'pu', f(now + lease))
return {'half_open', 'probe', ''}
"""

RECORD_LUA = """
local k = KEYS[1]
local now = tonumber(ARGV[1])
local outcome = ARGV[2]
local latency = tonumber(ARGV[3])
local retry_after = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local min_calls = tonumber(ARGV[7])
local rate = tonumber(ARGV[8])
local open_s = tonumber(ARGV[9])
local alpha = tonumber(ARGV[10])
local key_ttl_ms = tonumber(ARGV[11])
local NB = tonumber(ARGV[12])
local function f(x) return string.format('%.6f', x) end
local h = redis.call('HMGET', k, 'st', 'ou', 'cu', 'cf', 'lat')
local st = h[1] or 'closed'
local ou = tonumber(h[2]) or 0
local cu = tonumber(h[3]) or 0
local cf = tonumber(h[4]) or 0
local lat = tonumber(h[5])
local eff
if st == 'open' and now < ou then eff = 'open' elseif st == 'closed' then eff = 'closed' else eff = 'half_open' end
local new = eff
if retry_after > 0 and now + retry_after > cu then redis.call('HSET', k, 'cu', f(now + retry_after)) end
local b = math.floor(now / (window / NB))
local function add(fail)
  local slot = b % NB
  local tag = tonumber(redis.call('HGET', k, 't' .. slot))
  if tag ~= b then redis.call('HSET', k, 't' .. slot, string.format('%d', b), 'n' .. slot, '0', 'f' .. slot, '0') end
  redis.call('HINCRBY', k, 'n' .. slot, 1)
  if fail then redis.call('HINCRBY', k, 'f' .. slot, 1) end
  local calls, fails = 0, 0
  for i = 0, NB - 1 do
    local r = redis.call('HMGET', k, 't' .. i, 'n' .. i, 'f' .. i)
    local t = tonumber(r[1])
    if t and t > b - NB and t <= b then
      calls = calls + (tonumber(r[2]) or 0)
      fails = fails + (tonumber(r[3]) or 0)
    end
  end
  return calls, fails
end
local function open_()
  redis.call('HSET', k, 'st', 'open', 'ou', f(now + open_s), 'pu', '0')
end
if outcome == 's' then
  if lat then lat = alpha * latency + (1 - alpha) * lat else lat = latency end
  redis.call('HSET', k, 'lat', f(lat))
  if eff == 'half_open' then
    local fields = {'ou', 'pu'}
    for i = 0, NB - 1 do
      table.insert(fields, 't' .. i); table.insert(fields, 'n' .. i); table.insert(fields, 'f' .. i)
    end
    redis.call('HDEL', k, unpack(fields))
    redis.call('HSET', k, 'st', 'closed', 'cf', '0')
    new = 'closed'
  elseif eff == 'closed' then
    redis.call('HSET', k, 'cf', '0')
    add(false)
  end
elseif outcome == 'f' then
  redis.call('HSET', k, 'cf', string.format('%d', cf + 1))
  if eff == 'half_open' then
    open_()
    new = 'open'
  elseif eff == 'closed' then
    local calls, fails = add(true)
    if cf + 1 >= threshold or (calls >= min_calls and fails >= rate * calls) then
      open_()
      new = 'open'
    end
  end
elseif st == 'half_open' then
  redis.call('HSET', k, 'pu', '0')
end
if redis.call('HEXISTS', k, 'st') == 0 then redis.call('HSET', k, 'st', 'closed') end
redis.call('PEXPIRE', k, key_ttl_ms)
return {eff, new}
"""

INCR_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call(ARGV[3], KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""


# KEYS[1] the counter to add to; KEYS[2..] the other counters of the sum. ARGV: amount, ttl ms (on creation), limit.
INCR_WITHIN_LUA = """
local amount = tonumber(ARGV[1])
local total = amount
for i = 1, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if v > 0 then total = total + v end
end
if total > tonumber(ARGV[3]) then return {0, total - amount} end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('INCRBY', KEYS[1], amount)
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, total}
"""

# KEYS[1] taken from only while it exists, KEYS[2] added to. ARGV: amount taken, amount added, ttl ms (on creation).
DECR_AND_INCR_LUA = """
if tonumber(ARGV[1]) ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], ARGV[1]) end
local existed = redis.call('EXISTS', KEYS[2])
local v = redis.call('INCRBY', KEYS[2], ARGV[2])
if existed == 0 and tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return v
"""


# --------------------------------------------------------------------------------------------- the interface

@runtime_checkable
class SharedState(Protocol):
    prefix: str

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: Any, ttl: float | None = None, nx: bool = False) -> bool: ...
    def delete(self, *keys: str) -> int: ...
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int: ...
    def incrbyfloat(self, key: str, amount: float, ttl: float | None = None) -> float: ...
    def expire(self, key: str, ttl: float) -> bool: ...
    def ttl(self, key: str) -> float | None: ...
    def mget(self, keys: Iterable[str]) -> list[str | None]: ...
    def hget(self, key: str, field: str) -> str | None: ...
    def hset(self, key: str, mapping: Mapping[str, Any], ttl: float | None = None) -> None: ...
    def read_hashes(self, keys: Iterable[str]) -> list[dict[str, str]]: ...
    def hincr_many(self, increments: Mapping[str, Mapping[str, int]]) -> None: ...
    def keys(self, pattern: str = "*") -> list[str]: ...
    def flush(self) -> int: ...
    def ping(self) -> bool: ...
    def incr_within(self, key: str, amount: int, limit: int, others: Iterable[str] = (), ttl: float | None = None
                    ) -> tuple[bool, int]: ...
    def decr_and_incr(self, taken_from: str, taken: int, key: str, amount: int, ttl: float | None = None) -> int: ...
    def breaker_admit(self, key: str, now: float, probe_lease: float) -> BreakerView: ...
    def breaker_record(self, key: str, now: float, outcome: str, latency_ms: float, retry_after: float,
                       policy: BreakerPolicy) -> tuple[str, str]: ...


def _ms(ttl: float) -> int:
    return max(1, int(math.ceil(ttl * 1000)))


# --------------------------------------------------------------------------------------------- Redis

_pools: dict[str, redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> redis.ConnectionPool:
    """One connection pool per Redis URL for the whole process (redis-py resets it in a forked child). Blocking: a
    thread waits (REDIS_POOL_TIMEOUT) for one of REDIS_MAX_CONNECTIONS connections rather than failing."""
    pool = _pools.get(url)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(url)
            if pool is None:
                timeout = getattr(settings, "SHARED_STATE_SOCKET_TIMEOUT", 2.0)
                pool = redis.BlockingConnectionPool.from_url(
                    url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
                    health_check_interval=30, max_connections=getattr(settings, "REDIS_MAX_CONNECTIONS", 64),
                    timeout=getattr(settings, "REDIS_POOL_TIMEOUT", 5.0),
                )
                _pools[url] = pool
    return pool


class RedisState:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.client = redis.Redis(connection_pool=_pool(url))
        self._admit = self.client.register_script(ADMIT_LUA)
        self._record = self.client.register_script(RECORD_LUA)
        self._incr = self.client.register_script(INCR_LUA)
        self._incr_within = self.client.register_script(INCR_WITHIN_LUA)
        self._decr_and_incr = self.client.register_script(DECR_AND_INCR_LUA)

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str) -> str | None:
        return self.client.get(self._k(key))

    def set(self, key: str, value: Any, ttl: float | None = None, nx: bool = False) -> bool:
        return bool(self.client.set(self._k(key), value, px=_ms(ttl) if ttl else None, nx=nx))

    def delete(self, *keys: str) -> int:
        return int(self.client.delete(*[self._k(k) for k in keys])) if keys else 0

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        if not ttl:
            return int(self.client.incrby(self._k(key), amount))
        return int(self._incr(keys=[self._k(key)], args=[int(amount), _ms(ttl), "INCRBY"]))

    def incrbyfloat(self, key: str, amount: float, ttl: float | None = None) -> float:
        if not ttl:
            return float(self.client.incrbyfloat(self._k(key), amount))
        return float(self._incr(keys=[self._k(key)], args=[repr(float(amount)), _ms(ttl), "INCRBYFLOAT"]))

    def expire(self, key: str, ttl: float) -> bool:
        return bool(self.client.pexpire(self._k(key), _ms(ttl)))

    def ttl(self, key: str) -> float | None:
        ms = self.client.pttl(self._k(key))
        return None if ms is None or ms < 0 else ms / 1000

    def mget(self, keys: Iterable[str]) -> list[str | None]:
        keys = [self._k(k) for k in keys]
        return list(self.client.mget(keys)) if keys else []

    def hget(self, key: str, field: str) -> str | None:
        return self.client.hget(self._k(key), field)

    def hset(self, key: str, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._k(key), mapping={k: str(v) for k, v in mapping.items()})
            if ttl:
                pipe.pexpire(self._k(key), _ms(ttl))
            pipe.execute()

    def read_hashes(self, keys: Iterable[str]) -> list[dict[str, str]]:
        keys = list(keys)
        if not keys:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._k(key))
            return [dict(h or {}) for h in pipe.execute()]

    def hincr_many(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        """HINCRBY every (hash, field) by its integer amount: one round trip, not atomic as a whole."""
        with self.client.pipeline(transaction=False) as pipe:
            for key, fields in increments.items():
                for field, amount in fields.items():
                    pipe.hincrby(self._k(key), field, int(amount))
            pipe.execute()

    def keys(self, pattern: str = "*") -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k in self.client.scan_iter(match=self._k(pattern), count=500)]

    def flush(self) -> int:
        """Delete every key under this prefix (tests, and a clean slate after a drill)."""
        deleted = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.unlink(*batch)
                batch = []
        if batch:
            deleted += self.client.unlink(*batch)
        return deleted

    reset_for_tests = flush

    def ping(self) -> bool:
        return bool(self.client.ping())

    def incr_within(self, key: str, amount: int, limit: int, others: Iterable[str] = (), ttl: float | None = None
                    ) -> tuple[bool, int]:
        """Add `amount` to the counter `key` only if `key` + `others` + `amount` stays within `limit` (counters below
        zero count as zero), atomically. Returns (added, the sum: with `amount` if added, without it if not)."""
        added, total = self._incr_within(keys=[self._k(key), *(self._k(k) for k in others)],
                                         args=[int(amount), _ms(ttl) if ttl else 0, int(limit)])
        return bool(added), int(total)

    def decr_and_incr(self, taken_from: str, taken: int, key: str, amount: int, ttl: float | None = None) -> int:
        """Take `taken` from `taken_from` if it still exists (an expired counter took it with it) and add `amount` to
        `key` (ttl set when it is created), atomically. Returns the new value of `key`."""
        return int(self._decr_and_incr(keys=[self._k(taken_from), self._k(key)],
                                       args=[int(taken), int(amount), _ms(ttl) if ttl else 0]))

    def breaker_admit(self, key: str, now: float, probe_lease: float) -> BreakerView:
        state, code, retry_in = self._admit(keys=[self._k(key)], args=[_num(now), _num(probe_lease)])
        return BreakerView(state, code, float(retry_in) if retry_in else None)

    def breaker_record(self, key: str, now: float, outcome: str, latency_ms: float, retry_after: float,
                       policy: BreakerPolicy) -> tuple[str, str]:
        p = policy
        before, after = self._record(keys=[self._k(key)], args=[
            _num(now), outcome, _num(latency_ms or 0), _num(retry_after or 0), p.failure_threshold,
            _num(p.window_seconds), p.min_calls, _num(p.failure_rate), _num(p.open_seconds), _num(p.latency_alpha),
            int(p.key_ttl_seconds * 1000), WINDOW_SLOTS,
        ])
        return before, after


# --------------------------------------------------------------------------------------------- memory

class MemoryState:
    """Thread-safe, in-process, with expiry. For `make run` (no Redis) and as the reference in tests.

    Values are kept as Redis keeps them (strings; hashes as dicts of strings). Expiry uses a monotonic clock,
    checked lazily on access, with an occasional sweep so abandoned keys do not pile up.
    """

    SWEEP_EVERY = 1000

    def __init__(self, prefix: str = DEFAULT_PREFIX, clock=time.monotonic) -> None:
        self.prefix = prefix
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._lock = threading.RLock()
        self._clock = clock
        self._ops = 0

    # internal helpers: call with the lock held
    def _live(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    def _expiry(self, key: str) -> float | None:
        item = self._data.get(key)
        return item[1] if item else None

    def _put(self, key: str, value: Any, expires: float | None) -> None:
        self._data[key] = (value, expires)
        self._ops += 1
        if self._ops % self.SWEEP_EVERY == 0:
            now = self._clock()
            for k in [k for k, (_, e) in self._data.items() if e is not None and e <= now]:
                del self._data[k]

    def _deadline(self, ttl: float | None) -> float | None:
        return self._clock() + ttl if ttl else None

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._live(key)
        if isinstance(value, dict):
            raise TypeError(f"{key!r} holds a hash")
        return value

    def set(self, key: str, value: Any, ttl: float | None = None, nx: bool = False) -> bool:
        with self._lock:
            if nx and self._live(key) is not None:
                return False
            self._put(key, str(value), self._deadline(ttl))
            return True

    def delete(self, *keys: str) -> int:
        with self._lock:
            n = 0
            for key in keys:
                if self._live(key) is not None:
                    del self._data[key]
                    n += 1
            return n

    def _incr(self, key: str, amount, ttl: float | None, cast):
        with self._lock:
            current = self._live(key)
            expires = self._expiry(key) if current is not None else self._deadline(ttl)
            value = cast(current if current is not None else 0) + amount
            self._put(key, repr(value) if cast is float else str(value), expires)
            return value

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return self._incr(key, int(amount), ttl, int)

    def incrbyfloat(self, key: str, amount: float, ttl: float | None = None) -> float:
        return self._incr(key, float(amount), ttl, float)

    def expire(self, key: str, ttl: float) -> bool:
        with self._lock:
            value = self._live(key)
            if value is None:
                return False
            self._put(key, value, self._deadline(ttl))
            return True

    def ttl(self, key: str) -> float | None:
        with self._lock:
            if self._live(key) is None:
                return None
            expires = self._expiry(key)
            return None if expires is None else max(0.0, expires - self._clock())

    def mget(self, keys: Iterable[str]) -> list[str | None]:
        with self._lock:
            return [self._live(k) for k in keys]

    def hget(self, key: str, field: str) -> str | None:
        with self._lock:
            h = self._live(key)
            return h.get(field) if isinstance(h, dict) else None

    def hset(self, key: str, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        with self._lock:
            h = self._live(key)
            h = dict(h) if isinstance(h, dict) else {}
            h.update({k: str(v) for k, v in mapping.items()})
            self._put(key, h, self._deadline(ttl) if ttl else self._expiry(key) if key in self._data else None)

    def read_hashes(self, keys: Iterable[str]) -> list[dict[str, str]]:
        with self._lock:
            out = []
            for key in keys:
                h = self._live(key)
                out.append(dict(h) if isinstance(h, dict) else {})
            return out

    def hincr_many(self, increments: Mapping[str, Mapping[str, int]]) -> None:
        with self._lock:
            for key, fields in increments.items():
                h = self._live(key)
                h = dict(h) if isinstance(h, dict) else {}
                for field, amount in fields.items():
                    h[field] = str(int(h.get(field) or 0) + int(amount))
                self._put(key, h, self._expiry(key) if key in self._data else None)

    def keys(self, pattern: str = "*") -> list[str]:
        with self._lock:
            return [k for k in list(self._data) if fnmatch.fnmatchcase(k, pattern) and self._live(k) is not None]

    def flush(self) -> int:
        with self._lock:
            n = len(self._data)
            self._data.clear()
            return n

    reset_for_tests = flush

    def ping(self) -> bool:
        return True

    def incr_within(self, key: str, amount: int, limit: int, others: Iterable[str] = (), ttl: float | None = None
                    ) -> tuple[bool, int]:
        with self._lock:
            total = int(amount) + sum(max(0, int(self._live(k) or 0)) for k in (key, *others))
            if total > limit:
                return False, total - int(amount)
            self._incr(key, int(amount), ttl, int)
            return True, total

    def decr_and_incr(self, taken_from: str, taken: int, key: str, amount: int, ttl: float | None = None) -> int:
        with self._lock:
            if taken and self._live(taken_from) is not None:
                self._incr(taken_from, -int(taken), None, int)
            return self._incr(key, int(amount), ttl, int)

    def breaker_admit(self, key: str, now: float, probe_lease: float) -> BreakerView:
        with self._lock:
            h = self._live(key)
            if not isinstance(h, dict):
                return breaker_view(None, now)
            view = _py_admit(h, now, probe_lease)
            return view

    def breaker_record(self, key: str, now: float, outcome: str, latency_ms: float, retry_after: float,
                       policy: BreakerPolicy) -> tuple[str, str]:
        with self._lock:
            h = self._live(key)
            h = h if isinstance(h, dict) else {}
            result = _py_record(h, now, outcome, float(latency_ms or 0), float(retry_after or 0), policy)
            self._put(key, h, self._deadline(policy.key_ttl_seconds))
            return result


# --------------------------------------------------------------------------------------------- accessor

_instances: dict[tuple[str, str, str], SharedState] = {}
_instances_lock = threading.Lock()


def shared_state() -> SharedState:
    """The configured backend: Redis when REDIS_URL is set (or SHARED_STATE_BACKEND="redis"), else memory.

    One instance per (backend, url, prefix) for the life of the process, so a test that overrides
    SHARED_STATE_PREFIX gets its own namespace.
    """
    url = getattr(settings, "REDIS_URL", "") or ""
    prefix = getattr(settings, "SHARED_STATE_PREFIX", DEFAULT_PREFIX)
    backend = getattr(settings, "SHARED_STATE_BACKEND", "") or ("redis" if url else "memory")
    key = (backend, url, prefix)
    instance = _instances.get(key)
    if instance is None:
        with _instances_lock:
            instance = _instances.get(key)
            if instance is None:
                if backend == "redis":
                    if not url:
                        raise RuntimeError("SHARED_STATE_BACKEND is 'redis' but REDIS_URL is empty")
                    instance = RedisState(url, prefix)
                elif backend == "memory":
                    instance = MemoryState(prefix)
                else:
                    raise RuntimeError(f"unknown SHARED_STATE_BACKEND {backend!r} (use 'redis' or 'memory')")
                _instances[key] = instance
    return instance
