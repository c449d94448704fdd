"""The batch path of a rebuild or a verify: many events folded in memory with the read models' own
pure `evolve` functions, one group at a time, and the rows written with COPY.

A group is what one key's events can span: one stream for consultations and approvals (a
consultation's events are all in its slot's stream), one patient for patients (read in patient
order, log order within a patient, so "latest submission by position wins" holds as live). Only one
group's rows are in memory, plus the rows waiting to be written (at most FLUSH_ROWS per table).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import asyncpg
import msgspec

from events.privacy import Keyring
from events.store import decode_record
from events.types import StoredEvent
from projections import approvals, consultations, patients
from projections.projector import _POISON, PARK_AFTER_ATTEMPTS  # its line between bad event and outage

FLUSH_ROWS = 5_000  # rows per table held before a COPY: the memory bound, with one group and a fetched chunk


@dataclasses.dataclass(frozen=True)
class Model:
    """One read model as the batch path sees it: its table and key columns, and its pure functions."""

    name: str
    table: str
    key_columns: tuple[str, ...]
    row_type: type[msgspec.Struct]
    key: Callable[[StoredEvent], Hashable | None]
    evolve: Callable[[Any, StoredEvent], Any]
    personal: bool = False  # whether its rows hold personal data: only then are events decrypted for it

    @property
    def columns(self) -> list[str]:
        """The row's fields: the table's columns, in the table's order."""
        return list(self.row_type.__struct_fields__)


MODELS: dict[str, Model] = {m.name: m for m in (
    Model(patients.NAME, "patients", ("business_id", "patient_id"), patients.PatientRow, patients.key,
          patients.evolve, personal=True),
    Model(consultations.NAME, "consultations", ("consultation_id",), consultations.ConsultationRow,
          consultations.key, consultations.evolve),
    Model(approvals.NAME, "approvals", ("consultation_id",), approvals.ApprovalRow, approvals.key,
          approvals.evolve),
)}


class Batch:
    """Rows, checkpoints and failures waiting to be written."""

    def __init__(self, tables: Iterable[str]) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in tables}
        self.checkpoints: list[tuple[str, str, int, int]] = []  # (projection, stream, version, position)
        self.failures: list[tuple[str, str, int, int, int, str, bool]] = []

    @property
    def full(self) -> bool:
        """Whether it is time to write."""
        return max((len(r) for r in self.rows.values()), default=0) >= FLUSH_ROWS or len(
            self.checkpoints) >= FLUSH_ROWS


class GroupFold:
    """Folds events group by group with `folded` models' evolve; also follows, per stream, how far each
    of `tracked` got (its checkpoint), and parks a (projection, stream) at its first poison event as
    the live projector would after its retries: what follows in that stream is not applied."""

    def __init__(self, folded: list[Model], tracked: list[str], keyring: Keyring, *,
                 skip: dict[tuple[str, str], int] | None = None, checkpoints: bool = True) -> None:
        self._folded, self._tracked, self._checkpoints = folded, tracked, checkpoints
        # Folds that keep no personal data read sealed fields as erased: no key is unwrapped, nothing
        # decrypted (a rebuild's pass over every stream for consultations and approvals).
        self._keyring = keyring if any(m.personal for m in folded) else None
        self._folded_names = {m.name for m in folded}
        self.skip: dict[tuple[str, str], int] = skip if skip is not None else {}  # → first version not applied
        self.batch = Batch(m.table for m in folded)
        self.events = 0
        self._group: object = None
        self._rows: dict[str, dict[Hashable, Any]] = {m.name: {} for m in folded}
        self._last: dict[str, tuple[str, int, int]] = {}  # projection → (stream, version, position) applied

    def feed(self, records: Iterable[asyncpg.Record], group_of: Callable[[asyncpg.Record], object]) -> None:
        """Fold a chunk of records, in group order; finished groups go to `batch`."""
        for record in records:
            group = group_of(record)
            if group != self._group:
                self.close_group()
                self._group = group
            self._feed_one(record)
            self.events += 1

    def _feed_one(self, record: asyncpg.Record) -> None:
        stream, version = record["stream_id"], record["stream_version"]
        if self._checkpoints:
            for name in self._tracked:
                self._last.setdefault(name, (stream, 0, 0))
        active = [name for name in self._tracked if self.skip.get((name, stream), version + 1) > version]
        if not active:
            return  # parked: not even decoded
        try:
            event = decode_record(record, self._keyring)
        except _POISON as error:
            for name in active:
                self._park(name, record, error)
            return
        for name in active:
            if name in self._folded_names and not self._evolve(MODELS[name], event, record):
                continue
            self._last[name] = (stream, version, record["position"])

    def _evolve(self, model: Model, event: StoredEvent, record: asyncpg.Record) -> bool:
        if (key := model.key(event)) is None:
            return True
        rows = self._rows[model.name]
        try:
            row = model.evolve(rows.get(key), event)
            if row is None:  # what the live writer refuses too: a decision for a row never seen
                raise LookupError(f"a decision arrived for a {model.table} row this projection has not seen")
        except _POISON as error:
            self._park(model.name, record, error)
            return False
        rows[key] = row
        return True

    def _park(self, name: str, record: asyncpg.Record, error: BaseException) -> None:
        stream = record["stream_id"]
        if (name, stream) in self.skip:
            return
        self.skip[name, stream] = record["stream_version"]
        # Type and constraint only, like the projector's record: a message could quote row data.
        self.batch.failures.append((name, stream, record["stream_version"], record["position"],
                                    PARK_AFTER_ATTEMPTS, type(error).__name__, True))

    def close_group(self) -> None:
        """Hand the current group's rows (and, per stream, checkpoints) to `batch`."""
        for model in self._folded:
            rows = self._rows[model.name]
            self.batch.rows[model.table] += [msgspec.structs.astuple(row) for row in rows.values()]
            rows.clear()
        if self._checkpoints:
            # None where nothing applied: a missing checkpoint means version 0 to the projector.
            self.batch.checkpoints += [(name, stream, version, position)
                                       for name, (stream, version, position) in self._last.items() if version]
            self._last.clear()

    def take(self) -> Batch:
        """What is waiting to be written; `batch` starts empty again."""
        taken, self.batch = self.batch, Batch(m.table for m in self._folded)
        return taken


def by_stream(record: asyncpg.Record) -> object:
    """The group of a record read in stream order."""
    return record["stream_id"]


def by_patient(record: asyncpg.Record) -> object:
    """The group of a submission read in patient order (the sort key of submissions_in_patient_order)."""
    return record["business_id"], record["patient_key"]


async def write(conn: asyncpg.Connection, batch: Batch, *, schema: str, prefix: str = "") -> int:
    """COPY a batch's rows (and its checkpoints and failures, when there are any) into `schema`."""
    written = 0
    for table, rows in batch.rows.items():
        if rows:
            model = next(m for m in MODELS.values() if m.table == table)
            await conn.copy_records_to_table(prefix + table, records=rows, columns=model.columns,
                                             schema_name=schema)
            written += len(rows)
    if batch.checkpoints:
        await conn.copy_records_to_table("projection_checkpoints", records=batch.checkpoints, schema_name=schema,
                                         columns=["projection", "stream_id", "version", "position"])
    if batch.failures:
        await conn.copy_records_to_table("projection_failures", records=batch.failures, schema_name=schema,
                                         columns=["projection", "stream_id", "version", "position", "attempts",
                                                  "error", "parked"])
    return written
