#!/usr/bin/env bash
# System packages the tests use: a real MQTT broker (mosquitto), Node.js and
# npm (the 32-bit MicroPython heap test, roampos.vterm.wasm32) and, when we
# may install, a PostgreSQL server. Nothing here is needed by `make run`,
# which uses the embedded broker and SQLite. Installs only what is missing,
# and only as root (CI); elsewhere it says what to install.
set -u
need=()
# Debian's python3 comes without venv/ensurepip (`make setup` creates .venv): everything needs it.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A failed install fails the setup, so that the next `make` tries again (the setup's stamp is
  # only written after this succeeds) instead of leaving tests to skip or fail one by one.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "system-deps: could not install ${need[*]}" >&2
    exit 1
  fi
else
  echo "system-deps: not root; install ${need[*]} for the broker/PostgreSQL/32-bit heap tests (they skip or fail without)"
fi
exit 0
