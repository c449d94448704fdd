"""The command line as a new user meets it: --version, an example in every --help, and where
`serve` listens when no flag says (comma-separated scopes: tests/integration/test_key_scopes.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.cli import build_parser, listen_address
from service.cli_examples import EXAMPLES, leaf_parsers
from service.settings import SettingsError


def test_every_command_has_an_example_in_its_help():
    leaves = leaf_parsers(build_parser())
    assert sorted(leaves) == sorted(EXAMPLES)
    for words, parser in leaves.items():
        assert parser.format_help().rstrip().endswith(EXAMPLES[words]), words


def test_version_prints_the_installed_version():
    done = subprocess.run([sys.executable, "-m", "service.cli", "--version"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0
    assert done.stdout.strip().startswith("intake ") and done.stdout.strip() != "intake unknown"


def address(argv: list[str], env: dict[str, str]) -> tuple[str, int]:
    args = build_parser().parse_args(["serve", *argv])
    return listen_address(args, env)


def test_serve_listens_where_flags_then_intake_port_then_port_say():
    assert address([], {}) == ("127.0.0.1", 8000)
    assert address([], {"PORT": "9000"}) == ("127.0.0.1", 9000)
    assert address([], {"PORT": "9000", "INTAKE_PORT": "9100", "INTAKE_HOST": "0.0.0.0"}) == ("0.0.0.0", 9100)
    assert address(["--port", "9200", "--host", "::1"], {"INTAKE_PORT": "9100", "PORT": "9000"}) == ("::1", 9200)


@pytest.mark.parametrize("env", [{"PORT": "http"}, {"INTAKE_PORT": "0"}, {"PORT": "70000"}])
def test_a_port_that_is_not_a_port_is_a_clear_error(env):
    with pytest.raises(SettingsError, match="port"):
        address([], env)


def test_loadtest_refuses_more_unique_than_total_as_a_usage_error(capsys):
    from service.cli import main
    with pytest.raises(SystemExit) as exited:
        main(["loadtest", "--business", "acme", "--key", "k", "--total", "5", "--unique", "6"])
    assert exited.value.code == 2
    assert "--unique must not exceed --total" in capsys.readouterr().err
