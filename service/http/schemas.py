"""Request bodies as msgspec Structs: parsing and validation in one pass, with field paths in errors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from service.http.problems import FieldError, MalformedJson, UnsupportedMediaType, ValidationFailed

# Ids are opaque to us: 1–128 visible ASCII characters (no spaces or control characters).
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
# Free text: anything but NUL, which PostgreSQL cannot store in jsonb (it would be a 500, not a 422).
_TEXT = r"^[^\x00]*$"
_TEXT_NOT_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=_TEXT_NOT_BLANK)]
Email = Annotated[str, Meta(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s.\x00]+$")]
Phone = Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}$")]  # E.164
Text2000 = Annotated[str, Meta(min_length=1, max_length=2000, pattern=_TEXT_NOT_BLANK)]
Text = Annotated[str, Meta(pattern=_TEXT)]


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


class SubmissionIn(_Body, frozen=True):
    """POST /v1/businesses/{slug}/consult-submissions."""

    customer_id: Id
    product_id: Id
    patient: PatientIn
    chief_complaint: Text2000
    medical_history: Annotated[str, Meta(max_length=10000, pattern=_TEXT)] | None = None
    answers: Annotated[tuple[AnswerIn, ...], Meta(max_length=100)] = ()


class DecisionIn(_Body, frozen=True):
    """POST /v1/businesses/{slug}/consultations/{id}/decision."""

    decision: Literal["approved", "rejected"]
    reason: Text2000
    clinician_id: Id


T = TypeVar("T")
_DECODERS: dict[type, msgspec.json.Decoder] = {}
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<name>[^`]+)`$")


def check_json_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType("Send the body as application/json.")


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
    """A msgspec validation message as (dotted field path, message). msgspec never echoes values."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any string
    text, path = match["message"], (match["path"] or "").lstrip(".")
    named = _NAMED_FIELD.match(text)
    if named:
        path = f"{path}.{named['name']}" if path else named["name"]
        text = "unknown field" if "unknown" in text else "required field is missing"
    if "matching regex" in text:  # the raw pattern helps nobody
        text = "has an invalid format"
    return FieldError(field=path or "body", message=text)
