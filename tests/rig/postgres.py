"""A throw-away PostgreSQL cluster for tests: initdb + pg_ctl in a private temp dir.

* the cluster lives in a fresh temp dir (data, log, unix socket); it listens on that socket only
  (``listen_addresses=''``), or also on 127.0.0.1 with a free TCP port when ``tcp=True``;
* fsync, synchronous_commit and full_page_writes are off: the data is disposable;
* initdb and postgres refuse to run as uid 0: under root (CI containers) they run as the
  ``postgres`` user (created by the Debian package; ``PG_TEST_OS_USER`` to change) through
  ``runuser -u postgres --``, and the temp dir is chowned to that user;
* ``stop()`` / ``start()`` take the server down and up again (database outage tests);
  the cluster is always stopped by ``pg_ctl`` or, failing that, by the postmaster's own PID
  (from ``postmaster.pid``), also from an ``atexit`` hook if a test run is aborted.

Binaries: ``PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian keeps them off
PATH), else ``initdb`` on PATH. When they are missing the tests FAIL with the install command
(``scripts/install-deps.sh test``, which ``make test`` runs); set ``FRONTDESK_ALLOW_SKIP=1`` to
skip instead, honoured only when not running as root (root can install them).

Fixtures (wire them with ``pytest_plugins = ["tests.rig.postgres"]`` in the root conftest, or
import them into a test module): ``pg_server`` (one cluster per session), ``pg_database_factory``
(a function fixture returning ``make() -> url`` that creates a fresh empty database; all dropped
afterwards) and ``pg_url`` (one fresh database).

Nothing here imports the product.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PORT = 5432  # the socket lives in a private dir, so the default port number cannot clash
_live: set["PgCluster"] = set()
_live_lock = threading.Lock()


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the user to run them as) are missing."""


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        found.sort(key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _os_user() -> str | None:
    """The user to run the server as: None when we are not root."""
    return os.environ.get("PG_TEST_OS_USER", "postgres") if os.geteuid() == 0 else None


def _check_setup() -> Path:
    bindir = find_bindir()
    if bindir is None or not (bindir / "initdb").exists() or not (bindir / "pg_ctl").exists():
        raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; install them "
                            "with `scripts/install-deps.sh test` (Debian package postgresql) or "
                            "set PG_BINDIR")
    user = _os_user()
    if user is not None:
        if shutil.which("runuser") is None:
            raise PgUnavailable("running as root, but runuser is missing (util-linux)")
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise PgUnavailable(f"running as root, but there is no user {user!r} to run "
                                "PostgreSQL as (PG_TEST_OS_USER)") from None
    return bindir


def require_postgres() -> Path:
    """The bindir; otherwise fail the test (or skip it under FRONTDESK_ALLOW_SKIP=1, non-root)."""
    try:
        return _check_setup()
    except PgUnavailable as exc:
        if os.environ.get("FRONTDESK_ALLOW_SKIP") == "1" and os.geteuid() != 0:
            pytest.skip(str(exc))
        pytest.fail(f"{exc} (FRONTDESK_ALLOW_SKIP=1 skips instead, when not root)", pytrace=False)


def _free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("latin-1")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class PgCluster:
    """One throw-away cluster. `url` is its `postgres` database; `url_for(name)` any other."""

    def __init__(self, base: Path, bindir: Path, *, tcp_port: int | None = None) -> None:
        self.base = base
        self.bindir = bindir
        self.data = base / "data"
        self.log = base / "server.log"
        self.tcp_port = tcp_port
        self.port = tcp_port or PORT
        self._as = ["runuser", "-u", u, "--"] if (u := _os_user()) else []
        self.initdb_s = self.start_s = 0.0

    # -- addresses ---------------------------------------------------------------------------
    def url_for(self, database: str) -> str:
        if self.tcp_port:
            return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql+psycopg://postgres@/{database}?host={self.base}&port={self.port}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def connect(self, database: str = "postgres"):  # -> psycopg.Connection
        import psycopg
        host = "127.0.0.1" if self.tcp_port else str(self.base)
        return psycopg.connect(host=host, port=self.port, user="postgres", dbname=database,
                               autocommit=True, connect_timeout=5)

    # -- life cycle --------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._as + list(args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def init(self) -> None:
        t0 = time.perf_counter()
        r = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--no-locale", "-N", "--no-instructions")
        if r.returncode:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        self.initdb_s = time.perf_counter() - t0

    def start(self, timeout: float = 30) -> None:
        listen = "127.0.0.1" if self.tcp_port else ""
        opts = (f"-p {self.port} -c listen_addresses='{listen}' "
                f"-c unix_socket_directories='{self.base}' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        t0 = time.perf_counter()
        with _live_lock:
            _live.add(self)
        r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                      "-w", "-t", str(int(timeout)), "-o", opts, "start", timeout=timeout + 10)
        if r.returncode:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            self.stop()
            raise RuntimeError(f"pg_ctl start failed ({r.returncode}): {r.stderr.strip()}\n{tail}")
        self.start_s = time.perf_counter() - t0

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop the server (modes of pg_ctl: smart, fast, immediate); by PID if pg_ctl fails."""
        pid = self.pid
        if pid is not None:
            r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                          "-t", str(int(timeout)), "stop", timeout=timeout + 10)
            if r.returncode and _pid_alive(pid):
                _kill(pid)
        with _live_lock:
            _live.discard(self)

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop(mode="immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------
    def create_database(self, name: str | None = None) -> str:
        name = name or "t_" + uuid.uuid4().hex[:12]
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _kill(pid: int, grace_s: float = 5.0) -> None:
    """SIGQUIT (PostgreSQL's immediate shutdown), then SIGKILL: this PID only."""
    for sig, wait in ((signal.SIGQUIT, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
    for cluster in live:
        try:
            cluster.stop(mode="immediate", timeout=10)
        except Exception:  # noqa: BLE001 - best effort at exit
            if (pid := cluster.pid) is not None:
                _kill(pid)


def _base_dir(tmp_dir: str | os.PathLike[str] | None) -> Path:
    """A fresh private dir the server user can use, with a short enough socket path."""
    parent = tmp_dir or os.environ.get("PG_TEST_TMPDIR")
    user = _os_user()
    for candidate in ([parent] if parent else []) + [None]:
        base = Path(tempfile.mkdtemp(prefix="fdpg-", dir=candidate))
        if len(str(base / f".s.PGSQL.{PORT}.lock")) > 100:  # sun_path is 108 bytes
            shutil.rmtree(base, ignore_errors=True)
            continue
        if user is not None:
            shutil.chown(base, user)
            reach = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(base)],
                                   capture_output=True, timeout=10)
            if reach.returncode:  # e.g. under pytest's 0700 tmp_path: fall back to /tmp
                shutil.rmtree(base, ignore_errors=True)
                continue
        return base
    raise RuntimeError("no usable temp dir for the PostgreSQL test cluster")


@contextmanager
def pg_cluster(tmp_dir: str | os.PathLike[str] | None = None, *,
               tcp: bool = False) -> Iterator[PgCluster]:
    """A running throw-away cluster (`.url`, `.stop()`, `.start()`), destroyed on exit.

    `tmp_dir`: where to make its directory; under root, when the server user cannot reach it
    (pytest's tmp_path is 0700 root), the system temp dir is used instead.
    Raises PgUnavailable when the binaries are missing (see require_postgres for tests).
    """
    bindir = _check_setup()
    base = _base_dir(tmp_dir)
    cluster = PgCluster(base, bindir, tcp_port=_free_tcp_port() if tcp else None)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# -- pytest fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgCluster]:
    """One cluster for the test session (tests that stop it must start it again)."""
    require_postgres()
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_database_factory(pg_server: PgCluster) -> Iterator[Callable[[], str]]:
    """`make() -> url`: a fresh empty database per call, all dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        made.append(name)
        return pg_server.create_database(name)

    yield make
    if not pg_server.running:  # a test stopped it and failed before starting it again
        pg_server.start()
    for name in made:
        pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_database_factory: Callable[[], str]) -> str:
    """The URL of a fresh empty database on the session cluster."""
    return pg_database_factory()
