"""An example for every `intake` command's --help, kept in one table so none is forgotten
(tests/unit/test_cli.py fails for a command without one)."""

from __future__ import annotations

import argparse

EXAMPLES = {
    "dev": "intake dev                      # embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set",
    "serve": "PORT=8080 intake serve --workers 2   # --host/--port win over INTAKE_HOST/INTAKE_PORT, then PORT",
    "worker": "WORKER_HEALTH_PORT=9101 intake worker",
    "migrate": "OWNER_DATABASE_URL=postgresql://owner@db/intake intake migrate --check",
    "businesses create": "intake businesses create acme --name 'Acme Telehealth'",
    "businesses limits": "intake businesses limits acme submit=500/1s read=2000/1s   # --reset: the defaults again",
    "keys create": "intake keys create --business acme --scopes submissions:write,consultations:read --json",
    "keys revoke": "intake keys revoke 0b6f7c1e-5f1d-4c8e-9a55-2b1f0d7c9e10",
    "keys list": "intake keys list --business acme --json",
    "keys rotate-kek": "INTAKE_KEK_FILE=/etc/intake/kek intake keys rotate-kek   # new key on the file's first line",
    "keys generate-kek": "intake keys generate-kek > /etc/intake/kek && chmod 600 /etc/intake/kek",
    "patients forget": "intake patients forget --business acme --customer cus_123 --reason 'GDPR art. 17 request'",
    "patients encrypt-existing": "OWNER_DATABASE_URL=postgresql://owner@db/intake intake patients encrypt-existing",
    "projections status": "intake projections status   # exit 1 while a stream is parked",
    "projections sweep": "intake projections sweep",
    "projections retry": "intake projections retry consultations",
    "projections rebuild": "OWNER_DATABASE_URL=postgresql://owner@db/intake intake projections rebuild approvals",
    "projections verify": "intake projections verify   # exit 1 listing differing rows by key and column",
    "events replay": ("intake events replay --business acme --type consult.decided --since 2026-12-01T00:00:00Z "
                      "--format jsonl | head   # --as-of TIME: the read models as they stood then"),
    "events seal": "INTAKE_SEAL_KEY_FILE=/run/secrets/seal.key intake events seal",
    "events verify": "intake events verify --against seals-2026-12.jsonl   # --from-seal 41: only what came after",
    "events prove": "intake events prove 1234 > proof.json   # --consistency 1000 2000: one seal extends another",
    "events check-proof": "intake events check-proof proof.json --public-key \"$(cat seal.pub)\"   # no database",
    "events seals": "intake events seals --export > seals-2026-12.jsonl",
    "partners add": "intake partners add pharmacy --business acme   # prints whsec_… once",
    "partners rotate": "intake partners rotate pharmacy --business acme   # the old secret verifies until removed",
    "partners list": "intake partners list --business acme",
    "partners remove": "intake partners remove pharmacy --business acme --secret 0b6f7c1e-5f1d-4c8e-9a55-2b1f0d7c9e10",
    "webhooks add": ("intake webhooks add --business acme --url https://shop.example/hooks/intake "
                     "--events consult.approved,consult.rejected"),
    "webhooks list": "intake webhooks list --business acme",
    "webhooks disable": "intake webhooks disable 0b6f7c1e-5f1d-4c8e-9a55-2b1f0d7c9e10",
    "webhooks rotate-secret": "intake webhooks rotate-secret 0b6f7c1e-5f1d-4c8e-9a55-2b1f0d7c9e10",
    "webhooks deliveries": "intake webhooks deliveries --business acme --failed",
    "webhooks redeliver": "intake webhooks redeliver 42   # or: --since 2026-12-01T00:00:00Z",
    "loadtest": ("intake loadtest --base-url http://127.0.0.1:8000 --business demo --key ik_… "
                 "--total 200 --unique 50 --concurrency 50 --check"),
}


def leaf_parsers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command's parser, by its words (`keys create`)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # noqa: SLF001  (argparse has no public walk of its tree)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, child in action.choices.items():
                found.update(leaf_parsers(child, f"{path} {name}".strip()))
    return found or {path: parser}


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Put each command's example at the end of its --help, as written (no re-wrapping)."""
    for words, leaf in leaf_parsers(parser).items():
        if words in EXAMPLES:
            leaf.epilog = f"example:\n  {EXAMPLES[words]}"
            leaf.formatter_class = argparse.RawDescriptionHelpFormatter
