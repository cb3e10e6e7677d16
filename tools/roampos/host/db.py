"""Ledger database: one schema for SQLite and PostgreSQL, URL parsing, reference-data seeding."""
from __future__ import annotations

import csv
import fcntl
import os
import re
import sqlite3
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, List, Optional, Sequence
from urllib.parse import parse_qs, urlparse, urlunparse

from .. import __file__ as _package_file

if TYPE_CHECKING:
    from .vault import Vault

__all__ = ["Database", "DatabaseError", "connect", "default_url", "DATA_DIR", "read_csv", "rrn_id"]

# From the package, not this file: compiled (roampos.accel), this module lives outside the tree.
DATA_DIR = Path(_package_file).resolve().parents[1] / "data"

# Unique constraints carry idempotency: a redelivered or replayed message cannot add a row.
# Every index is written by every ledger row, so there are only those the hot path needs: no index
# on rrn (an RRN is its row's id, see rrn_id) and only refunds and voids in txns_refs (a sale's
# orig_rrn is empty). Both were one b-tree insert more per authorization.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (
  merchant_id TEXT PRIMARY KEY, name TEXT NOT NULL, acquirer_code TEXT NOT NULL,
  settlement_account TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (
  terminal_id TEXT PRIMARY KEY, serial TEXT NOT NULL UNIQUE,
  merchant_id TEXT NOT NULL REFERENCES merchants(merchant_id),
  home_region TEXT NOT NULL, addresses TEXT NOT NULL, tmk TEXT NOT NULL,
  tpk TEXT, tak TEXT, tdk TEXT, keys_at BIGINT, signon_ref TEXT,
  blocked INTEGER NOT NULL DEFAULT 0, location_policy TEXT NOT NULL DEFAULT 'decline',
  last_seen BIGINT, firmware TEXT, signal INTEGER, seen_region TEXT, online INTEGER,
  params_version BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS grants (
  terminal_id TEXT NOT NULL REFERENCES terminals(terminal_id), region TEXT NOT NULL,
  valid_from TEXT NOT NULL, valid_to TEXT NOT NULL, PRIMARY KEY (terminal_id, region));
CREATE TABLE IF NOT EXISTS regions (
  code TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL, utc_offset_min INTEGER NOT NULL,
  mcc TEXT NOT NULL, pin_threshold BIGINT NOT NULL, txn_limit BIGINT NOT NULL,
  daily_card_limit BIGINT NOT NULL, daily_terminal_limit BIGINT NOT NULL,
  report_threshold BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS fees (
  region TEXT NOT NULL, method TEXT NOT NULL, bps INTEGER NOT NULL, cap BIGINT NOT NULL,
  PRIMARY KEY (region, method));
CREATE TABLE IF NOT EXISTS cells (
  mcc INTEGER NOT NULL, mnc TEXT NOT NULL, lac_from INTEGER NOT NULL, lac_to INTEGER NOT NULL,
  region TEXT NOT NULL, PRIMARY KEY (mcc, mnc, lac_from));
CREATE TABLE IF NOT EXISTS txns (
  id {serial} PRIMARY KEY, terminal_id TEXT NOT NULL, batch_no TEXT NOT NULL, stan TEXT NOT NULL,
  kind TEXT NOT NULL, mti TEXT NOT NULL, proc TEXT NOT NULL, tx_time TEXT NOT NULL,
  amount BIGINT NOT NULL, currency TEXT NOT NULL, region TEXT NOT NULL, method TEXT NOT NULL,
  merchant_id TEXT NOT NULL, masked_pan TEXT NOT NULL, card_hash TEXT NOT NULL,
  rc TEXT NOT NULL, status TEXT NOT NULL, rrn TEXT NOT NULL, auth_code TEXT NOT NULL,
  orig_rrn TEXT NOT NULL DEFAULT '', fee BIGINT NOT NULL DEFAULT 0, flags TEXT NOT NULL DEFAULT '',
  location TEXT NOT NULL DEFAULT '', local_date TEXT NOT NULL, created BIGINT NOT NULL,
  uploaded INTEGER NOT NULL DEFAULT 0, response BYTEA,
  UNIQUE (terminal_id, batch_no, stan, kind));
CREATE INDEX IF NOT EXISTS txns_card ON txns (card_hash, created);
DROP INDEX IF EXISTS txns_daily;
DROP INDEX IF EXISTS txns_rrn;
DROP INDEX IF EXISTS txns_orig;
CREATE INDEX IF NOT EXISTS txns_refs ON txns (orig_rrn) WHERE orig_rrn<>'';
CREATE TABLE IF NOT EXISTS batches (
  terminal_id TEXT NOT NULL, batch_no TEXT NOT NULL, region TEXT NOT NULL, status TEXT NOT NULL,
  settled_date TEXT, sales_count INTEGER, sales_amount BIGINT, refund_count INTEGER,
  refund_amount BIGINT, PRIMARY KEY (terminal_id, batch_no));
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pin_tries (card_hash TEXT PRIMARY KEY, tries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rrn_seq (id {serial} PRIMARY KEY, terminal_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS daily_totals (
  scope TEXT NOT NULL, subject TEXT NOT NULL, region TEXT NOT NULL, local_date TEXT NOT NULL,
  amount BIGINT NOT NULL, PRIMARY KEY (scope, subject, region, local_date)) {without_rowid};
"""


def rrn_id(rrn: str) -> int:
    """The id of the ledger row an RRN names: Handler._store makes a row's RRN its id in 12 digits,
    so a lookup by RRN is one by primary key (queries keep `rrn=?` as well). 0, no row, otherwise."""
    return int(rrn) if len(rrn) == 12 and rrn.isdigit() else 0


class DatabaseError(RuntimeError):
    """The database is unreachable or failed; the message stays unacknowledged."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """The file (or ":memory:") of a SQLite URL; a bare path is taken as it is."""
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else url


class _LazySavepoint:
    """A nested transaction inside a worker's group with lazy savepoints: no SQL. A block that fails
    after it wrote, or after a statement failed, marks the transaction dirty (Database.dirty)."""
    __slots__ = ("db", "writes", "errors")

    def __init__(self, db: "Database"):
        self.db = db

    def __enter__(self) -> "Database":
        db = self.db
        self.writes, self.errors = db.writes, db.statement_errors
        db._depth += 1
        return db

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        db = self.db
        db._depth -= 1
        if kind is not None and (db.writes != self.writes or db.statement_errors != self.errors):
            db.dirty = True
        return False


def redact_url(url: str) -> str:
    """The URL as logs and messages may show it: without its password."""
    u = urlparse(url)
    if u.password:
        return url.replace(":" + u.password + "@", ":***@")
    return url


def default_url() -> str:
    return os.environ.get("ROAMPOS_DB") or "sqlite:///" + os.path.abspath("roampos-host.db")


def read_csv(name: str) -> List[dict]:
    with open(DATA_DIR / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


class Database:
    """Thin wrapper: '?' placeholders everywhere, translated for psycopg."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.create = create       # False: open an existing ledger only (reports): create no schema
        self.kind = "pg" if is_postgres(url) else "sqlite"
        self._conn: Any = None
        self._depth = 0
        self._lockfile: Any = None
        self._next_id: Optional[int] = None   # SQLite: next txns id while this process holds the write lock
        self._id_pool: List[int] = []          # PostgreSQL: ids drawn from the sequence in blocks
        self._card_locks: set = set()           # PostgreSQL: card lock keys this transaction holds
        self._vault: Any = None
        # Worker connections (defer_sync): commits are made durable by a WalSync thread, after the
        # write lock is released; commit_seq is the last commit's number for wal.done()/wait().
        self._defer = False
        self.wal: Any = None
        self.commit_seq = 0
        # SQLite: while another process holds the write lock, called between tries to take it for as
        # long as it returns True (a worker answers its groups whose sync returns meanwhile: queued
        # on the lock, they would wait for the other writer's commit too).
        self.lock_wait: Optional[Callable[[], bool]] = None
        # Lazy savepoints (a worker's group): nested transactions issue no SQL. A block that fails
        # after it wrote, or after a statement failed (PostgreSQL then refuses the rest of the
        # transaction), marks the transaction `dirty`; the worker rolls the group back and handles
        # it again with real savepoints. Failures are rare, so most groups save two statements
        # (round trips, on PostgreSQL) per message.
        self.lazy_savepoints = False
        self.dirty = False
        self.writes = 0            # INSERT/UPDATE/DELETE statements run on this connection
        self.statement_errors = 0  # statements that failed (other than outages)
        self.connect()

    def connect(self) -> None:
        try:
            if self.kind == "sqlite":
                path = sqlite_path(self.url)
                # 1024 prepared statements: a worker's group reads are one statement text per key
                # count for each of five queries (1-64 terminals, STANs, batches and cards; 1-128 daily
                # totals in a group of 64), ~400 texts with the rest, more than the default 128 keeps.
                conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False,
                                       cached_statements=1024)
                wal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
                conn.execute(f"PRAGMA synchronous={self._sync_mode(conn, path, wal)}")
                # A checkpoint every 10 000 WAL pages (40 MB) instead of 1000: a page the ledger's
                # indexes dirty again and again is copied back once per checkpoint, and a worker's
                # COMMIT runs one ten times less often (a stall of several ms each).
                conn.execute("PRAGMA wal_autocheckpoint=10000")
                conn.execute("PRAGMA busy_timeout=30000")
                self._conn = conn
                if path != ":memory:" and self._lockfile is None:
                    self._lockfile = open(path + ".lock", "a")
            else:
                import psycopg
                parts = urlparse(self.url)
                q = parse_qs(parts.query)
                schema = q.pop("schema", [None])[0]
                clean = urlunparse(parts._replace(query="&".join(f"{k}={v[0]}" for k, v in q.items())))
                conn = psycopg.connect(clean, autocommit=True, connect_timeout=5)
                if schema:
                    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
                        raise DatabaseError(f"bad schema name {schema!r}")
                    if self.create:
                        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                    conn.execute(f"SET search_path TO {schema}")
                self._conn = conn
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open {self.kind} database: {exc}") from exc
        except Exception as exc:  # psycopg.Error without importing psycopg for SQLite users
            raise DatabaseError(f"cannot open {self.kind} database: {exc}") from exc

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.kind == "pg" else sql

    def execute(self, sql: str, params: Sequence = ()) -> Any:
        if sql[:6] in _WRITES:
            self.writes += 1
        try:
            return self._conn.execute(self._sql(sql) if self.kind == "pg" else sql, tuple(params))
        except Exception as exc:
            if _is_outage(exc):
                raise DatabaseError(f"{type(exc).__name__}: {exc}") from exc
            self.statement_errors += 1
            raise  # a bug or constraint violation, not an outage: retrying would loop forever

    def one(self, sql: str, params: Sequence = ()) -> Optional[tuple]:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence = ()) -> List[tuple]:
        return list(self.execute(sql, params).fetchall())

    def transaction(self) -> "ContextManager[Database]":
        """One write transaction; SQLite takes the write lock up front (no upgrade deadlocks).

        Nested use becomes a savepoint, so a worker can commit a group of messages at once
        (one fsync for many) while each message still rolls back on its own.
        """
        if self._depth and self.lazy_savepoints:
            return _LazySavepoint(self)   # once per message in a group: no generator to set up
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator["Database"]:
        if self._depth:
            name = f"sp{self._depth}"
            self.execute(f"SAVEPOINT {name}")
            self._depth += 1
            held = set(self._card_locks)
            try:
                yield self
            except BaseException:
                self._depth -= 1
                try:
                    self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self._conn.execute(f"RELEASE SAVEPOINT {name}")
                except Exception:
                    pass
                # PostgreSQL frees the advisory locks taken under a savepoint it rolls back: they
                # must be taken again when a later message needs them.
                self._card_locks.intersection_update(held)
                raise
            self._depth -= 1
            self.execute(f"RELEASE SAVEPOINT {name}")
            return
        self._lock()
        try:
            self.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
            self._depth = 1
            self._next_id = None
            try:
                yield self
            except BaseException:
                try:
                    self._conn.execute("ROLLBACK")
                except Exception:
                    pass
                raise
            finally:
                self._depth = 0
                self._next_id = None
            self.execute("COMMIT")
            if self.wal is not None:
                self.commit_seq = self.wal.committed_one()
        finally:
            self._card_locks.clear()  # advisory locks end with the transaction, either way
            self._unlock()

    def next_txn_id(self) -> int:
        """The id the next ledger row gets, known before the INSERT so that the row is written once,
        response included (the RRN is derived from it).

        SQLite: writers are serialized (flock + BEGIN IMMEDIATE), so MAX(id)+1 read once per
        transaction stays valid for the whole group; a row rolled back with its savepoint only
        leaves a gap. PostgreSQL: ids come from the column's sequence, 32 per round trip.
        """
        if not self._depth:
            raise RuntimeError("next_txn_id() outside a transaction")
        if self.kind == "sqlite":
            if self._next_id is None:
                (self._next_id,) = self.one("SELECT COALESCE(MAX(id), 0) + 1 FROM txns")
            assert self._next_id is not None
            out, self._next_id = self._next_id, self._next_id + 1
            return int(out)
        if not self._id_pool:
            self._id_pool = [int(r[0]) for r in self.all(
                "SELECT nextval(pg_get_serial_sequence('txns', 'id')) FROM generate_series(1, 32)")]
        return self._id_pool.pop(0)

    def _lock(self) -> None:
        """SQLite writers in several processes: queue on a file lock instead of SQLite's busy
        handler, which sleeps up to 100 ms between retries and wrecks tail latency."""
        if self._lockfile is not None:
            while self.lock_wait is not None:
                try:
                    fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if not self.lock_wait():
                        break   # nothing left to do meanwhile: queue for it
            fcntl.flock(self._lockfile, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        if self._lockfile is not None:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)

    def in_transaction(self) -> bool:
        return self._depth > 0

    def lock_terminal(self, terminal_id: str) -> None:
        """Serialize one terminal's messages across workers (SQLite already serializes writers)."""
        if self.kind == "pg":
            self.execute("SELECT terminal_id FROM terminals WHERE terminal_id=? FOR UPDATE", (terminal_id,))

    def lock_cards(self, card_hashes: Iterable[str]) -> None:
        """Serialize, across terminals and workers, every transaction that reads or moves one card's
        state: its daily totals, velocity and travel, PIN tries, refunds against its sales.

        PostgreSQL: transaction-scoped advisory locks (the terminal row locks do not cover a card
        used at two terminals), taken in key order in one statement, so that two groups holding
        several cards never wait on each other in a cycle; a key already held costs nothing.
        SQLite: its single writer already serializes these transactions.
        """
        if self.kind != "pg" or not self._depth:
            return
        keys = sorted({_card_lock_key(h) for h in card_hashes if h} - self._card_locks)
        if keys:
            # unnest() yields the array in order, and each row takes its lock as it is produced.
            self.execute("SELECT pg_advisory_xact_lock(?, k) FROM unnest(?::int[]) AS k", (_CARD_LOCK_SPACE, keys))
            self._card_locks.update(keys)

    def _sync_mode(self, conn: Any, path: str, wal: bool) -> str:
        """The `synchronous` mode for a SQLite connection (starting self.wal where it applies).

        FULL: an acknowledged message survives power loss. NORMAL (WAL) survives a crash of the
        process but not of the machine; only for benchmarks and tests, or with defer_sync()."""
        sync = os.environ.get("ROAMPOS_SQLITE_SYNC", "FULL").upper()
        sync = sync if sync in ("FULL", "EXTRA", "NORMAL") else "FULL"
        if self._defer and sync == "FULL" and wal and path != ":memory:":
            # FULL's fdatasync of the WAL, done by self.wal after the lock is released. The WAL
            # sits beside the file SQLite opened, which is the path with its symlinks resolved:
            # ask SQLite, a '<path>-wal' beside a symlink does not exist.
            from .walsync import WalSync
            main = next(r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main")
            self.wal = WalSync((main or os.path.realpath(path)) + "-wal")
            return "NORMAL"
        return sync

    def defer_sync(self) -> bool:
        """A worker's connection: SQLite commits without its fsync and a WalSync thread makes each
        commit durable after the write lock is released (see walsync); the caller answers what a
        transaction decided only once self.wal.done(self.commit_seq). False where it does not apply
        (PostgreSQL, :memory:, a journal other than WAL, ROAMPOS_SQLITE_SYNC other than FULL).
        Outside a transaction; set on the open connection (and again by connect() after an outage)."""
        if self.kind != "sqlite" or self.wal is not None:
            return self.wal is not None
        self._defer = True
        conn = self._conn
        wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA synchronous={self._sync_mode(conn, sqlite_path(self.url), wal)}")
        return self.wal is not None

    def _close_wal(self) -> None:
        wal, self.wal = self.wal, None
        if wal is not None:
            wal.close()   # syncs what was committed; a failure is raised from wal.done() before

    def reconnect(self) -> None:
        try:
            self._close_wal()
        except Exception:
            pass
        try:
            self._conn.close()
        except Exception:
            pass
        self.connect()

    def close(self) -> None:
        try:
            self._close_wal()
        except Exception:
            pass
        try:
            self._conn.close()
        except Exception:
            pass
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def create_schema(self) -> None:
        serial = "BIGSERIAL" if self.kind == "pg" else "INTEGER"
        ddl = _SCHEMA.replace("{serial}", serial)
        # SQLite: a table keyed by text alone is one b-tree WITHOUT ROWID instead of two (fewer pages
        # written per commit); PostgreSQL has no such clause.
        ddl = ddl.replace("{without_rowid}", "WITHOUT ROWID" if self.kind == "sqlite" else "")
        if self.kind == "sqlite":
            ddl = ddl.replace("BYTEA", "BLOB")
        for stmt in ddl.split(";"):
            if stmt.strip():
                self.execute(stmt)
        if not self.one("SELECT code FROM regions LIMIT 1"):
            self.seed()
        from .totals import backfill
        backfill(self)

    def has_ledger(self) -> bool:
        """Whether this database (PostgreSQL: its schema) holds a RoamPOS ledger."""
        if self.kind == "pg":
            return self.one("SELECT to_regclass('txns')")[0] is not None
        return self.one("SELECT name FROM sqlite_master WHERE type='table' AND name='txns'") is not None

    def vault(self) -> "Vault":
        """The host key's vault (terminal keys sealed, card-hash key); loaded once per connection."""
        if self._vault is None:
            from .vault import load
            self._vault = load(self)
        return self._vault

    def card_key(self) -> bytes:
        return self.vault().card_key

    def seed(self) -> None:
        """Load regions, profiles, fees and the cell table from tools/data."""
        profiles = {r["code"]: r for r in read_csv("region_profiles.csv")}
        with self.transaction():
            for r in read_csv("regions.csv"):
                p = profiles.get(r["code"], profiles["*"])
                self.execute(
                    "INSERT INTO regions VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (r["code"], r["name_en"], r["currency"], int(r["utc_offset_min"]), r["mcc"],
                     int(p["pin_threshold"]), int(p["txn_limit"]), int(p["daily_card_limit"]),
                     int(p["daily_terminal_limit"]), int(p["report_threshold"])))
            for f in read_csv("fees.csv"):
                self.execute("INSERT INTO fees VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                             (f["region"], f["method"], int(f["bps"]), int(f["cap"])))
            for c in read_csv("cells.csv"):
                self.execute("INSERT INTO cells VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                             (int(c["mcc"]), c["mnc"], int(c["lac_from"]), int(c["lac_to"]), c["region"]))


_WRITES = ("INSERT", "UPDATE", "DELETE")

# The first key of the two-key advisory lock space ("RPOS"), so card locks cannot meet another
# application's advisory locks on the same server.
_CARD_LOCK_SPACE = 0x52504F53


def _card_lock_key(card_hash: str) -> int:
    """A card's lock key: 32 bits of its keyed hash (two cards sharing one only wait for each other)."""
    try:
        return int(card_hash[:8], 16) - (1 << 31)
    except ValueError:
        return zlib.crc32(card_hash.encode()) - (1 << 31)


# SQLite's OperationalError covers both the file being unavailable and mistakes in a statement
# ("no such column", a syntax error): only the first kind is worth retrying. A bug retried forever
# would stall the worker with nothing answered; raised, it costs one message a 96.
_SQLITE_OUTAGES = ("locked", "busy", "disk i/o", "unable to open", "readonly", "read-only", "disk is full",
                   "no such file", "not a database", "interrupted")


def _is_outage(exc: Exception) -> bool:
    """Connection lost, server gone, database locked or unreadable: worth retrying."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(k in text for k in _SQLITE_OUTAGES)
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def pg_reachable(url: str) -> bool:
    """Whether a PostgreSQL server answers at `url` (tests and the bench use it when there is one)."""
    try:
        import psycopg
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


def open_ledger(url: str) -> Database:
    """An existing ledger, opened without creating anything (not a file, not a schema, not a
    table): a mistyped path or schema must not look like an empty registry or a quiet day.
    DatabaseError says which is missing."""
    if not is_postgres(url) and not os.path.exists(sqlite_path(url)):
        raise DatabaseError(f"no ledger at {sqlite_path(url)}")
    db = connect(url, create=False)
    if not db.has_ledger():
        db.close()
        raise DatabaseError(f"no ledger in {redact_url(url)}")
    return db


def connect(url: Optional[str] = None, create: bool = True) -> Database:
    db = Database(url or default_url(), create)
    if create:
        for attempt in range(5):
            try:
                db.create_schema()
                break
            except Exception:
                # Several workers may race to create the schema; the loser retries.
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    return db
