"""The drills' servers: `gateway serve` as an operator starts it, which a drill kills and
starts again, on a database prepared the way an operator prepares one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.conftest import (
    GATEWAY_BIN,
    LiveGateway,
    _wait_until_healthy,
    free_port,
    operator_env,
    parse_seed_keys,
)

LEASE_S = 2  # the drills' Idempotency-Key lease: retries take dead keys over within seconds


class Server:
    """`gateway serve` as an operator starts it, which the drill kills and starts again."""

    def __init__(self, gw: LiveGateway, port: int, *, worker: bool = False) -> None:
        self.gw = gw
        self.port = port
        self.worker = worker  # `serve`'s own background worker beside gunicorn
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.gw.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(GATEWAY_BIN),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    "2",
                    *([] if self.worker else ["--no-worker"]),
                ],
                cwd=self.gw.workdir,
                env=self.gw.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_healthy(self.process, self.gw.base_url, self.gw.log_path)

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: nothing runs its cleanup."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.kill()


def drill_gateway(
    backend: str, workdir: Path, url: str, **extra_env: str
) -> tuple[LiveGateway, int]:
    """A migrated, seeded database and the environment of a server on a free port, which the
    drill starts, kills and stops itself."""
    port = free_port()
    env = {**operator_env(workdir, url, port), "GATEWAY_IDEMPOTENCY_LEASE_S": str(LEASE_S)}
    gw = LiveGateway(
        backend=backend,
        workdir=workdir,
        env={**env, **extra_env},
        base_url=f"http://127.0.0.1:{port}",
        database_url=url,
        log_path=workdir / "server.log",
        cli_log_path=workdir / "cli.log",
    )
    gw.cli("db", "upgrade")
    gw.keys = parse_seed_keys(gw.cli("demo", "seed").stdout)
    return gw, port


class PostgresServer:
    """A PostgreSQL server of the drill's own (its own data directory and port, from the
    machine's PostgreSQL binaries), which the drill stops and starts without touching the
    server every other test talks to."""

    @staticmethod
    def binaries() -> Path | None:
        """The newest PostgreSQL server's binaries on this machine (Debian's layout)."""
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        return found[-1].parent if found else None

    def __init__(self) -> None:
        binaries = self.binaries()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = binaries
        # A directory of its own outside pytest's (which only root may enter): as root, the
        # `postgres` user runs the server, since PostgreSQL refuses to run as root.
        self.home = Path(tempfile.mkdtemp(prefix="gateway-drill-pg-"))
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.stops = 0
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.home, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stdout}{done.stderr}{log}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str) -> None:
        """`fast` ends every session and shuts down; `immediate` is a crash (recovery from the
        write-ahead log at the next start)."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)
        self.stops += 1

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.home, ignore_errors=True)
