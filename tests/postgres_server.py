"""A real PostgreSQL server (the Debian package `postgresql`, installed by `make test`) on
a free loopback port, with a password-protected role, so that store URLs carry a password
as they do in production.

PostgreSQL refuses to run as root, and the tests may run as root: then initdb and the
server run as the `postgres` system user (created by the Debian package), in a temporary
directory of their own (pytest's are private to root), which also holds the unix socket.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from weir.ports import free_port

ROLE = "weir"
DATABASE = "weir"


def _bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin, else the directory of `initdb` on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions and (versions[-1] / "postgres").exists():
        return versions[-1]
    initdb = shutil.which("initdb")
    if initdb is not None and (Path(initdb).resolve().parent / "postgres").exists():
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL is not installed: `make test` installs it (Debian package postgresql)"
    )


class PostgresServer:
    """Started and stopped by the tests (to show what happens while it is down); its port,
    data and password stay the same across restarts. `cleanup()` removes its directory."""

    def __init__(self, password: str) -> None:
        self.bin = _bin_dir()
        self.password = password
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="weir-postgres-"))
        if self.as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._databases = itertools.count(1)
        self._initdb()

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that run a PostgreSQL binary as its owner."""
        if not self.as_postgres:
            return {"cwd": self.directory}
        return {"cwd": self.directory, "user": "postgres", "group": "postgres", "extra_groups": []}

    def _initdb(self) -> None:
        done = subprocess.run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                "--auth-local",
                "trust",  # the superuser, over the socket in our private directory only
                "--auth-host",
                "scram-sha-256",  # over TCP, a password is needed
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            **self._run_as(),
        )
        if done.returncode != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.directory),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._run_as()
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with self._superuser():
                    break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log.read_text()}") from None
                time.sleep(0.05)
        self._create_role()
        return self

    def _superuser(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=2,
        )

    def _create_role(self) -> None:
        with self._superuser() as db:
            if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
                return
            db.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
            db.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def new_database(self) -> str:
        """The URL of a new, empty database owned by the role (one per test)."""
        name = f"test_{next(self._databases)}"
        with self._superuser() as db:
            db.execute(f"CREATE DATABASE {name} OWNER {ROLE} STRATEGY FILE_COPY")
        return self.url(name)

    def query(self, database: str, sql: str) -> list[Any]:
        """Rows of `sql`, run as the superuser (to look at what the store wrote)."""
        with (
            psycopg.connect(
                host=str(self.directory),
                port=self.port,
                user="postgres",
                dbname=database,
                autocommit=True,
            ) as db,
            db.execute(sql) as cursor,
        ):
            return cursor.fetchall()

    def stop(self) -> None:
        """A fast shutdown (SIGINT): clients are disconnected, as in a server restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_postgres(password: str) -> Iterator[PostgresServer]:
    """A started server, stopped and removed at the end (for fixtures)."""
    server = PostgresServer(password)
    try:
        yield server.start()
    finally:
        server.cleanup()
