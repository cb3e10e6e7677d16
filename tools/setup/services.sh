#!/usr/bin/env bash
# Before the tests: make sure the PostgreSQL server the host suite can use is
# running (the CI machine starts one; a fresh machine got one from
# system-deps.sh). Prints the URL to use, or nothing when there is none:
# the PostgreSQL half of the host suite then skips. Mosquitto needs no
# service: the tests start private brokers from the binary.
set -u
command -v pg_isready >/dev/null 2>&1 || exit 0
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  [ "$(id -u)" = 0 ] || exit 0
  ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] || exit 0
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # A server we installed ourselves: let local test clients in without a password.
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" 2>/dev/null ||
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || exit 0
# -w: never ask for a password (there is no one to answer it under make test).
sql() { psql -w -h 127.0.0.1 -U postgres "$@" >/dev/null 2>&1; }
if ! sql -tAc "select 1" postgres && [ "$(id -u)" = 0 ]; then
  # A server Debian started itself (systemd) asks 127.0.0.1 clients for a password: let the
  # local test clients in, as above, and reload it.
  ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if [ -n "$ver" ] && [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >/dev/null 2>&1 || true
    sleep 1
  fi
fi
sql -tAc "select 1" test || sql -c "create database test" postgres || true
sql -tAc "select 1" test && echo "postgresql://postgres@127.0.0.1:5432/test"
exit 0
