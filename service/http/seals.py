"""Tamper evidence over HTTP (docs/API.md, section 5; docs/INTEGRITY.md): the newest signed seal and
the key that checks it, for anyone (a tree head and a public key carry no tenant's data, and an
auditor should not need an API key to hold the service to its word); and an event's inclusion proof,
for the business that owns the event."""

from __future__ import annotations

import msgspec
from litestar import Request, Router, get

from events.proofs import InclusionProof
from events.proving import inclusion_proof
from events.sealing import latest_seal
from events.seals import SealLine, key_id, public_text, to_line
from events.sqlfiles import queries
from service.http import params
from service.http.auth import requires
from service.http.openapi import documented
from service.http.problems import NotFound
from service.keys import Tenant
from service.seal_keys import verifying_key


class PublicKey(msgspec.Struct, frozen=True):
    """The seal key: Ed25519, its 32 raw bytes in base64, and the short id seals name it by."""

    algorithm: str
    public_key: str
    key_id: str


@get("/v1/seals/latest", summary="The newest signed seal over the log", operation_class=documented())
async def latest_seal_route(request: Request) -> SealLine:
    """404 until the first seal."""
    async with request.app.state.pool.acquire(timeout=request.app.state.acquire_timeout) as conn:
        newest = await latest_seal(conn)
    if newest is None:
        raise NotFound("The log has no seal yet.")
    return to_line(newest.seal)


@get("/v1/seals/public-key", summary="The key that checks seals", operation_class=documented())
async def public_key_route(request: Request) -> PublicKey:
    """404 when this deployment has no seal key configured."""
    key = verifying_key(request.app.state.settings)
    if key is None:
        raise NotFound("No seal key is configured.")
    return PublicKey("Ed25519", public_text(key), key_id(key))


@get("/events/{event_id:str}/proof", summary="An event's inclusion proof under the newest seal",
     operation_class=documented())
async def event_proof_route(request: Request) -> InclusionProof:
    """The proof `intake events check-proof` checks; 404 if this business has no such event, 409
    `not-sealed` while no seal covers it yet."""
    event_id = params.uuid_or_404(request, "event_id", "event")
    tenant: Tenant = request.state.tenant
    async with request.app.state.pool.acquire(timeout=request.app.state.acquire_timeout) as conn:
        position = await conn.fetchval(queries("integrity")["event_position_for_business"],
                                       tenant.business_id, event_id)
        if position is None:
            raise NotFound("No such event for this business.")
        return await inclusion_proof(conn, position)


router = Router("/v1/businesses/{slug:str}", route_handlers=[event_proof_route], guards=[requires("audit:read")],
                tags=["audit"])
