"""A real PostgreSQL server for the tests, started from the installed server binaries.

One server per test session (``pg_server``), on a temporary data directory and a free
loopback port, with trust authentication (loopback only, so nothing outside this machine
can reach it). Each test that needs a database gets a new one from it (``pg_database``),
so tests never see each other's rows.

PostgreSQL refuses to run as root. CI runs as root, so when we are root the data
directory is handed to an unprivileged account (``postgres`` when the server package
created it, else ``nobody``) and ``initdb``/``postgres`` run as that account.

When the server cannot start, the tests that need it are skipped on a developer's
machine and fail under ``CI=true``: CI must never pass by testing nothing on PostgreSQL.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

__all__ = ["PgServer", "find_pg_bin", "pg_database", "pg_server", "start_pg_server"]


def find_pg_bin() -> str | None:
    """The directory of ``initdb``/``pg_ctl``: ``EMDASH_PG_BIN``, else the newest
    ``/usr/lib/postgresql/<major>/bin``, else whatever ``PATH`` has."""
    explicit = os.environ.get("EMDASH_PG_BIN")
    if explicit:
        return explicit
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("initdb")
    return os.path.dirname(on_path) if on_path else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


@dataclass
class PgServer:
    """A running server: where it is and how to stop it."""

    bin_dir: str
    root: str
    port: int
    user: str = "emdash"
    _account: pwd.struct_passwd | None = None
    _proc: subprocess.Popen[bytes] | None = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        acc = self._account
        return subprocess.run(
            [os.path.join(self.bin_dir, argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=acc.pw_uid if acc else None,
            group=acc.pw_gid if acc else None,
            extra_groups=[] if acc else None,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )

    def start(self) -> None:
        data = os.path.join(self.root, "data")
        init = self._run(
            "initdb",
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        # Loopback only; the socket directory is our temporary one (not /var/run). fsync
        # off: a test server's data does not need to survive a power cut.
        opts = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.root}'\nfsync = off\n"
            "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
        )
        # The options go to postgresql.auto.conf, so a restart (start_again) keeps them.
        with open(os.path.join(data, "postgresql.auto.conf"), "a") as conf:
            conf.write(opts)
        self.start_again()

    def start_again(self) -> None:
        """Start the server (again) on its data directory and port, and wait until it
        accepts connections.

        ``postgres`` runs as our child (not daemonized by pg_ctl) and is told to quit
        when this process dies, however it dies: a test run that is killed never leaves
        a server running on the machine."""
        acc = self._account
        log = open(os.path.join(self.root, "log"), "ab")  # noqa: SIM115 - the child's
        try:
            self._proc = subprocess.Popen(
                [os.path.join(self.bin_dir, "postgres"), "-D", os.path.join(self.root, "data")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                user=acc.pw_uid if acc else None,
                group=acc.pw_gid if acc else None,
                extra_groups=[] if acc else None,
                cwd=self.root,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
                preexec_fn=_quit_with_parent,  # noqa: PLW1509 - only sets the death signal
            )
        finally:
            log.close()
        import psycopg

        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return
            except psycopg.OperationalError as exc:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"postgres did not start: {exc} {self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.root, "log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` at the end of a session, ``fast`` to start it
        again later with every commit kept (the test server does not fsync)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _quit_with_parent() -> None:
    """In the server's child process, before exec: SIGQUIT (an immediate shutdown) when
    the process that started it dies. Set after the switch of user, which would clear it."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGQUIT, 0, 0, 0)


def start_pg_server() -> PgServer:
    """Start a server (raises RuntimeError with the reason when it cannot)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb) found; set EMDASH_PG_BIN")
    account = _server_account()
    root = tempfile.mkdtemp(prefix="emdash-pg-")
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PgServer(bin_dir=bin_dir, root=root, port=_free_port(), _account=account)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"PostgreSQL is required under CI and could not start: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'emdash[postgres]')")
    try:
        server = start_pg_server()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(str(exc))
        raise  # unreachable: _unavailable raises
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty database on the session's server (dropped afterwards)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
