"""Where breakers and rate buckets keep their shared state.

Redis when ``LEDGERFLOW_BREAKER_REDIS_URL`` is set (the default is
``REDIS_URL``): each operation is one Lua script, so the read, the decision
and the write are one atomic step for every worker at once. On the embedded
default (no Redis) the same decisions are made by the pure functions below
on database rows, written by compare-and-set on a version column.

Exactly one caller makes each state change: the script (or the winning
compare-and-set) returns the change to that caller alone, and that caller
appends the event. Times are epoch seconds from ``runs.ground.clock``, passed in, so
every worker and every test agrees on one clock.
"""

import dataclasses
import time
import uuid
from dataclasses import dataclass, field

import redis
from django.db.models import Model
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.outbound.models import BreakerCell, RateBucket

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
ALLOW, PROBE, WAIT = "allow", "probe", "wait"


class StoreDown(Exception):
    """The shared store could not be reached."""


@dataclass
class Cell:
    state: str = CLOSED
    failures: list[float] = field(default_factory=list)
    opened_at: float | None = None
    probe_at: float | None = None
    probe_until: float | None = None
    next_release: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class Reply:
    """What an operation decided. ``change`` is the new state when this call
    changed it (this caller, and no other, records the event)."""

    verdict: str = ALLOW
    due: float | None = None
    change: str | None = None
    version: int = 0
    failures: int = 0
    opened_at: float | None = None
    probe_at: float | None = None


@dataclass
class Bucket:
    tokens: float
    refilled_at: float
    next_free: float = 0.0


# --- the decisions, as pure functions (the Lua scripts do the same) ---------


def _slot(cell: Cell, base: float, gap: float) -> float:
    """The next release time at or after ``base``: waiting calls are spread
    ``gap`` apart, so a breaker that closes does not release them at once."""
    slot = max(base, cell.next_release)
    cell.next_release = slot + gap
    return slot


def _changed(cell: Cell, state: str, failures: int = 0) -> Reply:
    cell.state = state
    cell.version += 1
    return Reply(change=state, version=cell.version, failures=failures,
                 opened_at=cell.opened_at, probe_at=cell.probe_at)  # fmt: skip


def admit(cell: Cell, now: float, probe_seconds: float, gap: float, recheck: float) -> Reply:
    if cell.state == CLOSED:
        return Reply(verdict=ALLOW)
    if cell.state == OPEN:
        if now < (cell.probe_at or 0):
            return Reply(verdict=WAIT, due=_slot(cell, cell.probe_at or now, gap))
        cell.probe_until = now + probe_seconds
        return dataclasses.replace(_changed(cell, HALF_OPEN), verdict=PROBE)
    if cell.probe_until is None or now >= cell.probe_until:
        cell.probe_until = now + probe_seconds  # the last probe never reported
        return Reply(verdict=PROBE)
    return Reply(verdict=WAIT, due=_slot(cell, now + recheck, gap))


def _open(cell: Cell, now: float, cooldown: float, failures: int) -> Reply:
    cell.failures = []
    cell.opened_at = now
    cell.probe_at = now + cooldown
    cell.probe_until = None
    cell.next_release = 0.0
    return _changed(cell, OPEN, failures)


def record(
    cell: Cell, now: float, ok: bool, threshold: int, window: float, cooldown: float
) -> Reply:
    if ok:
        if cell.state != HALF_OPEN:
            return Reply()
        cell.failures, cell.probe_until = [], None
        return _changed(cell, CLOSED)
    if cell.state == HALF_OPEN:
        return _open(cell, now, cooldown, 1)
    if cell.state == OPEN:
        return Reply()  # a call that began before it opened
    cell.failures = [t for t in cell.failures if t > now - window] + [now]
    if len(cell.failures) >= threshold:
        return _open(cell, now, cooldown, len(cell.failures))
    return Reply(failures=len(cell.failures))


def reset(cell: Cell) -> Reply:
    if cell.state == CLOSED and not cell.failures:
        return Reply()
    cell.failures, cell.opened_at, cell.probe_at, cell.probe_until = [], None, None, None
    cell.next_release = 0.0
    return _changed(cell, CLOSED)


def take(bucket: Bucket, now: float, rate: float, burst: float) -> Reply:
    bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.refilled_at) * rate)
    bucket.refilled_at = now
    if bucket.tokens >= 1:
        bucket.tokens -= 1
        return Reply(verdict=ALLOW)
    slot = max(now + (1 - bucket.tokens) / rate, bucket.next_free)
    bucket.next_free = slot + 1 / rate
    return Reply(verdict=WAIT, due=slot)


# --- Redis -------------------------------------------------------------------

_BREAKER_LUA = """
local key, fkey = KEYS[1], KEYS[2]
local op, now = ARGV[1], tonumber(ARGV[2])
local raw = redis.call('HGETALL', key)
local c = {}
for i = 1, #raw, 2 do c[raw[i]] = raw[i + 1] end
local function num(v) if v == nil or v == '' then return nil end return tonumber(v) end
local state = c.state or 'closed'
local version = tonumber(c.version or '0')
local opened_at, probe_at = num(c.opened_at), num(c.probe_at)
local probe_until, next_release = num(c.probe_until), num(c.next_release) or 0
local function s(v) if v == nil then return '' end return tostring(v) end
local function reply(verdict, due, change, failures)
  return {verdict, s(due), change or '', tostring(version), tostring(failures or 0),
          s(opened_at), s(probe_at)}
end
local function slot(base, gap)
  local at = math.max(base, next_release)
  redis.call('HSET', key, 'next_release', tostring(at + gap))
  return at
end
-- Versions follow the clock (milliseconds) as well as each other, so after
-- Redis loses its data a new change still outranks the old ones on the page.
local function changed(new_state, failures)
  version = math.max(version + 1, math.floor(now * 1000))
  redis.call('HSET', key, 'state', new_state, 'version', version)
  return reply('allow', nil, new_state, failures)
end
local function open(cooldown, failures)
  redis.call('DEL', fkey)
  opened_at, probe_at = now, now + cooldown
  redis.call('HSET', key, 'opened_at', tostring(opened_at), 'probe_at', tostring(probe_at),
             'next_release', '0')
  redis.call('HDEL', key, 'probe_until')
  return changed('open', failures)
end
if op == 'admit' then
  local probe_seconds, gap, recheck = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if state == 'closed' then return reply('allow') end
  if state == 'open' then
    if now < (probe_at or 0) then return reply('wait', slot(probe_at or now, gap)) end
    redis.call('HSET', key, 'probe_until', tostring(now + probe_seconds))
    local r = changed('half_open')
    r[1] = 'probe'
    return r
  end
  if probe_until == nil or now >= probe_until then
    redis.call('HSET', key, 'probe_until', tostring(now + probe_seconds))
    return reply('probe')
  end
  return reply('wait', slot(now + recheck, gap))
elseif op == 'record' then
  local ok, threshold = ARGV[3], tonumber(ARGV[4])
  local window, cooldown, member = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
  if ok == '1' then
    if state ~= 'half_open' then return reply('allow') end
    redis.call('DEL', fkey)
    redis.call('HDEL', key, 'probe_until')
    return changed('closed')
  end
  if state == 'half_open' then return open(cooldown, 1) end
  if state == 'open' then return reply('allow') end
  redis.call('ZADD', fkey, now, member)
  redis.call('ZREMRANGEBYSCORE', fkey, '-inf', '(' .. tostring(now - window))
  redis.call('PEXPIRE', fkey, math.ceil((window + 1) * 1000))
  local count = redis.call('ZCARD', fkey)
  if count >= threshold then return open(cooldown, count) end
  return reply('allow', nil, nil, count)
elseif op == 'reset' then
  if state == 'closed' and redis.call('ZCARD', fkey) == 0 then return reply('allow') end
  redis.call('DEL', fkey)
  redis.call('HDEL', key, 'opened_at', 'probe_at', 'probe_until')
  redis.call('HSET', key, 'next_release', '0')
  opened_at, probe_at = nil, nil
  return changed('closed')
end
return redis.error_reply('unknown operation ' .. op)
"""

_BUCKET_LUA = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HMGET', KEYS[1], 'tokens', 'refilled_at', 'next_free')
local tokens = tonumber(raw[1]) or burst
local refilled_at = tonumber(raw[2]) or now
local next_free = tonumber(raw[3]) or 0
tokens = math.min(burst, tokens + math.max(0, now - refilled_at) * rate)
local verdict, due = 'allow', ''
if tokens >= 1 then
  tokens = tokens - 1
else
  local at = math.max(now + (1 - tokens) / rate, next_free)
  next_free = at + 1 / rate
  verdict, due = 'wait', tostring(at)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'refilled_at', tostring(now),
           'next_free', tostring(next_free))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + 60) * 1000))
return {verdict, due}
"""

_clients: dict[str, redis.Redis] = {}
# After a failed call this process leaves Redis alone for a few seconds, so a
# Redis that hangs costs one time-out per worker now and then, not per step.
_down_until: dict[str, float] = {}
QUIET_AFTER_FAULT_SECONDS = 5.0


def _opt(text: bytes | str) -> float | None:
    text = text.decode() if isinstance(text, bytes) else text
    return float(text) if text else None


class RedisStore:
    name = "redis"
    transactional = False

    def __init__(self, url: str):
        if url not in _clients:
            # Short timeouts: a call must not hang on a dead Redis; it goes
            # ahead as if the breaker were closed (see breakers.admit).
            _clients[url] = redis.Redis.from_url(
                url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
            )
        self.url = url
        self.client = _clients[url]
        self.breaker_script = self.client.register_script(_BREAKER_LUA)
        self.bucket_script = self.client.register_script(_BUCKET_LUA)

    @staticmethod
    def _keys(target: str) -> list[str]:
        return [f"lf:breaker:{target}", f"lf:breaker:{target}:failures"]

    def _run(self, script, keys: list[str], args: list):
        if time.monotonic() < _down_until.get(self.url, 0.0):
            raise StoreDown("Redis failed moments ago; not asking again yet")
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            _down_until[self.url] = time.monotonic() + QUIET_AFTER_FAULT_SECONDS
            raise StoreDown(str(exc)) from exc

    def _breaker(self, target: str, *args) -> Reply:
        raw = self._run(self.breaker_script, self._keys(target), list(args))
        verdict, due, change, version, failures, opened_at, probe_at = (
            v.decode() if isinstance(v, bytes) else v for v in raw
        )
        return Reply(verdict=verdict, due=_opt(due), change=change or None, version=int(version),
                     failures=int(failures), opened_at=_opt(opened_at),
                     probe_at=_opt(probe_at))  # fmt: skip

    def admit(self, target, now, probe_seconds, gap, recheck) -> Reply:
        return self._breaker(target, "admit", now, probe_seconds, gap, recheck)

    def record(self, target, now, ok, threshold, window, cooldown) -> Reply:
        member = f"{now}:{uuid.uuid4().hex}"  # distinct even when the clock is frozen
        return self._breaker(target, "record", now, "1" if ok else "0", threshold, window,
                             cooldown, member)  # fmt: skip

    def reset(self, target, now) -> Reply:
        return self._breaker(target, "reset", now)

    def take(self, target, now, rate, burst) -> Reply:
        verdict, due = self._run(self.bucket_script, [f"lf:rate:{target}"], [now, rate, burst])
        return Reply(verdict=verdict.decode(), due=_opt(due))


# --- the database (embedded default) ----------------------------------------

CAS_ATTEMPTS = 100


def _compare_and_set(model: type[Model], target: str, fresh: dict, decide) -> Reply:
    """Read the row, decide, write it back only if nobody wrote in between
    (same version); on a lost race, read again and decide again."""
    for _ in range(CAS_ATTEMPTS):
        row = model.objects.filter(target=target).first()
        if row is None:
            model.objects.bulk_create([model(target=target, **fresh)], ignore_conflicts=True)
            continue
        values, reply = decide(row)
        if values is None:
            return reply
        written = model.objects.filter(target=target, version=row.version).update(
            **values, version=row.version + 1
        )
        if written == 1:
            return dataclasses.replace(reply, version=row.version + 1) if reply.change else reply
    raise StoreDown(f"{model.__name__} {target}: too many concurrent writers")


def _cell_of(row: BreakerCell) -> Cell:
    return Cell(state=row.state, failures=list(row.failures), opened_at=row.opened_at,
                probe_at=row.probe_at, probe_until=row.probe_until,
                next_release=row.next_release, version=row.version)  # fmt: skip


def _cell_values(before: Cell, after: Cell) -> dict | None:
    changed = {
        f.name: getattr(after, f.name)
        for f in dataclasses.fields(Cell)
        if f.name != "version" and getattr(after, f.name) != getattr(before, f.name)
    }
    return changed or None


class DatabaseStore:
    name = "database"
    transactional = True

    def _breaker(self, target: str, operation) -> Reply:
        def decide(row: BreakerCell):
            before = _cell_of(row)
            after = _cell_of(row)
            reply = operation(after)
            return _cell_values(before, after), reply

        return _compare_and_set(BreakerCell, target, {}, decide)

    def admit(self, target, now, probe_seconds, gap, recheck) -> Reply:
        return self._breaker(target, lambda c: admit(c, now, probe_seconds, gap, recheck))

    def record(self, target, now, ok, threshold, window, cooldown) -> Reply:
        return self._breaker(target, lambda c: record(c, now, ok, threshold, window, cooldown))

    def reset(self, target, now) -> Reply:
        return self._breaker(target, reset)

    def take(self, target, now, rate, burst) -> Reply:
        def decide(row: RateBucket):
            bucket = Bucket(tokens=row.tokens, refilled_at=row.refilled_at,
                            next_free=row.next_free)  # fmt: skip
            reply = take(bucket, now, rate, burst)
            return dataclasses.asdict(bucket), reply

        fresh = {"tokens": burst, "refilled_at": now}
        return _compare_and_set(RateBucket, target, fresh, decide)
