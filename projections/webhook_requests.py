"""One delivery's request: the URL policy checked again, the body signed, POSTed within a timeout,
and what it came to (an `Outcome`), never a response body.

The HTTP client is aiohttp's, not httpx's: under the webhook benchmark httpx's pool (checking every
pooled socket before each request) took about half a worker's CPU per delivery (docs/PERFORMANCE.md).
Redirects are not followed: the URL we checked is the only one we call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time

import aiohttp
import asyncpg

from projections import signatures, webhook_policy
from projections.secretbox import SecretBox


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status: int | None
    error: str | None
    latency_ms: int
    retry_after_s: float | None = None
    permanent: bool = False  # trying again cannot help: dead at once, whatever the schedule


def client() -> aiohttp.ClientSession:
    """The client a sender uses for its life."""
    # No connection limit of its own (the sender's are its slots), no proxy from the environment (the
    # address we checked is the one we call), and no client-wide timeout (each request has one).
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=None))


class Poster:
    """Signs and POSTs deliveries; decrypts each endpoint secret once, not once per delivery."""

    def __init__(self, box: SecretBox, *, timeout_s: float, https_only: bool,
                 allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> None:
        self._box = box
        self._timeout_s = timeout_s
        self._https_only = https_only
        self._allowed_networks = allowed_networks
        self._keys: dict[bytes, bytes] = {}  # sealed secret → key

    async def post(self, client: aiohttp.ClientSession, endpoint: asyncpg.Record, webhook_id: str,
                   body: bytes) -> Outcome:
        """One attempt: the whole exchange bounded by the timeout, failures named by their type only."""
        started = time.perf_counter()
        status, error, retry_after, permanent = None, None, None, False
        try:
            host, port = webhook_policy.check_url(endpoint["url"], https_only=self._https_only)
            webhook_policy.check_addresses(await webhook_policy.resolved_addresses(host, port),
                                           self._allowed_networks)
            headers = self._headers(endpoint, webhook_id, body)
            async with asyncio.timeout(self._timeout_s), \
                    client.post(endpoint["url"], data=body, headers=headers, allow_redirects=False) as response:
                await response.read()  # the whole answer, so that the connection can be kept for the next
            status, retry_after = response.status, webhook_policy.retry_after_s(response.headers.get("retry-after"))
        except webhook_policy.EndpointRefused:  # the URL or its address is not allowed
            error, permanent = "EndpointRefused", True
        except (TimeoutError, aiohttp.ClientError) as failure:
            error = type(failure).__name__
        return Outcome(status, error, round((time.perf_counter() - started) * 1000), retry_after, permanent)

    def _headers(self, endpoint: asyncpg.Record, webhook_id: str, body: bytes) -> dict[str, str]:
        sealed = [endpoint["sealed_secret"]] + ([endpoint["previous_sealed"]] if endpoint["previous_valid"] else [])
        keys = [self._key(s, endpoint["endpoint_id"]) for s in sealed]
        timestamp = int(time.time())
        return {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": signatures.signature_header(keys, webhook_id, timestamp, body)}

    def _key(self, sealed: bytes, endpoint_id: object) -> bytes:
        if sealed not in self._keys:
            if len(self._keys) > 10_000:  # rotated-out secrets must not accumulate forever
                self._keys.clear()
            self._keys[sealed] = signatures.secret_key(self._box.open(sealed, str(endpoint_id)))
        return self._keys[sealed]
