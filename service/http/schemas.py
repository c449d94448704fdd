"""Request bodies as msgspec Structs: parsing and validation in one pass, with field paths in errors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Meta

from service.http.problems import FieldError, MalformedJson, UnsupportedMediaType, ValidationFailed

# Patterns end in \Z, never $: Python's $ also matches before a trailing newline, so "cus_x\n"
# would pass as a different customer from "cus_x". (The OpenAPI document shows \Z as $,
# which means the same in JSON Schema's ECMAScript dialect.)
# Ids are opaque to us: 1–128 visible ASCII characters (no spaces or control characters).
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+\Z")]
# Never in any text: C0 and C1 controls (NUL cannot even be stored), DEL. One-line text (names)
# also refuses tab, newlines and the Unicode line and paragraph separators.
_NOT_IN_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_NOT_IN_LINE = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# What renders as nothing: spaces, zero-width and format characters (Unicode's default-ignorables
# and space separators). A name or complaint needs at least one character outside this set.
_INVISIBLE = (r" \u00a0\u00ad\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180b-\u180f\u2000-\u200f"
              r"\u202a-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0")
# The leading class holds exactly the characters that may come before the first visible one,
# so matching never backtracks (linear in the length, whatever the input).
_LINE = rf"^[{_INVISIBLE}]*[^{_NOT_IN_LINE}{_INVISIBLE}][^{_NOT_IN_LINE}]*\Z"
_TEXT = rf"^[^{_NOT_IN_TEXT}]*\Z"
_BLANK_IN_TEXT = rf"\t\n\r\u2028\u2029{_INVISIBLE}"
_TEXT_NOT_BLANK = rf"^[{_BLANK_IN_TEXT}]*[^{_NOT_IN_TEXT}{_BLANK_IN_TEXT}][^{_NOT_IN_TEXT}]*\Z"
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=_LINE)]
Email = Annotated[str, Meta(max_length=254, pattern=rf"^[^@\s{_NOT_IN_LINE}]+@[^@\s{_NOT_IN_LINE}]+\.[^@\s.{_NOT_IN_LINE}]+\Z")]
Phone = Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}\Z")]  # E.164
Text2000 = Annotated[str, Meta(min_length=1, max_length=2000, pattern=_TEXT_NOT_BLANK)]
# A consent document's version: a short id such as "tc-2026-01" or "3.2", letters and digits first.
DocumentVersion = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")]
# RFC 3339: a date-time with its offset; a local time without one names no instant.
Instant = Annotated[dt.datetime, Meta(tz=True)]


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PatientIn(_Body, frozen=True):
    """The patient block of a submission."""

    first_name: Name
    last_name: Name
    email: Email
    date_of_birth: dt.date
    phone: Phone | None = None


class AnswerIn(_Body, frozen=True):
    """One questionnaire answer."""

    question_id: Id
    answer: Annotated[str, Meta(max_length=2000, pattern=_TEXT)]


class ConsentIn(_Body, frozen=True):
    """The telehealth consent the patient accepted (not after the request: see service/domain.py)."""

    document_version: DocumentVersion
    accepted_at: Instant


class SubmissionIn(_Body, frozen=True):
    """POST /v1/businesses/{slug}/consult-submissions."""

    # Fields added after the body's first release, left out of the idempotency fingerprint
    # while unset (service/http/writes.py: canonical_body), so that a retry of a request
    # first sent before they existed still matches its key. Each is added last.
    added_later: ClassVar[frozenset[str]] = frozenset({"consent"})

    customer_id: Id
    product_id: Id
    patient: PatientIn
    chief_complaint: Text2000
    medical_history: Annotated[str, Meta(max_length=10000, pattern=_TEXT)] | None = None
    answers: Annotated[tuple[AnswerIn, ...], Meta(max_length=100)] = ()
    consent: ConsentIn | None = None


class DecisionIn(_Body, frozen=True):
    """POST /v1/businesses/{slug}/consultations/{id}/decision."""

    decision: Literal["approved", "rejected"]
    reason: Text2000
    clinician_id: Id


T = TypeVar("T")
_DECODERS: dict[type, msgspec.json.Decoder] = {}
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?\Z", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`\Z")
_UTF8 = frozenset({"utf-8", '"utf-8"', "utf8"})


def check_json_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as `application/json`, in UTF-8 if a charset is given."""
    media, *parameters = (content_type or "").lower().split(";")
    if media.strip() != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name.strip() != "charset" or value.strip() not in _UTF8:
            raise UnsupportedMediaType("Send the body as application/json in UTF-8, with no other parameter.")


def decode_body(raw: bytes, into: type[T]) -> T:
    """The typed body, or a 400 (not JSON) / 422 (not valid) naming the failing field."""
    decoder = _DECODERS.get(into) or _DECODERS.setdefault(into, msgspec.json.Decoder(into))
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise ValidationFailed("The request body is not valid.", [field_error(str(error))]) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 is malformed JSON too
        raise MalformedJson("The request body is not valid JSON.") from None


def field_error(message: str) -> FieldError:
    """A msgspec validation message as (dotted field path, message), never quoting the client:
    not a value (msgspec quotes an invalid enum value), not an unknown field's name."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any string
    text, path = match["message"], (match["path"] or "").lstrip(".")
    if missing := _MISSING.match(text):  # the name is one of our fields, not client text
        return FieldError(field=f"{path}.{missing['name']}" if path else missing["name"],
                          message="required field is missing")
    if text.startswith("Object contains unknown field"):
        text = "contains a field this API does not know"
    elif text.startswith("Invalid enum value"):
        text = "is not one of the allowed values"
    elif "matching regex" in text:  # the raw pattern helps nobody
        text = "has an invalid format"
    elif "'" in text or '"' in text:  # a message shape we have not vetted may quote input
        text = "is not valid"
    return FieldError(field=path or "body", message=text)


class ForgetIn(_Body, frozen=True):
    """POST /v1/businesses/{slug}/patients/forget: whose data to erase, and why (recorded; no
    personal data belongs in it)."""

    customer_id: Id
    reason: Annotated[str, Meta(min_length=1, max_length=500, pattern=_TEXT_NOT_BLANK)]
