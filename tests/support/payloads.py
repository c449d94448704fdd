"""Request bodies for tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any

VALID_SUBMISSION: dict[str, Any] = {
    "customer_id": "cus_123",
    "product_id": "prod_abc",
    "patient": {
        "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": "+15555550100", "date_of_birth": "1990-12-10",
    },
    "chief_complaint": "Persistent cough for two weeks",
    "medical_history": "None",
    "answers": [{"question_id": "q1", "answer": "yes"}],
}


def submission(**overrides: Any) -> dict[str, Any]:
    """A valid submission body with top-level fields replaced."""
    body = copy.deepcopy(VALID_SUBMISSION)
    body.update(overrides)
    return body


def headers(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    """Auth and a fresh (or given) idempotency key."""
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key or uuid.uuid4().hex}


def decision(verdict: str = "approved", **overrides: Any) -> dict[str, Any]:
    """A valid decision body with fields replaced."""
    return {"decision": verdict, "reason": "Meets the criteria", "clinician_id": "clin_7", **overrides}
