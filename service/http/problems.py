"""RFC 9457 problem details: one table from exception to problem, one handler.

Bodies carry a stable type, a title, the failing fields, never input values,
SQL or stack traces: patient data cannot leak through an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from events.errors import KeyUnavailable, StoreUnavailable, UnknownPosition
from events.privacy import KeyEncryptionKeyError, Undecryptable
from events.proving import NotProvable
from events.redaction import redacted_traceback
from projections.as_of import CommitTimesUntracked, CommitTimeUnknown, TransactionsStillOpen
from projections.freshness import ProjectionLagging
from projections.signatures import MalformedSignatureHeaders, SignatureRejected, TimestampOutOfRange
from service import domain, partner_domain
from service.erasure import PatientUnknown
from service.handlers import IdempotencyKeyReused, TooMuchContention
from service.keys import InvalidApiKey, NotPermitted, UnknownBusiness
from service.ratelimit import RateLimited
from service.webhooks import UnknownWebhook, WebhookError

PROBLEM_BASE = "https://intake.dev/problems/"
MEDIA_TYPE = "application/problem+json"
_log = structlog.get_logger("intake.http")


class FieldError(msgspec.Struct, frozen=True):
    """One failing field: a dotted path and what is wrong, without the value."""

    field: str
    message: str


class ProblemBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The RFC 9457 document."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: Sequence[FieldError] = ()


class ClientProblem(Exception):
    """The request is not acceptable as sent."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)


class MalformedJson(ClientProblem):
    """The body is not valid JSON."""

    slug, title = "malformed-json", "Malformed JSON"


class InvalidIdempotencyKey(ClientProblem):
    """The Idempotency-Key header is missing or malformed."""

    slug, title = "invalid-idempotency-key", "Missing or malformed Idempotency-Key"


class InvalidParameter(ClientProblem):
    """A query parameter is malformed."""

    slug, title = "invalid-parameter", "Invalid parameter"


class ValidationFailed(ClientProblem):
    """The body is well-formed JSON but not a valid request."""

    status, slug, title = 422, "validation-failed", "Validation failed"


class UnsupportedMediaType(ClientProblem):
    """The body must be application/json."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Forbidden(ClientProblem):
    """The API key may not do this here."""

    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ClientProblem):
    """No such resource."""

    status, slug, title = 404, "not-found", "Not found"


@dataclass(frozen=True, slots=True)
class _Kind:
    status: int
    slug: str
    title: str
    retry_after: int | None = None


_BY_EXCEPTION_VALIDATION = _Kind(422, "validation-failed", "Validation failed")
_BY_EXCEPTION: dict[type[Exception], _Kind] = {
    StoreUnavailable: _Kind(503, "database-unavailable", "Database unavailable", retry_after=1),
    TooMuchContention: _Kind(503, "contention", "Too much contention, retry", retry_after=1),
    KeyUnavailable: _Kind(503, "contention", "Too much contention, retry", retry_after=1),
    IdempotencyKeyReused: _Kind(422, "idempotency-key-reused", "Idempotency key reused with another request"),
    domain.AlreadyDecided: _Kind(409, "already-decided", "Already decided"),
    domain.ConsultationNotFound: _Kind(404, "not-found", "Not found"),
    UnknownPosition: _Kind(400, "unknown-position", "Unknown position"),
    InvalidApiKey: _Kind(401, "unauthenticated", "Authentication required"),
    NotPermitted: _Kind(403, "forbidden", "Forbidden"),
    UnknownBusiness: _Kind(404, "not-found", "Not found"),
    ProjectionLagging: _Kind(503, "projection-lagging", "Projection lagging", retry_after=1),
    RateLimited: _Kind(429, "rate-limited", "Too many requests"),
    CommitTimeUnknown: _Kind(422, "as-of-unknowable", "The log cannot say what had committed then"),
    TransactionsStillOpen: _Kind(503, "as-of-unsettled", "Transactions of that time still finishing", retry_after=1),
    # A deployment fault (track_commit_timestamp off), logged as an error: no retry will help.
    CommitTimesUntracked: _Kind(503, "as-of-unavailable", "As-of reads are not available"),
    PatientUnknown: _Kind(404, "not-found", "Not found"),
    # The stored log and its keys disagree (a ciphertext moved or altered): an integrity finding
    # about this resource, not a failure of the service; the detail names event and key ids only.
    Undecryptable: _Kind(409, "unreadable-event", "An event's personal data does not decrypt"),
    # A deployment fault (a KEK missing from the configuration), logged as an error.
    KeyEncryptionKeyError: _Kind(503, "keys-unavailable", "Patient data keys are not available"),
    NotProvable: _Kind(409, "not-sealed", "Not under a seal yet"),
    # Partner callbacks (issue 13): an unknown partner is answered like a wrong signature.
    MalformedSignatureHeaders: _Kind(400, "invalid-webhook-headers", "Missing or malformed webhook headers"),
    SignatureRejected: _Kind(401, "invalid-webhook-signature", "Invalid webhook signature"),
    TimestampOutOfRange: _Kind(401, "stale-webhook-timestamp", "Webhook timestamp out of range"),
    partner_domain.PartnerStatusRefused: _Kind(409, "partner-status-refused", "Partner status refused"),
    UnknownWebhook: _Kind(404, "not-found", "Not found"),
    WebhookError: _Kind(422, "webhook-refused", "Webhook endpoint refused"),
}
_HTTP_SLUGS = {400: "bad-request", 404: "not-found", 405: "method-not-allowed", 413: "payload-too-large",
               429: "rate-limited", 503: "service-unavailable"}
_ENCODER = msgspec.json.Encoder()


def problem_response(request: Request, exc: Exception) -> Response[bytes]:
    """The problem+json response for any exception; an unexpected one is a 500 and a bug."""
    kind, detail, errors = _classify(exc)
    if kind.status >= 500 and kind.retry_after is None:
        # Frames and types only: an exception's message can quote the request's data.
        _log.error("http.unhandled_exception", exc_type=type(exc).__name__, traceback=redacted_traceback(exc))
    # The route's template, never the raw path: a path can carry whatever the client typed.
    body = ProblemBody(type=PROBLEM_BASE + kind.slug, title=kind.title, status=kind.status,
                       detail=detail, instance=request.scope.get("path_template"), errors=errors)
    headers = {"Retry-After": str(kind.retry_after)} if kind.retry_after is not None else {}
    if isinstance(exc, RateLimited):  # the wait is the bucket's, not a constant
        headers["Retry-After"] = str(exc.verdict.retry_after_s)
        headers.update((k.decode(), v.decode()) for k, v in exc.verdict.headers())
    if kind.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(_ENCODER.encode(body), status_code=kind.status, media_type=MEDIA_TYPE, headers=headers)


def _classify(exc: Exception) -> tuple[_Kind, str | None, Sequence[FieldError]]:
    if isinstance(exc, ClientProblem):
        return _Kind(exc.status, exc.slug, exc.title), exc.detail, exc.errors
    if isinstance(exc, domain.InvalidCommand):
        return _BY_EXCEPTION_VALIDATION, "The request is not valid.", (FieldError(exc.field, exc.message),)
    for cls in type(exc).__mro__:
        if cls in _BY_EXCEPTION:
            kind = _BY_EXCEPTION[cls]
            return kind, str(exc) if kind.status < 500 else kind.title + ".", ()
    if isinstance(exc, HTTPException):
        slug = _HTTP_SLUGS.get(exc.status_code, "http-error")
        # Framework messages name parameters, never their values.
        return _Kind(exc.status_code, slug, slug.replace("-", " ").capitalize()), exc.detail, ()
    return _Kind(500, "internal-error", "Internal server error"), None, ()

