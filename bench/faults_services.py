"""Throw-away PostgreSQL and Redis for bench/faults.py, and the processes it starts.

Each lives in the script's temporary directory on a free loopback port, so the script may stop,
pause and kill them: never the shared PostgreSQL (5432) or Redis (6379). Every process is started
in its own session and ended by its process group id when the script ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Process:
    """A child in its own session, logging to a file."""

    def __init__(self, name: str, command: list[str], *, env: dict[str, str], log: Path, cwd: Path = BASE_DIR) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Signal the whole process group: a worker's pool outlives its main process for a while."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def tree(self) -> list[int]:
        """This process and its descendants (Linux /proc)."""
        found, pending = [], [self.popen.pid]
        while pending:
            pid = pending.pop()
            found.append(pid)
            try:
                pending += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                continue
        return found

    def client_ports(self) -> set[int]:
        """Local ports of the TCP sockets this process tree holds open (Linux /proc)."""
        inodes = set()
        for pid in self.tree():
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Redis:
    """redis-server on a fixed free port. `stop()` saves a snapshot that `start()` loads, as a
    Redis with persistence (docker-compose's appendonly) keeps the queue across a restart."""

    def __init__(self, *, root: Path, port: int, logs: Path) -> None:
        self.root, self.port, self.logs = root, port, logs
        self.process: Process | None = None
        self.generation = 0

    def start(self, *, fresh: bool = False) -> None:
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.root), "--dbfilename", "dump.rdb", "--daemonize", "no",
        ]  # fmt: skip
        self.generation += 1
        self.process = Process(f"redis-{self.generation}", command, env=dict(os.environ), log=self.logs / "redis.log")
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline or not self.process.alive():
                raise RuntimeError(f"redis-server did not start:\n{self.process.log_text()[-2000:]}")
            time.sleep(0.05)

    def ping(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=5, check=False
        )
        return result.stdout.strip() == "PONG"

    def stop(self) -> None:
        """A clean stop that keeps the data (SHUTDOWN SAVE writes the snapshot even with save "")."""
        if self.process is None or not self.process.alive():
            return
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "save"], capture_output=True, timeout=10)
        try:
            self.process.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def pause(self) -> None:
        self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGCONT)
            self.process.stop()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        found = [path] if (path := shutil.which(name)) else []
    if not found:
        raise RuntimeError(f"{name} not found (looked in /usr/lib/postgresql/*/bin and PATH)")
    return found[-1]


class Postgres:
    """A PostgreSQL cluster of the script's own (initdb + pg_ctl), trust auth on 127.0.0.1 only.

    As root, initdb refuses to run: the cluster then belongs to the `postgres` user (runuser)."""

    def __init__(self, *, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, command: list[str], *, timeout_s: float = 120) -> None:
        result = subprocess.run(
            [*self.as_user, *command], cwd=self.root, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed:\n{result.stdout}\n{result.stderr}")

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self.start()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
