"""Parsers of the command groups for patients' data and partner integration (`intake patients`,
`intake partners`, `intake webhooks`); service/cli.py builds the tree and dispatches."""

from __future__ import annotations

import argparse
import uuid

from service import replay_command

Commands = argparse._SubParsersAction  # noqa: SLF001  (argparse offers no public name for it)


def positive(text: str) -> int:
    """argparse's `type=` for a count: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_patients(subcommands: Commands) -> None:
    actions = subcommands.add_parser("patients", help="patients' personal data").add_subparsers(dest="action",
                                                                                                required=True)
    forget = actions.add_parser("forget", help="erase a patient: destroy their data keys and record patient.forgotten")
    forget.add_argument("--business", required=True, help="the business slug")
    forget.add_argument("--customer", required=True, help="the business's customer id of the patient")
    forget.add_argument("--reason", default="erasure request", help="why (recorded; no personal data here)")
    actions.add_parser("encrypt-existing", help="one-time: seal the personal fields of events written before "
                                                "encryption (as the owner; refused once the log is sealed)")


def add_partners(subcommands: Commands) -> None:
    actions = subcommands.add_parser("partners", help="partners that send signed status callbacks").add_subparsers(
        dest="action", required=True)
    for action, help_text in (("add", "register a partner; prints its first secret (once)"),
                              ("rotate", "add a secret (printed once); older ones verify until removed"),
                              ("remove", "remove one secret (--secret), or the partner")):
        parser = actions.add_parser(action, help=help_text)
        parser.add_argument("name", help="the partner's name in its callback URL")
        parser.add_argument("--business", required=True, help="the business slug")
        if action == "remove":
            parser.add_argument("--secret", type=uuid.UUID, help="only this secret (its id from `partners list`)")
    listing = actions.add_parser("list", help="partners and their secrets' ids (never secrets)")
    listing.add_argument("--business", help="only this business")


def add_webhooks(subcommands: Commands) -> None:
    actions = subcommands.add_parser("webhooks", help="outbound event webhooks").add_subparsers(
        dest="action", required=True)
    add = actions.add_parser("add", help="register an endpoint; prints its signing secret (once)")
    add.add_argument("--business", required=True)
    add.add_argument("--url", required=True)
    add.add_argument("--events", required=True, type=lambda text: [e.strip() for e in text.split(",") if e.strip()],
                     help="comma-separated: consult.submitted, consult.approved, consult.rejected, "
                          "partner.status_reported")
    actions.add_parser("list", help="endpoints (never secrets)").add_argument("--business")
    for action, help_text in (("disable", "stop delivering to an endpoint"),
                              ("rotate-secret", "a new secret (printed once); the old one co-signs for 24 h")):
        actions.add_parser(action, help=help_text).add_argument("endpoint_id", type=uuid.UUID)
    listed = actions.add_parser("deliveries", help="deliveries, newest first, with every attempt")
    listed.add_argument("--business")
    listed.add_argument("--failed", action="store_true", help="only dead-lettered or failing ones")
    listed.add_argument("--limit", type=positive, default=50)
    listed.add_argument("--json", action="store_true", help="one JSON object per line")
    again = actions.add_parser("redeliver", help="send again with the same webhook-id and a fresh schedule")
    target = again.add_mutually_exclusive_group(required=True)
    target.add_argument("delivery_id", nargs="?", type=positive, help="a delivery's id")
    target.add_argument("--since", type=replay_command.time_argument, metavar="TIME",
                        help="every settled delivery of events recorded since TIME (RFC 3339)")
    again.add_argument("--business", help="only this business's")
