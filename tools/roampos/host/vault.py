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


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise VaultError(f"{where}: the host key must be 64 hex digits")
    return key


def load(db: "Database") -> Vault:
    check = _setting(db, "host_key_check")
    if os.environ.get(ENV_KEY):
        key = _parse(os.environ[ENV_KEY], ENV_KEY)
    else:
        path = key_file(db)
        if path is None:
            key = os.urandom(32)
        elif path.exists():
            key = _parse(path.read_text(), str(path))
        elif check is None:
            key = _create(path)
        else:
            raise VaultError(f"host key file {path} is missing, and this database's terminal keys are sealed under"
                             f" a host key with check value {check}: set {ENV_KEY} or {ENV_FILE} to that key")
    legacy = _setting(db, "card_key")   # a database from before the host key kept its card key
    env_card = os.environ.get("ROAMPOS_CARD_KEY")
    vault = Vault(key, bytes.fromhex(env_card) if env_card else bytes.fromhex(legacy) if legacy else None)
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
    return vault


def _setting(db: "Database", name: str) -> Optional[str]:
    row = db.one("SELECT value FROM settings WHERE name=?", (name,))
    return str(row[0]) if row else None


def _create(path: Path) -> bytes:
    """A new random host key in a new file readable by its owner only (or the one a racing worker made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    try:
        os.link(tmp, path)  # appears whole or not at all; never replaces one that exists
    except FileExistsError:
        key = _parse(path.read_text(), str(path))
    else:
        log.info("created host key file %s: keep it (and a copy) apart from the database's backups", path)
    finally:
        os.unlink(tmp)
    return key
