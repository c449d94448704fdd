"""Named SQL blocks kept in `sql/queries/*.sql`, loaded once and looked up by name."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def queries(module: str) -> dict[str, str]:
    """The named blocks of `sql/queries/<module>.sql` as {name: sql}."""
    text = (SQL_DIR / "queries" / f"{module}.sql").read_text()
    parts = _NAME.split(text)
    blocks = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if not blocks:
        raise ValueError(f"sql/queries/{module}.sql has no '-- name:' blocks")
    return blocks
