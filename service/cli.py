"""The `intake` command line. Exit codes: 0 success, 1 failure or failed check, 2 usage error.

This module parses; service/commands.py (and the process entry points it names) do the work.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
import uuid
from collections.abc import Callable, Mapping

from events.replay import BIGINT_MAX
from projections.projector import PROJECTIONS
from service import commands, integrity_command, privacy_command, rebuild_command, replay_command
from service.cli_examples import add_examples
from service.cli_integrations import add_partners, add_patients, add_webhooks, positive
from service.settings import Settings, SettingsError

_Commands = argparse._SubParsersAction  # noqa: SLF001  (argparse offers no public name for it)
_REBUILD = {"rebuild": rebuild_command.rebuild, "verify": rebuild_command.verify}
_PRIVACY = {"forget": privacy_command.forget, "encrypt-existing": privacy_command.encrypt_existing}


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (also read by the compose.yaml structure test)."""
    parser = argparse.ArgumentParser(prog="intake", description="Event-sourced consult intake.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"intake {_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True)
    _add_processes(subcommands)
    _add_projections(subcommands)
    migrate = subcommands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--check", action="store_true", help="exit 1 if the schema differs from sql/migrations")
    _add_businesses(subcommands)
    _add_keys(subcommands)
    _add_loadtest(subcommands)
    _add_events(subcommands)
    add_patients(subcommands)
    add_partners(subcommands)
    add_webhooks(subcommands)
    add_examples(parser)
    return parser


def _add_loadtest(subcommands: _Commands) -> None:
    load = subcommands.add_parser(
        "loadtest", help="send submissions with duplicates to any deployment; exit 2 if a duplicate was "
                         "not answered as a replay, 1 if --check finds other than --unique consultations")
    load.add_argument("--base-url", default="http://127.0.0.1:8000")
    load.add_argument("--business", required=True, help="the business slug the key belongs to")
    load.add_argument("--key", help="API key (default: INTAKE_API_KEY)")
    load.add_argument("--total", type=positive, required=True, help="submissions to send")
    load.add_argument("--unique", type=positive, required=True, help="how many of them are distinct")
    load.add_argument("--concurrency", type=positive, default=16)
    load.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    load.add_argument("--seed", type=int, help="make the shuffled plan reproducible")
    load.add_argument("--check", action="store_true", help="then count the run's consultations through the API")


def _version() -> str:
    try:
        return importlib.metadata.version("intake")
    except importlib.metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


def _add_processes(subcommands: _Commands) -> None:
    dev = subcommands.add_parser("dev", help="everything for a first run on one machine")
    dev.add_argument("--host", help="default: INTAKE_HOST, else 127.0.0.1")
    dev.add_argument("--port", type=int, help="default: INTAKE_PORT, else PORT, else 8000")
    dev.add_argument("--state-dir", default=".state", help="where embedded PostgreSQL/Redis keep data")
    serve = subcommands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="default: INTAKE_HOST, else 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: INTAKE_PORT, else PORT, else 8000")
    serve.add_argument("--workers", type=int, help="default: INTAKE_WORKERS, else one per usable CPU (at most 8)")
    subcommands.add_parser("worker", help="run the outbox relay and the projector workers")


def _add_projections(subcommands: _Commands) -> None:
    actions = subcommands.add_parser("projections", help="read models").add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="applied vs head position, lag, parked streams")
    actions.add_parser("sweep", help="catch up every stream whose projections lag the log")
    retry = actions.add_parser("retry", help="un-park parked streams and apply them again")
    retry.add_argument("projection", nargs="?", help="only this projection")
    _add_rebuild(actions)


def _add_rebuild(actions: _Commands) -> None:
    for action, help_text in (("rebuild", "rebuild read models from the log and swap them in, while live"),
                              ("verify", "compare read models with a fold of the log at the same log position")):
        parser = actions.add_parser(action, help=help_text)
        parser.add_argument("names", nargs="*", type=_projection_name, metavar="NAME",
                            help=f"a projection ({', '.join(PROJECTIONS)}); default: all")


def _projection_name(value: str) -> str:
    if value not in PROJECTIONS:
        raise argparse.ArgumentTypeError(f"unknown projection (choose from {', '.join(PROJECTIONS)})")
    return value


def _add_businesses(subcommands: _Commands) -> None:
    actions = subcommands.add_parser("businesses", help="manage businesses").add_subparsers(dest="action",
                                                                                            required=True)
    create = actions.add_parser("create", help="create a business")
    create.add_argument("slug")
    create.add_argument("--name", required=True)
    limits = actions.add_parser(
        "limits", help="show or set a business's own rate limits (per route class: submit, decide, read, admin)")
    limits.add_argument("slug")
    limits.add_argument("rules", nargs="*", metavar="CLASS=COUNT/SECONDSs", help="e.g. submit=500/1s")
    limits.add_argument("--reset", action="store_true", help="forget this business's own limits")


def _add_keys(subcommands: _Commands) -> None:
    actions = subcommands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = actions.add_parser("create", help="create an API key (shown once)")
    bound = create_key.add_mutually_exclusive_group(required=True)
    bound.add_argument("--business", help="the business slug the key is bound to")
    bound.add_argument("--admin", action="store_true", help="an admin key for every business")
    create_key.add_argument("--scopes", nargs="+", default=[],
                            help="scopes for a business key, space- or comma-separated")
    create_key.add_argument("--json", action="store_true", help="print JSON")
    revoke_help = f"revoke an API key (the row is kept for the audit trail); {commands.REVOCATION_BOUND}"
    revoke_key = actions.add_parser("revoke", help=revoke_help, description=revoke_help + ".")
    revoke_key.add_argument("key_id", type=uuid.UUID, help="the key_id printed by `keys create --json`")
    list_keys = actions.add_parser("list", help="list API keys: ids, scopes, revocations (never secrets)")
    list_keys.add_argument("--business", help="only the keys of this business slug")
    list_keys.add_argument("--json", action="store_true", help="print JSON")
    actions.add_parser("rotate-kek", help="rewrap every patient data key with the first key-encryption key "
                                          "of INTAKE_KEK_FILE / INTAKE_KEK (events are not touched)")
    actions.add_parser("generate-kek", help="print a new key-encryption key (base64) for INTAKE_KEK_FILE")


def listen_address(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, int]:
    """Flags win, then INTAKE_HOST / INTAKE_PORT, then PORT (what platforms set), then 127.0.0.1:8000."""
    host = args.host or env.get("INTAKE_HOST") or "127.0.0.1"
    raw = args.port if args.port is not None else (env.get("INTAKE_PORT") or env.get("PORT") or "8000")
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"INTAKE_PORT / PORT must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SettingsError(f"a port is 1-65535, got {port}")
    return host, port


def _add_events(subcommands: _Commands) -> None:
    actions = subcommands.add_parser("events", help="the event log").add_subparsers(dest="action", required=True)
    replay = actions.add_parser("replay", help="the log in position order, filtered; or the read models --as-of TIME",
                                description="Times are RFC 3339 with an offset; --since is inclusive, --until "
                                            "exclusive, positions inclusive.")
    replay.add_argument("--business", help="only this business (slug)")
    replay.add_argument("--stream", help="only this stream id")
    replay.add_argument("--consultation", type=uuid.UUID, help="only the events that name this consultation")
    replay.add_argument("--type", dest="types", action="append", default=[], type=replay_command.type_argument,
                        metavar="TYPE", help="only this event type (consult.submitted or consult.submitted.v1); repeatable")
    replay.add_argument("--from-position", type=_position, metavar="N")
    replay.add_argument("--to-position", type=_position, metavar="N")
    replay.add_argument("--since", type=replay_command.time_argument, metavar="TIME")
    replay.add_argument("--until", type=replay_command.time_argument, metavar="TIME")
    replay.add_argument("--as-of", type=replay_command.time_argument, metavar="TIME",
                        help="patients, consultations and approvals as they stood at TIME")
    replay.add_argument("--format", choices=("table", "jsonl"), help="default: table on a terminal, else jsonl")
    _add_integrity(actions)


def _add_integrity(actions: _Commands) -> None:
    """Tamper evidence: docs/INTEGRITY.md."""
    actions.add_parser("seal", help="sign a Merkle tree head over every committed event (nothing if none is new)")
    verify = actions.add_parser("verify", help="recompute every hash chain and seal; exit 1 naming the first problem")
    verify.add_argument("--from-seal", type=positive, metavar="N", help="check only what came after seal N")
    verify.add_argument("--against", metavar="FILE", help="seals exported earlier (JSONL) the log must still match")
    prove = actions.add_parser("prove", help="an inclusion proof of the event at POSITION, or --consistency, as JSON")
    prove.add_argument("position", nargs="?", type=_position, metavar="POSITION")
    prove.add_argument("--consistency", nargs=2, type=positive, metavar=("OLD_SIZE", "NEW_SIZE"),
                       help="that the seal of OLD_SIZE events is a prefix of the seal of NEW_SIZE")
    check = actions.add_parser("check-proof", help="check a proof offline, with no database")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--public-key", required=True, metavar="KEY", help="base64 Ed25519 public key, or a file")
    seals = actions.add_parser("seals", help="the seals")
    seals.add_argument("--export", action="store_true", required=True, help="write every seal as JSON lines")


def _position(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > BIGINT_MAX:
        raise argparse.ArgumentTypeError("expected a log position: an integer from 0 to 2^63-1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `intake` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "keys" and args.action == "create":
        args.scopes = [scope.strip() for item in args.scopes for scope in item.split(",") if scope.strip()]
    if args.command == "loadtest" and args.unique > args.total:
        parser.error("loadtest: --unique must not exceed --total")
    if args.command == "keys" and args.action == "create" and args.business and not args.scopes:
        parser.error("keys create --business needs --scopes")
    if args.command == "events" and args.action == "replay" and (problem := replay_command.usage_error(args)):
        parser.error(problem)
    if args.command == "events" and args.action == "prove" and (args.position is None) == (not args.consistency):
        parser.error("events prove: give a POSITION or --consistency OLD_SIZE NEW_SIZE, not both")
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "dev": _dev, "serve": _serve, "worker": _worker,
        "migrate": lambda a, s: asyncio.run(commands.migrate(a, s)),
        "businesses": lambda a, s: asyncio.run(commands.businesses(a, s)),
        "keys": lambda a, s: (privacy_command.print_new_kek(a, s) if a.action == "generate-kek" else
                              asyncio.run(privacy_command.rotate_kek(a, s) if a.action == "rotate-kek"
                                          else commands.keys(a, s))),
        "projections": lambda a, s: asyncio.run(
            _REBUILD[a.action](a, s) if a.action in _REBUILD else commands.projections(a, s)),
        "loadtest": _loadtest,
        "events": _events,
        "patients": lambda a, s: asyncio.run(_PRIVACY[a.action](a, s)),
        "partners": _webhooks, "webhooks": _webhooks,
    }
    try:
        return handlers[args.command](args, Settings.from_env())
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the CLI's one edge: a clear line, a traceback only on --debug
        if args.debug:
            raise
        print(f"intake: error: {error}", file=sys.stderr)
        return 1


# The process entry points import their servers lazily: `intake keys list` should not load uvicorn.
def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.runner import serve
    host, port = listen_address(args, os.environ)
    return serve(settings, host=host, port=port, workers=args.workers)


def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    # aiohttp, which the webhook sender needs, is a tenth of a second of every other command's start.
    from service import webhook_commands
    run = webhook_commands.partners_command if args.command == "partners" else webhook_commands.webhooks_command
    return asyncio.run(run(args, settings))


def _loadtest(args: argparse.Namespace, settings: Settings) -> int:
    from service.loadtest import run_command
    return asyncio.run(run_command(args))


def _events(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "check-proof":
        return integrity_command.check_proof(args)
    run = {"replay": replay_command.run, "seal": integrity_command.seal, "verify": integrity_command.verify,
           "prove": integrity_command.prove, "seals": integrity_command.seals}[args.action]
    return asyncio.run(run(args, settings))


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from service.worker import main as worker_main
    return worker_main(settings)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from service.dev import run_dev
    host, port = listen_address(args, os.environ)
    return run_dev(settings, host=host, port=port, state_dir=args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
