"""A real PostgreSQL for the tests, started from Debian's packages in a temporary folder, one per session.

`initdb` + `pg_ctl` of the newest /usr/lib/postgresql/*/bin (or of PATH) make a cluster in a fresh folder
under /tmp and start it on a free 127.0.0.1 port with its unix socket in that folder; the session's end
stops it with `pg_ctl stop -m fast` on that data folder (its own postmaster only) and deletes the folder.
PostgreSQL refuses to run as root: as root (CI) both run as the `postgres` user Debian's package creates,
through runuser, with the folder given to that user. Without the binaries the tests skip, but fail when
CI is set (`.ci/run` installs the `postgresql` package when `initdb` is missing).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "voxgate"  # the cluster's superuser; trust authentication on 127.0.0.1 (a test cluster only)
PASSWORD = "not-a-real-secret-7Q"  # given in URLs so the tests can check it is never printed or logged


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest Debian version first, then PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@dataclass
class Postgres:
    """A running test cluster."""

    port: int
    folder: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database (one per test keeps tests apart); returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL for the whole session."""
    bindir = find_binaries()
    if bindir is None:
        message = "PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    user = None
    if os.geteuid() == 0:  # initdb refuses root
        user = "postgres"
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            pytest.fail("running as root needs the 'postgres' user (Debian's postgresql package creates it)")
    folder = Path(tempfile.mkdtemp(prefix="voxgate-pg-"))
    if user:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    started = False
    try:
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                                  "--no-sync", "--no-instructions"], user),
                       check=True, capture_output=True, timeout=120)
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=60")
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                  "-o", options, "start"], user), check=True, capture_output=True, timeout=90)
        started = True
        yield Postgres(port, folder)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
        server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"could not start PostgreSQL: {detail}\n{server_log}")
    finally:
        if started:
            subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user),
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
