"""Where `intake serve` spends its CPU under the bench's load: `python -m bench.profile`.

Starts the bench's durable PostgreSQL and `intake serve --workers 1`, drives it with the same
wrk script as target (d), samples it with py-spy (the `bench` extra) while wrk runs, and prints
the functions with the most samples: on-CPU at the top of the stack (self) and anywhere on it
(total). Only the GIL-holding samples count (`--gil`), so time spent waiting in the event loop
is not mistaken for work. One worker: its process is the one uvicorn runs the app in.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from bench import database, real_service
from bench.load import ensure_wrk, run_wrk
from bench.servers import VENV_BIN, running_server
from service.devstack import free_port

TOP = 25
SAMPLE_RATE = 250  # per second: enough samples in 10-20 s for a 1 % entry to be a few hundred


def _py_spy() -> str:
    found = VENV_BIN / "py-spy"
    if found.is_file():
        return str(found)
    if which := shutil.which("py-spy"):
        return which
    raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")


def _frame_name(frame: str) -> str:
    # raw frames read "function (path/module.py:line)"; drop the line so one function is one entry
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def top_functions(raw: str, top: int = TOP) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """Samples in total, and the `top` functions by self and by total share of them."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            anywhere[name] += count
    share = lambda c: [(name, 100 * n / max(samples, 1)) for name, n in c.most_common(top)]  # noqa: E731
    return samples, share(own), share(anywhere)


def profile(duration_s: int, warmup_s: int, out: Path, *, native: bool = False, clear: bool = False) -> str:
    """The raw (collapsed) py-spy profile of one serving worker under wrk's load; `clear`: personal
    fields kept in clear, as the bench's target (d')."""
    wrk, spy = ensure_wrk(), _py_spy()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as workdir:
        postgres = database.start_postgres(Path(workdir) / "postgres")
        try:
            url = database.create_database(postgres, "bench_profile")
            api_key = real_service.prepare(url)
            port = free_port()
            argv = real_service.serve_argv(port, 1)
            endpoint = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
            load = dict(api_key=api_key, target="real", workers=1)
            with running_server(argv, port=port, env=real_service.service_env(url, encrypt=not clear),
                                log_path=Path(workdir) / "serve.log") as server:
                run_wrk(wrk, endpoint, duration_s=warmup_s, **load)
                sampler = threading.Thread(target=subprocess.run, args=([
                    spy, "record", "--pid", str(server.pid), "--duration", str(duration_s), "--rate",
                    str(SAMPLE_RATE), "--format", "raw", "--gil",
                    # native stacks need the process paused while sampled (py-spy refuses --nonblocking)
                    *(["--native"] if native else ["--nonblocking"]),
                    "-o", str(out)],),
                    kwargs={"capture_output": True, "timeout": duration_s + 60})  # fmt: skip
                cpu = psutil.Process(server.pid)
                used_before = sum(cpu.cpu_times()[:2])
                sampler.start()
                measured = run_wrk(wrk, endpoint, duration_s=duration_s, **load)
                used = sum(cpu.cpu_times()[:2]) - used_before  # user + system seconds of the one worker
                sampler.join()
            # CPU time, not samples, per request: a sample counts while the process holds the GIL,
            # even descheduled by a neighbour's load; CPU time counts only what it ran.
            print(f"under profile: {measured.rps:,.0f} req/s, p50 {measured.p50_ms} ms, p99 {measured.p99_ms} ms,"
                  f" non-2xx {measured.non2xx}; CPU per request {used / max(measured.requests, 1) * 1e6:.0f} µs")
        finally:
            postgres.stop()
    return out.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds sampled (default 15)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before sampling (default 5)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/profile.txt"), help="raw profile file")
    parser.add_argument("--native", action="store_true", help="C frames too (py-spy --native)")
    parser.add_argument("--clear", action="store_true", help="personal fields in clear, as target (d')")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    options.output.parent.mkdir(exist_ok=True)
    raw = profile(options.duration, options.warmup, options.output, native=options.native, clear=options.clear)
    samples, own, anywhere = top_functions(raw)
    print(f"\n{samples:,} GIL-holding samples; raw profile in {options.output}")
    for title, rows in (("self", own), ("total", anywhere)):
        print(f"\ntop {len(rows)} by {title}:")
        for name, pct in rows:
            print(f"{pct:6.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
