"""Host test fixtures: private mosquitto per test, SQLite and PostgreSQL ledgers, a registered terminal."""
from __future__ import annotations

import os
import subprocess
import uuid
from typing import Iterator, List

import pytest

from roampos.host import db as dbm, registry
from roampos.host.handler import Handler
from hostkit import MID, SERIAL, TID, TMK, HostEnv, free_port, wait_port

MOSQUITTO = "/usr/sbin/mosquitto"
# Empty counts as unset: `make test` passes on what services.sh printed, which may be nothing.
PG_URL = os.environ.get("ROAMPOS_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/test"
SESSION = uuid.uuid4().hex[:8]
_schemas: List[str] = []


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: starts `roampos host` processes (deselect with -m 'not slow')")


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[str]:
    """A private mosquitto on a free port (one per test: no retained or session state leaks)."""
    if not os.path.exists(MOSQUITTO):
        pytest.skip(f"{MOSQUITTO} not installed (make setup installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"max_inflight_messages 0\nmax_queued_messages 10000\nset_tcp_nodelay true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def _pg_available() -> bool:
    return dbm.pg_reachable(PG_URL)


_PG = None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    global _PG
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    if _PG is None:
        _PG = _pg_available()
    if not _PG:
        if os.environ.get("ROAMPOS_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required (ROAMPOS_REQUIRE_PG=1) but {PG_URL} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    schema = f"rp_{SESSION}_{len(_schemas)}"
    _schemas.append(schema)
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _schemas:
        return
    try:
        import psycopg
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in _schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
    except Exception:
        pass


@pytest.fixture
def db(db_url):
    d = dbm.connect(db_url)
    registry.add_terminal(d, TID, SERIAL, MID, "Roaming Noodles", "48021000", "6222020000000001",
                          "310000", {"310000": "88 Nanjing Rd, Shanghai", "440300": "Booth 7, Futian"},
                          TMK.hex())
    registry.grant_region(d, TID, "440300", "2020-01-01", "2099-12-31")
    registry.grant_region(d, TID, "330100", "2020-01-01", "2099-12-31")
    yield d
    d.close()


@pytest.fixture
def env(mosquitto, db_url, db) -> Iterator[HostEnv]:
    e = HostEnv(mosquitto, db_url, db)
    yield e
    e.close()


@pytest.fixture
def handler(db) -> Handler:
    return Handler(db)
