"""Keys at rest: a copy of the ledger database alone gives away no terminal key and no card number."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from roampos import iso
from roampos.host import db as dbm, registry, vault
from roampos.host.handler import Handler
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK, roampos_bin
from test_authorization import card

PAN = card(424242)


def _dump(db) -> str:
    tables = [r[0] for r in db.all("SELECT name FROM sqlite_master WHERE type='table'")] if db.kind == "sqlite" \
        else [r[0] for r in db.all("SELECT table_name FROM information_schema.tables WHERE table_schema=current_schema()")]
    return "\n".join(repr(db.all(f"SELECT * FROM {t}")) for t in tables)


def test_database_holds_no_terminal_key_and_no_card_key(db, handler):
    t = SimTerminal(TID, MID, SERIAL, TMK)
    t.apply_signon(handler.handle(TID, t.signon()).response)
    assert iso.decode(handler.handle(TID, t.financial(PAN, 1000)).response)["39"] == "00"
    dump = _dump(db)
    for key in (TMK, t.tpk, t.tak, t.tdk):
        assert key.hex() not in dump.lower()
    assert PAN not in dump and "'card_key'" not in dump
    # The card hash is keyed by the host key, which the database does not hold: hashing the PANs
    # that fit the masked one, with anything the database has, finds nothing.
    (masked, stored_hash) = db.one("SELECT masked_pan, card_hash FROM txns")
    assert masked == iso.mask_pan(PAN)
    settings = [bytes.fromhex(v) for (v,) in db.all("SELECT value FROM settings")
                if all(c in "0123456789abcdefABCDEF" for c in v) and len(v) % 2 == 0]
    assert all(iso.card_hash(k, PAN) != stored_hash for k in settings)


def test_key_file_beside_a_sqlite_ledger_is_private(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    d = dbm.connect(url)
    d.vault()
    mode = stat.S_IMODE(os.stat(tmp_path / "ledger.db.key").st_mode)
    assert mode == 0o600
    d.close()


def test_missing_or_wrong_host_key_is_refused_with_its_reason(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    d = dbm.connect(url)
    registry.add_terminal(d, TID, SERIAL, MID, "Roaming Noodles", "48021000", "6222020000000001", "310000", {},
                          TMK.hex())
    d.close()
    os.rename(tmp_path / "ledger.db.key", tmp_path / "elsewhere.key")
    with pytest.raises(vault.VaultError, match="host key file .* is missing"):
        Handler(dbm.connect(url))
    # the CLI says why and exits instead of starting workers that would fail
    out = subprocess.run([roampos_bin(), "host", "--db", url, "--port", "1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "host key file" in out.stderr and "missing" in out.stderr
    monkeypatch.setenv("ROAMPOS_HOST_KEY", os.urandom(32).hex())
    with pytest.raises(vault.VaultError, match="not the one this database was set up with"):
        Handler(dbm.connect(url))
    monkeypatch.setenv("ROAMPOS_HOST_KEY", (tmp_path / "elsewhere.key").read_text().strip())
    h = Handler(dbm.connect(url))   # the right key, from the environment: keys open again
    t = SimTerminal(TID, MID, SERIAL, TMK)
    t.apply_signon(h.handle(TID, t.signon()).response)


def test_keys_stored_in_clear_by_an_older_version_are_sealed_at_start(db, caplog):
    old_tak = os.urandom(16)
    db.execute("UPDATE terminals SET tmk=?, tak=? WHERE terminal_id=?", (TMK.hex().upper(), old_tak.hex(), TID))
    handler = Handler(dbm.connect(db.url))
    row = db.one("SELECT tmk, tak FROM terminals WHERE terminal_id=?", (TID,))
    assert all(v.startswith(vault.SEALED) for v in row), row
    assert db.vault().open(row[0]) == TMK and db.vault().open(row[1]) == old_tak
    assert "sealed the keys of 1 terminal(s)" in caplog.text
    if db.kind == "sqlite":  # nor do the file's free pages or its write-ahead log keep them
        path = dbm.sqlite_path(db.url)
        raw = b"".join(open(f, "rb").read() for f in (path, path + "-wal") if os.path.exists(f))
        assert TMK.hex().upper().encode() not in raw and old_tak.hex().encode() not in raw
    t = SimTerminal(TID, MID, SERIAL, TMK)
    t.apply_signon(handler.handle(TID, t.signon()).response)
    assert iso.decode(handler.handle(TID, t.financial(PAN, 500)).response)["39"] == "00"


def test_terminal_add_needs_somewhere_for_a_generated_tmk(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    base = [roampos_bin(), "terminal", "--db", url, "add", "SZX00009", "--serial", "RP-S3-000999", "--merchant",
            "440300000000009", "--merchant-name", "Dim Sum Cart", "--acquirer", "48022000", "--account",
            "6222030000000009", "--home-region", "440300"]
    out = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tmk-file" in out.stderr
    tmk_file = tmp_path / "SZX00009.tmk"
    out = subprocess.run(base + ["--tmk-file", str(tmk_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(os.stat(tmk_file).st_mode) == 0o600
    tmk = bytes.fromhex(tmk_file.read_text().strip())
    assert tmk.hex() not in out.stdout.lower() + out.stderr.lower()
    h = Handler(dbm.connect(url))   # the terminal injected with that file signs on
    t = SimTerminal("SZX00009", "440300000000009", "RP-S3-000999", tmk, region="440300")
    t.apply_signon(h.handle("SZX00009", t.signon()).response)


def test_a_host_key_file_others_can_read_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    dbm.connect(url).vault()
    os.chmod(tmp_path / "ledger.db.key", 0o644)
    with pytest.raises(vault.VaultError, match="open to others .*chmod 600"):
        dbm.connect(url).vault()
    os.chmod(tmp_path / "ledger.db.key", 0o600)
    dbm.connect(url).vault()


@pytest.mark.parametrize("value", ["a7c3", "not-hex", "00" * 31])
def test_a_card_key_that_is_not_32_bytes_is_refused(db, monkeypatch, value):
    # Short, it would let a copy of the database find the key (and the PANs) by trying them all.
    monkeypatch.setenv("ROAMPOS_CARD_KEY", value)
    with pytest.raises(vault.VaultError, match="ROAMPOS_CARD_KEY: the card-hash key must be 64 hex digits"):
        Handler(dbm.connect(db.url))


def test_a_tmk_file_that_cannot_be_written_leaves_no_terminal_behind(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    base = [roampos_bin(), "terminal", "--db", url, "add", "SZX00009", "--serial", "RP-S3-000999", "--merchant",
            "440300000000009", "--merchant-name", "Dim Sum Cart", "--acquirer", "48022000", "--account",
            "6222030000000009", "--home-region", "440300"]
    out = subprocess.run(base + ["--tmk-file", str(tmp_path / "no-such-dir" / "k.tmk")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "No such file" in out.stderr, out.stderr
    listed = subprocess.run([roampos_bin(), "terminal", "--db", url, "list"], capture_output=True, text=True,
                            timeout=60)
    assert "SZX00009" not in listed.stdout       # so the add can simply be run again
    tmk = os.urandom(16)
    out = subprocess.run(base + ["--tmk", "-"], input=tmk.hex() + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr      # the key from standard input, never in `ps`
    h = Handler(dbm.connect(url))
    t = SimTerminal("SZX00009", "440300000000009", "RP-S3-000999", tmk, region="440300")
    assert iso.decode(h.handle("SZX00009", t.signon()).response)["39"] == "00"


def test_a_different_card_key_is_refused(db, monkeypatch):
    Handler(db)   # records the card-hash key's check value
    monkeypatch.setenv("ROAMPOS_CARD_KEY", os.urandom(32).hex())
    with pytest.raises(vault.VaultError, match="card-hash key"):
        Handler(dbm.connect(db.url))


def test_two_hosts_sealing_old_keys_at_once_keep_the_newest_session_keys(db):
    # Host B finds keys in clear; before it writes, host A seals them and a terminal signs on
    # through A (new session keys). B must not write its copy of the old keys over those.
    Handler(db)
    db.execute("UPDATE terminals SET tmk=?, tak=? WHERE terminal_id=?", (TMK.hex().upper(), os.urandom(16).hex(), TID))
    t = SimTerminal(TID, MID, SERIAL, TMK)
    b = dbm.connect(db.url)
    real = b.transaction

    def a_starts_meanwhile():
        b.transaction = real
        t.apply_signon(Handler(dbm.connect(db.url)).handle(TID, t.signon()).response)
        return real()

    b.transaction = a_starts_meanwhile
    hb = Handler(b)
    assert db.vault().open(db.one("SELECT tak FROM terminals WHERE terminal_id=?", (TID,))[0]) == t.tak
    assert iso.decode(hb.handle(TID, t.financial(PAN, 500)).response)["39"] == "00"
