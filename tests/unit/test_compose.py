"""compose.yaml and the Dockerfile, checked without Docker: their structure, and that every `intake …`
command they run is accepted by the real CLI parser (a renamed flag fails here, not at deploy time)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"postgres", "redis", "migrate", "api", "worker"}
# Commands that may run before their subcommand lands in service/cli.py. They are still checked
# (never skipped), by their own test below, which fails until the subcommand exists.
PENDING_SUBCOMMANDS = {"worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def argv(command: str | list[str] | None) -> list[str]:
    """A compose `command` (string or list form) as an argv list."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), command
    return list(command)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment` (mapping or list form) as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def intake_commands(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """{service: argv after the leading `intake`} for every service whose command runs intake."""
    found = {}
    for name, service in services.items():
        command = argv(service.get("command"))
        if command and command[0] == "intake":
            found[name] = command[1:]
    return found


def parses(args: list[str]) -> str | None:
    """None if the real `intake` parser accepts args, else why not."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exit_:
        return f"`intake {shlex.join(args)}` is rejected by service.cli.build_parser() (exit {exit_.code})"
    return None


def subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set().union(*(a.choices for a in actions))  # type: ignore[attr-defined]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def dockerfile_cmd() -> list[str]:
    """The final CMD as argv (exec form is JSON; shell form is split like a shell would)."""
    cmds = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    last = cmds[-1].strip()
    if last.startswith("["):
        value = json.loads(last)
        assert isinstance(value, list) and all(isinstance(part, str) for part in value), last
        return value
    return shlex.split(last)


# -- compose.yaml structure ---------------------------------------------------------------------


def test_compose_spec_has_no_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no `version:` key (it is obsolete)"


def test_the_five_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert SERVICES <= set(services), f"missing services: {sorted(SERVICES - set(services))}"


@pytest.mark.parametrize("name", ["postgres", "redis", "api"])
def test_healthchecks(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check and not check.get("disable"), f"{name} needs a healthcheck"
    assert check.get("test"), f"{name}'s healthcheck has no test"


def test_healthcheck_probes(services: dict[str, dict[str, Any]]) -> None:
    def probe(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return " ".join(test) if isinstance(test, list) else test

    assert "pg_isready" in probe("postgres")
    assert "redis-cli" in probe("redis") and "ping" in probe("redis")
    assert "/readyz" in probe("api")


def test_postgres_is_18_with_its_data_on_a_declared_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].split(":")[0] == "postgres" and postgres["image"].split(":")[1].startswith("18")
    declared = set(compose.get("volumes") or {})
    named = {}
    for volume in postgres.get("volumes") or []:
        source, target = (volume.split(":")[:2] if isinstance(volume, str) else (volume.get("source"), volume["target"]))
        if source and not source.startswith((".", "/", "~")):  # not a bind mount
            named[source] = target
    assert named, "postgres keeps its data on a named volume"
    assert set(named) <= declared, f"undeclared named volumes: {sorted(set(named) - declared)}"
    # 18+ images keep data in /var/lib/postgresql/18/docker; a mount at .../data makes them refuse to start.
    assert "/var/lib/postgresql" in named.values(), named


def test_redis_keeps_no_persistence(services: dict[str, dict[str, Any]]) -> None:
    command = argv(services["redis"].get("command"))
    assert command[command.index("--save") + 1] == "", "RDB snapshots must be off (--save \"\")"
    assert command[command.index("--appendonly") + 1] == "no", "AOF must be off (--appendonly no)"


def test_migrate_is_a_one_shot_intake_migrate(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert argv(migrate.get("command"))[:2] == ["intake", "migrate"]
    assert migrate.get("restart") == "no", 'migrate needs restart: "no" (quoted: bare no is YAML false)'
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_migrations_and_redis(services: dict[str, dict[str, Any]], name: str) -> None:
    depends_on = services[name].get("depends_on")
    assert isinstance(depends_on, dict), f"{name}.depends_on needs the long form (with conditions)"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["redis"]["condition"] == "service_healthy"


def test_api_and_worker_commands(services: dict[str, dict[str, Any]]) -> None:
    api = argv(services["api"].get("command"))
    assert api[:2] == ["intake", "serve"]
    assert api[api.index("--host") + 1] == "0.0.0.0"  # inside the container; the published port is loopback
    assert argv(services["worker"].get("command"))[:2] == ["intake", "worker"]


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_intake_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    env = environment(services[name])
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["INTAKE_ENV"] == "production"
    assert env["LOG_FORMAT"] == "json"


def test_production_secrets_are_required_and_never_defaulted(services: dict[str, dict[str, Any]]) -> None:
    # INTAKE_ENV=production: the API refuses to start without SECRETS_KEY, no process without INTAKE_KEK,
    # and seals need their key; compose must refuse to start rather than run on a committed default.
    for name in ("api", "worker"):
        env = environment(services[name])
        for variable in ("INTAKE_KEK", "SECRETS_KEY", "INTAKE_SEAL_KEY"):
            assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", env.get(variable, "")), f"{name} {variable}"


def test_no_password_is_committed(compose: dict[str, Any]) -> None:
    postgres_env = environment(compose["services"]["postgres"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:-[^}]+\}", postgres_env["POSTGRES_PASSWORD"]), (
        "POSTGRES_PASSWORD must come from the environment, with only a development default"
    )
    for name in ("migrate", "api", "worker"):
        env = environment(compose["services"][name])
        for variable in ("DATABASE_URL", "OWNER_DATABASE_URL"):
            if url := env.get(variable):
                assert re.match(r"postgresql://[^:]+:\$\{[A-Z_]+(:-[^}]*)?\}@", url), f"{name} {variable}: {url}"


def test_only_the_migration_connects_as_the_owner(services: dict[str, dict[str, Any]]) -> None:
    owner = environment(services["postgres"])["POSTGRES_USER"]

    def user(url: str) -> str:
        return url.split("://", 1)[1].split(":", 1)[0]

    assert user(environment(services["migrate"])["OWNER_DATABASE_URL"]) == owner
    assert "${POSTGRES_PASSWORD" in environment(services["migrate"])["OWNER_DATABASE_URL"]
    for name in ("migrate", "api", "worker"):
        env = environment(services[name])
        assert user(env["DATABASE_URL"]) != owner, f"{name}: the app must not connect as the owner"
        assert "${POSTGRES_PASSWORD" not in env["DATABASE_URL"], f"{name}: the app role has its own password"
    for name in ("api", "worker"):
        assert "OWNER_DATABASE_URL" not in environment(services[name]), f"{name} must not hold the owner's URL"


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_stop_grace_period_outlasts_the_shutdown_grace(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    grace_ms = int(environment(service).get("SHUTDOWN_GRACE_MS") or 10000)  # settings.py's default
    period = str(service.get("stop_grace_period", "10s"))  # Docker's default
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    seconds = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", period))
    assert seconds * 1000 > grace_ms, (
        f"{name}: stop_grace_period {period} must exceed SHUTDOWN_GRACE_MS={grace_ms}, "
        "or compose SIGKILLs the process mid-drain"
    )


def test_no_published_port_binds_every_interface(services: dict[str, dict[str, Any]]) -> None:
    published: dict[str, list[tuple[str, str]]] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip, target = str(port.get("host_ip", "")), str(port.get("target", ""))
            else:
                # "[host_ip:][host_port:]container_port[/proto]"; no host_ip means every interface.
                parts = str(port).split("/")[0].rsplit(":", 2)
                host_ip, target = (parts[0] if len(parts) == 3 else ""), parts[-1]
            assert host_ip.strip("[]") not in ("", "0.0.0.0", "::"), (
                f"{name} publishes {port!r} on every interface; bind it to 127.0.0.1"
            )
            published.setdefault(name, []).append((host_ip, target))
    assert ("127.0.0.1", "8000") in published.get("api", []), "the api publishes port 8000 on 127.0.0.1"


# -- every intake command parses ----------------------------------------------------------------


def test_compose_intake_commands_parse(services: dict[str, dict[str, Any]]) -> None:
    commands = intake_commands(services)
    assert {"migrate", "api", "worker"} <= set(commands), commands
    problems = [
        problem
        for args in commands.values()
        if not (args and args[0] in PENDING_SUBCOMMANDS)
        if (problem := parses(args))
    ]
    assert not problems, problems


@pytest.mark.parametrize("subcommand", sorted(PENDING_SUBCOMMANDS))
def test_pending_intake_subcommands_exist_and_parse(services: dict[str, dict[str, Any]], subcommand: str) -> None:
    """Fails until the subcommand is added to service/cli.py build_parser(); then checks its arguments."""
    uses = [args for args in intake_commands(services).values() if args and args[0] == subcommand]
    assert uses, f"compose.yaml no longer runs `intake {subcommand}`; drop it from PENDING_SUBCOMMANDS"
    assert subcommand in subcommands(), (
        f"compose.yaml runs `intake {subcommand}`, but service.cli.build_parser() has no `{subcommand}` "
        f"subcommand yet (it has: {', '.join(sorted(subcommands()))})"
    )
    problems = [problem for args in uses if (problem := parses(args))]
    assert not problems, problems


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_cmd_parses() -> None:
    command = dockerfile_cmd()
    assert command[:2] == ["intake", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert (problem := parses(command[1:])) is None, problem


def test_dockerfile_basics() -> None:
    instructions = dockerfile_instructions()
    base = next(args for instruction, args in instructions if instruction == "FROM")
    assert base.split()[0] == "python:3.11-slim"
    users = [args.split(":")[0] for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    healthchecks = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert healthchecks and "/livez" in healthchecks[-1] and "python" in healthchecks[-1]
    # sql/ is read next to the packages at run time: a non-editable install would lose it.
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert re.search(r"pip install (--no-deps )?-e \.", runs), "install the project in editable mode"
