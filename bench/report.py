"""Turn measurements into the stdout table, the JSON record and the PERFORMANCE.md snippet."""

from __future__ import annotations

from pathlib import Path

import msgspec

from bench.measurement import Measurement
from bench.projection import ProjectionRecord
from bench.projection import markdown as projection_markdown
from bench.rebuild import RebuildRecord
from bench.rebuild import markdown as rebuild_markdown
from bench.replay import ReplayRecord
from bench.replay import markdown as replay_markdown
from bench.rounds import markdown as rounds_markdown
from bench.sealing import SealRecord
from bench.sealing import markdown as seal_markdown
from bench.webhooks import WebhookRecord
from bench.webhooks import text as webhooks_text

RESULTS_DIR = Path(__file__).with_name("results")
LABELS = {
    "raw": "(a) raw PostgreSQL (pgbench)",
    "naive": "(b) naive endpoint",
    "ceiling": "(c) framework ceiling",
    "real": "(d) real service",
    "plaintext": "(d') real, personal data in clear",
    "peer": "(e) eventsourcing in-process",
}
HEADER = ("target", "workers", "req/s", "p50 ms", "p99 ms", "non-2xx", "rows written", "")


class RunRecord(msgspec.Struct, kw_only=True):
    """Everything one benchmark run produced, as written to bench/results/."""

    timestamp: str
    command: str
    duration_s: int
    warmup_s: int
    connections: int
    machine: dict[str, str | int]
    postgres: dict[str, str | bool]
    measurements: list[Measurement]
    ratios: dict[str, float | None]
    valid: bool
    projections: ProjectionRecord | None = None
    rebuild: RebuildRecord | None = None
    replay: ReplayRecord | None = None
    seal: SealRecord | None = None
    webhooks: WebhookRecord | None = None
    # Interleaved rounds (bench/rounds.py): each ratio as computed within each round; `ratios` holds their medians.
    round_ratios: dict[str, list[float]] = {}


def _note(m: Measurement) -> str:
    if m.unavailable is not None:
        return f"unavailable: {m.unavailable}"
    notes = []
    if m.errors:
        notes.append(f"INVALID: {m.errors} failed requests ({_error_detail(m)})")
    if m.unstored:
        notes.append(f"INVALID: {m.unstored} acknowledged but not stored")
    return "; ".join(notes)


def _error_detail(m: Measurement) -> str:
    sockets = {k: v for k, v in m.socket_errors.items() if v}
    statuses = {k: v for k, v in m.status_counts.items() if not k.startswith("2")}
    return ", ".join(f"{k}: {v}" for k, v in {**statuses, **sockets}.items()) or "see error_sample"


def _cells(m: Measurement) -> tuple[str, ...]:
    workers = "-" if m.workers is None else str(m.workers)
    label = LABELS[m.target] + ("" if m.round is None else f", round {m.round}")
    if m.unavailable is not None:
        return (label, workers, "-", "-", "-", "-", "-", _note(m))
    rows = "-" if m.rows_written is None else f"{m.rows_written:,}"
    return (
        label, workers, f"{m.rps:,.0f}", f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}",
        str(m.non2xx), rows, _note(m),
    )  # fmt: skip


def text_table(measurements: list[Measurement]) -> str:
    """A fixed-width table for the terminal."""
    rows = [HEADER, *(_cells(m) for m in measurements)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths[:-1]))
    return "\n".join(lines)


def ratio_lines(result: dict[str, float | None]) -> list[str]:
    return [f"{key}: {'n/a' if value is None else f'{value:.2f}'}" for key, value in result.items()]


def markdown(record: RunRecord) -> str:
    """A section ready to paste into docs/PERFORMANCE.md."""
    machine = ", ".join(f"{k} {v}" for k, v in record.machine.items())
    lines = [f"### Benchmark run {record.timestamp}", "", f"Command: `{record.command}`", ""]
    if record.measurements:
        lines += _submission_lines(record, machine)
    else:  # only the read-side parts ran
        lines.append(f"PostgreSQL {record.postgres['version']} with fsync on, on the same machine ({machine}).")
    if record.projections is not None:
        lines += ["", projection_markdown(record.projections)]
    if record.replay is not None:
        lines += ["", replay_markdown(record.replay)]
    if record.seal is not None:
        lines += ["", seal_markdown(record.seal)]
    if record.rebuild is not None:
        lines += ["", rebuild_markdown(record.rebuild)]
    if record.webhooks is not None:
        lines += ["", webhooks_text(record.webhooks)]
    if not record.valid:
        lines += ["", "**Not a valid result: some measurements failed requests or were unavailable.**"]
    return "\n".join(lines)


def _submission_lines(record: RunRecord, machine: str) -> list[str]:
    rows = ["| " + " | ".join(cell or " " for cell in _cells(m)) + " |" for m in record.measurements]
    return [
        f"{record.connections} connections (wrk -t2, fresh Idempotency-Key and customer per request),"
        f" {record.duration_s} s per measurement after a {record.warmup_s} s warm-up;"
        f" PostgreSQL {record.postgres['version']} with fsync on, on the same machine ({machine}).",
        "",
        *_round_lines(record),
        "| " + " | ".join(HEADER[:-1]) + " | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        "Throughput ratios (medians of the per-round ratios): "
        + ("; ".join(ratio_lines(record.ratios)) or "none (a ratio needs (d) and its baseline in one round)") + ".",
        "",
        "(a) pgbench `-c 64 -j 2 -M prepared`: BEGIN, event INSERT, outbox INSERT, COMMIT."
        " (b) Litestar + asyncpg, one plain transaction per request, 32 pooled connections in"
        " total split across workers. (c) the same route with no database. (d) `intake serve`"
        " with its default settings. Rows written: event rows the database gained during the"
        " measured window; in-flight requests at the cutoff are stored but not counted, so it"
        " may exceed the 2xx count, never fall short of it. wrk, the servers and PostgreSQL"
        " share the machine's cores.",
    ]


def _round_lines(record: RunRecord) -> list[str]:
    if not record.round_ratios:
        return []
    rounds = max(m.round or 0 for m in record.measurements)
    return [f"Interleaved in {rounds} rounds (b, c, d at each worker count, then (e) the peer); medians over"
            " rounds, and each ratio computed within each round (d/peer: intake over HTTP ÷ eventsourcing"
            " in-process, 16 threads):", "",
            *rounds_markdown(record.measurements, record.round_ratios, LABELS), "", "Every measurement:", ""]


def write_json(record: RunRecord) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{record.timestamp.replace(':', '')}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n")
    return path
