"""Rate limits per API key and per business, per route class, in Redis: one atomic round trip.

GCRA (the generic cell rate algorithm) in one Lua script over both buckets: each bucket is a
single key holding its "theoretical arrival time", written with SET … PX in the same call that
reads it, so no bucket ever lives past its window whatever fails, and the request is counted
against both buckets or neither. Redis is transport, never truth: when it is down or slow the
limiter fails open — requests are served, a warning is logged once per interval, a counter says
how often — and it stops asking Redis for a moment, so an outage costs no latency.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis.exceptions
import structlog
from redis.asyncio import Redis

ROUTE_CLASSES = ("submit", "decide", "read", "admin")
_RULE = re.compile(r"(?P<count>[1-9][0-9]{0,8})/(?P<seconds>[1-9][0-9]{0,5})s")
_log = structlog.get_logger("intake.ratelimit")

# KEYS: the buckets; ARGV: period_ms and limit for each. Returns the tightest bucket's
# {allowed, retry_after_ms, remaining, reset_ms, index}. Redis's own clock, so that API
# processes whose clocks drift apart still share one notion of a window.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local allowed, retry, remaining, reset, tightest = 1, 0, math.huge, 0, 1
local new_tats = {}
for i = 1, #KEYS do
  local period = tonumber(ARGV[2 * i - 1])
  local interval = period / tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  new_tats[i] = new_tat
  if now < allow_at then
    if allowed == 1 or allow_at - now > retry then retry, reset, tightest = allow_at - now, allow_at - now, i end
    allowed, remaining = 0, 0
  elseif allowed == 1 then
    local left = math.floor((now - allow_at) / interval)
    if left < remaining then remaining, reset, tightest = left, new_tat - now, i end
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    -- Kept to the microsecond: rounding to whole milliseconds would spend a full millisecond on
    -- each request and cap every limit at 1,000 a second.
    redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', math.max(1, math.ceil(new_tats[i] - now)))
  end
end
return {allowed, math.ceil(retry), remaining, math.ceil(reset), tightest}
"""


class RateLimitConfigError(ValueError):
    """A rate limit is written `CLASS=COUNT/SECONDSs` (e.g. submit=100/1s), or `off`."""


@dataclass(frozen=True, slots=True)
class Rule:
    """At most `count` requests per `seconds` (a burst of `count`, refilled evenly)."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


def parse_rules(text: str) -> dict[str, Rule]:
    """`submit=100/1s,read=200/1s` → {class: Rule}; `off` or empty → no limits."""
    if text.strip().lower() in ("", "off"):
        return {}
    return rules_from(item.partition("=")[::2] for item in filter(None, (part.strip() for part in text.split(","))))


def rules_from(pairs: Iterable[tuple[str, str]]) -> dict[str, Rule]:
    """(class, `COUNT/SECONDSs`) pairs → {class: Rule}, as a business's stored limits hold them."""
    rules = {}
    for route_class, rule in pairs:
        match = _RULE.fullmatch(rule.strip())
        if route_class.strip() not in ROUTE_CLASSES or match is None:
            raise RateLimitConfigError(f"{RateLimitConfigError.__doc__} Got {route_class}={rule!r}.")
        rules[route_class.strip()] = Rule(int(match["count"]), int(match["seconds"]))
    return rules


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limiter decided, and the headers that say so (IETF httpapi ratelimit-headers draft)."""

    allowed: bool
    rule: Rule
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """`RateLimit-Policy` and `RateLimit` for the tightest bucket."""
        policy = f'"{self.rule}";q={self.rule.count};w={self.rule.seconds}'
        state = f'"{self.rule}";r={self.remaining};t={self.reset_s}'
        return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", state.encode())]


class RateLimited(Exception):
    """Too many requests for this API key or business; retry after the given seconds."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(RateLimited.__doc__)
        self.verdict = verdict


class RateLimiter:
    """Checks a request against its key's and its business's buckets for its route class."""

    def __init__(self, client: Redis | None, *, per_key: Mapping[str, Rule], per_business: Mapping[str, Rule],
                 timeout_s: float, on_unavailable: Callable[[], None],
                 pause_s: float = 1.0, warn_every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._script = client.register_script(_GCRA) if client is not None else None
        self._per_key, self._per_business = per_key, per_business
        self._timeout_s, self._pause_s, self._warn_every_s = timeout_s, pause_s, warn_every_s
        self._on_unavailable = on_unavailable
        self._clock = clock
        self._paused_until = 0.0
        self._warned_at = -math.inf

    async def check(self, route_class: str, key_id: object, business_id: int | None,
                    business_rules: Mapping[str, Rule] | None = None) -> Verdict | None:
        """The verdict (RateLimited if over), or None when nothing limits this request or Redis is away."""
        if self._script is None or self._clock() < self._paused_until:
            return None  # first, so a limiter with nothing to ask costs no bucket names per request
        # The rule is part of the bucket's name: a changed limit starts a fresh bucket instead of
        # reading one filled under another rate. A name is built only for a rule that exists.
        buckets = []
        if (rule := self._per_key.get(route_class)) is not None:
            buckets.append((f"intake:rl:key:{key_id}:{route_class}:{rule}", rule))
        if business_id is not None and (rule := (business_rules or {}).get(route_class)
                                        or self._per_business.get(route_class)) is not None:
            buckets.append((f"intake:rl:business:{business_id}:{route_class}:{rule}", rule))
        if not buckets:
            return None
        verdict = await self._ask(buckets)
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict)
        return verdict

    async def _ask(self, buckets: list[tuple[str, Rule]]) -> Verdict | None:
        args = [value for _, rule in buckets for value in (rule.seconds * 1000, rule.count)]
        try:
            async with asyncio.timeout(self._timeout_s):
                allowed, retry_ms, remaining, reset_ms, tightest = await self._script(  # type: ignore[misc]
                    keys=[name for name, _ in buckets], args=args)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
            self._fail_open(error)
            return None
        rule = buckets[int(tightest) - 1][1]
        return Verdict(allowed=bool(allowed), rule=rule, remaining=int(remaining),
                       reset_s=math.ceil(int(reset_ms) / 1000), retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)))

    def _fail_open(self, error: BaseException) -> None:
        # Serve the request: an unreachable limiter must never turn into refusing everyone.
        now = self._clock()
        self._paused_until = now + self._pause_s
        self._on_unavailable()
        if now - self._warned_at >= self._warn_every_s:
            self._warned_at = now
            _log.warning("ratelimit.redis_unavailable", error=type(error).__name__, failing_open=True,
                         paused_s=self._pause_s)
