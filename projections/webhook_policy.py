"""Where and when deliveries may go: the endpoint URL policy and the retry schedule. Pure, but for
the DNS lookup of `resolved_addresses`.

URLs: https outside development; hosts that are or resolve to private, loopback, link-local or
otherwise non-global addresses are refused unless their network is allowed by configuration
(WEBHOOK_ALLOWED_NETWORKS; the tests allow 127.0.0.0/8): an endpoint must not be a way to make
our workers call into our own network. Checked when an endpoint is registered and again before
each request (a name may resolve elsewhere later).

Retries: after failed attempt n (timeout, connection error, 429 or 5xx) the next waits
base × 4^(n-1), capped at base × 5760, with ±20 % jitter so that a recovering receiver is not hit
by every delivery at once, and never less than a `Retry-After` the receiver sent (up to the cap).
With the defaults (base 5 s, 10 attempts) the waits are 5 s, 20 s, 80 s, 5.3 min, 21 min, 1.4 h,
5.7 h, 8 h and 8 h: about 23.6 hours, then the delivery is dead-lettered. Any other answer (a
redirect, which is never followed, or a 4xx) is dead-lettered at once: repeating it would not help.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import urllib.parse
from collections.abc import Sequence

CAP_FACTOR = 5760  # 5 s × 5760 = 8 h
JITTER = 0.2
MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_S = 2.0  # a name server that does not answer must not hold a request or a delivery slot


class EndpointRefused(Exception):
    """The endpoint URL is not allowed."""


def networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """WEBHOOK_ALLOWED_NETWORKS as networks (CIDRs, comma-separated)."""
    return tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())


def check_url(url: str, *, https_only: bool) -> tuple[str, int]:
    """(host, port) of an acceptable URL; EndpointRefused saying why not."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 0x21 for c in url):
        raise EndpointRefused("a URL is at most 2000 visible characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in (("https",) if https_only else ("https", "http")):
        raise EndpointRefused("an endpoint URL must be https" + ("" if https_only else " or http"))
    if not parts.hostname or parts.username or parts.password:
        raise EndpointRefused("an endpoint URL needs a host and no credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EndpointRefused("the URL's port is not a port number") from None
    return parts.hostname, port


def check_addresses(addresses: Sequence[str], allowed: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    """Refuse if any address is not global and not in an allowed network."""
    if not addresses:
        raise EndpointRefused("the endpoint's host does not resolve")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not address.is_global and not any(address in network for network in allowed):
            raise EndpointRefused("the endpoint's host is a private, loopback or link-local address")


async def resolved_addresses(host: str, port: int, *, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """Every address the host resolves to (an IP literal: itself); none if it does not resolve in time."""
    try:
        return [str(ipaddress.ip_address(host))]  # no lookup, and no hop to the resolver's thread pool
    except ValueError:
        pass
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def retry_delay_s(attempt: int, base_s: float, *, retry_after_s: float | None = None,
                  rng: random.Random | None = None) -> float:
    """The wait after failed attempt number `attempt` (1-based)."""
    cap = base_s * CAP_FACTOR
    delay = min(base_s * 4 ** min(attempt - 1, 12), cap)
    delay *= 1 + (rng or random).uniform(-JITTER, JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap))
    return delay


def retryable(status: int | None) -> bool:
    """Timeouts and connection errors (no status), 429 and 5xx are retried; nothing else helps."""
    return status is None or status == 429 or status >= 500


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (the delay form; an HTTP date is ignored: our own schedule applies)."""
    with contextlib.suppress(ValueError):
        return max(float(value), 0.0) if value is not None else None
    return None
