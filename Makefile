# RoamPOS: setup, run, test, deploy, bench. Every target depends on setup,
# so a fresh clone needs nothing but `make run` or `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done
PORT    ?=
BOARD   ?= esp32s3

.PHONY: setup run test test-fw deploy bench image clean

# The host's hot modules compiled with Cython (roampos.accel): rebuilt when one of them changes;
# a failed build leaves the host on pure Python, which the loader also falls back to per module.
ACCEL     := $(VENV)/roampos-accel/manifest.json
ACCEL_SRC := tools/roampos/iso.py $(patsubst %,tools/roampos/host/%.py,handler group auth db registry risk \
             totals wire service walsync) tools/roampos/accel.py tools/roampos/accel_build.py

$(STAMP): requirements.txt pyproject.toml tools/setup/fetch_umqtt.py tools/setup/system-deps.sh \
          tools/roampos/vterm/wasm32.py
	bash tools/setup/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python tools/setup/fetch_umqtt.py lib
	$(BIN)/python -m roampos.vterm.wasm32 --install >/dev/null \
	  || echo "setup: no 32-bit MicroPython (npm missing?): its heap test will fail"
	touch $(STAMP)

$(ACCEL): $(STAMP) $(ACCEL_SRC)
	$(BIN)/python -m roampos.accel_build || true

setup: $(STAMP) $(ACCEL)

run: $(STAMP) $(ACCEL)
	$(BIN)/roampos run

# services.sh starts PostgreSQL if it is installed and prints its URL.
test: $(STAMP) $(ACCEL)
	@pg=$$(bash tools/setup/services.sh); \
	ROAMPOS_TEST_PG=$${ROAMPOS_TEST_PG:-$$pg} $(BIN)/python -m pytest $(PYTEST_ARGS)

deploy: $(STAMP)
	@test -n "$(PORT)" || { echo "usage: make deploy PORT=/dev/ttyACM0 [BOARD=esp32s3|rp2]"; exit 2; }
	$(BIN)/python -m roampos.deploy --port $(PORT) --board $(BOARD)

image: $(STAMP)
	$(BIN)/roampos image --board $(BOARD) -o build/roampos-$(BOARD).img

bench: $(STAMP) $(ACCEL)
	$(BIN)/python -m roampos.bench

clean:
	rm -rf $(VENV) lib build results
