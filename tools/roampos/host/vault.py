"""The host key: kept outside the ledger database, it seals the terminal keys the database stores
and keys the card hash, so that a copy of the database alone yields neither a terminal key nor,
by hashing every PAN that fits a masked one, a card number.

Where it comes from, first match: `ROAMPOS_HOST_KEY` (64 hex digits), the file named by
`ROAMPOS_HOST_KEY_FILE`, else a default file: `<ledger>.key` next to a SQLite ledger, or
`$XDG_CONFIG_HOME/roampos/host.key` for PostgreSQL. The default file is created (mode 600) only
for a database that has no host key yet; workers on several machines need the same key (copy the
file or set the variable), and the database keeps the key's check value, so a worker holding
another key refuses to start instead of sealing keys nobody else can open.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .db import sqlite_path

if TYPE_CHECKING:
    from .db import Database

__all__ = ["Vault", "VaultError", "load", "key_file"]

ENV_KEY, ENV_FILE = "ROAMPOS_HOST_KEY", "ROAMPOS_HOST_KEY_FILE"
SEALED = "w1:"   # RFC 3394 AES key wrap under the key-encryption key, hex
log = logging.getLogger("roampos.host")


class VaultError(RuntimeError):
    """The host key is missing or is not the one this database was set up with."""


class Vault:
    def __init__(self, host_key: bytes, card_key: Optional[bytes] = None):
        self._kek = _derive(host_key, b"key-encryption")
        self.card_key = card_key or _derive(host_key, b"card-hash")
        self.check = _derive(host_key, b"check")[:3].hex().upper()

    def seal(self, key: bytes) -> str:
        return SEALED + aes_key_wrap(self._kek, key).hex().upper()

    def open(self, stored: Optional[str]) -> Optional[bytes]:
        """The key a column holds (None if empty). Plain hex was written before keys were sealed."""
        if not stored:
            return None
        if not stored.startswith(SEALED):
            return bytes.fromhex(stored)
        try:
            return aes_key_unwrap(self._kek, bytes.fromhex(stored[len(SEALED):]))
        except (InvalidUnwrap, ValueError) as exc:
            raise VaultError("a stored terminal key does not unwrap under this host key") from exc


def _derive(host_key: bytes, label: bytes) -> bytes:
    return hmac.new(host_key, b"RoamPOS " + label, hashlib.sha256).digest()


def key_file(db: "Database") -> Optional[Path]:
    """Where the host key file is (None: an in-memory ledger, whose key lives as long as it)."""
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE])
    if db.kind == "sqlite":
        path = sqlite_path(db.url)
        return None if path == ":memory:" else Path(path + ".key")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "roampos" / "host.key"


def _parse(text: str, where: str, what: str = "the host key") -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise VaultError(f"{where}: {what} must be 64 hex digits")
    return key


def _read_private(path: Path) -> bytes:
    # As ssh does with its keys: a host key others can read or change is no longer the host's own.
    st = path.stat()
    if st.st_mode & 0o077:
        raise VaultError(f"host key file {path} is open to others (mode {stat.S_IMODE(st.st_mode):03o}):"
                         f" chmod 600 {path}")
    return _parse(path.read_text(), str(path))


def load(db: "Database") -> Vault:
    check = _setting(db, "host_key_check")
    if os.environ.get(ENV_KEY):
        key = _parse(os.environ[ENV_KEY], ENV_KEY)
    else:
        path = key_file(db)
        if path is None:
            key = os.urandom(32)
        elif path.exists():
            key = _read_private(path)
        elif check is None:
            key = _create(path)
        else:
            raise VaultError(f"host key file {path} is missing, and this database's terminal keys are sealed under"
                             f" a host key with check value {check}: set {ENV_KEY} or {ENV_FILE} to that key")
    legacy = _setting(db, "card_key")   # a database from before the host key kept its card key
    env_card = os.environ.get("ROAMPOS_CARD_KEY")
    card_key = _parse(env_card, "ROAMPOS_CARD_KEY", "the card-hash key") if env_card else \
        _parse(legacy, "settings row 'card_key'", "the card-hash key") if legacy else None
    vault = Vault(key, card_key)
    if legacy and not env_card:
        log.warning("card-hash key read from the database (written by an older version): set ROAMPOS_CARD_KEY"
                    " to it and delete the settings row 'card_key'")
    if check is None:
        db.execute("INSERT INTO settings VALUES ('host_key_check', ?) ON CONFLICT DO NOTHING", (vault.check,))
        check = _setting(db, "host_key_check")  # another worker may have set it first
    if check != vault.check:
        raise VaultError(f"the host key (check value {vault.check}) is not the one this database was set up with"
                         f" ({check}): set {ENV_KEY} or {ENV_FILE} to that key")
    # The card-hash key too: workers hashing cards differently would split every per-card rule.
    card_check = _derive(vault.card_key, b"check")[:3].hex().upper()
    db.execute("INSERT INTO settings VALUES ('card_key_check', ?) ON CONFLICT DO NOTHING", (card_check,))
    stored = _setting(db, "card_key_check")
    if stored != card_check:
        raise VaultError(f"the card-hash key (check value {card_check}) is not the one this database's card"
                         f" hashes were made with ({stored}): check ROAMPOS_CARD_KEY")
    _seal_legacy(db, vault)
    return vault


_KEY_COLUMNS = ("tmk", "tpk", "tak", "tdk")


def _seal_legacy(db: "Database", vault: Vault) -> None:
    """Terminal keys an older version stored in clear are sealed now, once: open() would go on
    reading them, and a copy of the database would go on giving them away."""
    clear = " OR ".join(f"({c} <> '' AND {c} NOT LIKE '{SEALED}%')" for c in _KEY_COLUMNS)
    query = f"SELECT terminal_id, {', '.join(_KEY_COLUMNS)} FROM terminals WHERE {clear}"
    if not db.one(query + " LIMIT 1"):
        return
    if db.kind == "sqlite":
        db.execute("PRAGMA secure_delete=ON")  # the clear values' old cells are zeroed, not left free
    with db.transaction():
        # Read again under the write lock (SQLite) or the rows' locks (PostgreSQL): a host starting
        # beside this one may have sealed them and signed a terminal on since, with new keys.
        rows = db.all(query + (" FOR UPDATE" if db.kind == "pg" else ""))
        for tid, *keys in rows:
            try:
                sealed = [k if not k or k.startswith(SEALED) else vault.seal(bytes.fromhex(k)) for k in keys]
            except ValueError as exc:
                raise VaultError(f"terminal {tid}: a key stored in clear is not hex: {exc}") from None
            db.execute(f"UPDATE terminals SET {', '.join(c + '=?' for c in _KEY_COLUMNS)} WHERE terminal_id=?",
                       (*sealed, tid))
    if db.kind == "sqlite":
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and the old page images out of the log
        db.execute("PRAGMA secure_delete=OFF")
        where = "backups taken before now still hold them"
    else:
        where = "run VACUUM FULL terminals to drop the old row versions; backups taken before now still hold them"
    if rows:
        log.warning("sealed the keys of %d terminal(s) that an older version stored in clear: %s", len(rows), where)


def _setting(db: "Database", name: str) -> Optional[str]:
    row = db.one("SELECT value FROM settings WHERE name=?", (name,))
    return str(row[0]) if row else None


def _create(path: Path) -> bytes:
    """A new random host key in a new file readable by its owner only (or the one a racing worker made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    # A new file of an unguessable name (O_EXCL, mode 600): nobody can have made it first, open it or
    # point it elsewhere before the key is in it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # appears whole or not at all; never replaces one that exists
    except FileExistsError:
        key = _read_private(path)
    else:
        log.info("created host key file %s: keep it (and a copy) apart from the database's backups", path)
    finally:
        os.unlink(tmp)
    return key
