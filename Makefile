# RoamPOS: setup, run, test, deploy, bench. Every target depends on setup,
# so a fresh clone needs nothing but `make run` or `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done
PORT    ?=
BOARD   ?= esp32s3

.PHONY: setup run test test-fw deploy bench image clean

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

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/roampos run

# services.sh starts PostgreSQL if it is installed and prints its URL.
test: $(STAMP)
	@pg=$$(bash tools/setup/services.sh); \
	ROAMPOS_TEST_PG=$${ROAMPOS_TEST_PG:-$$pg} $(BIN)/python -m pytest $(PYTEST_ARGS)

deploy: $(STAMP)
	@test -n "$(PORT)" || { echo "usage: make deploy PORT=/dev/ttyACM0 [BOARD=esp32s3|rp2]"; exit 2; }
	$(BIN)/python -m roampos.deploy --port $(PORT) --board $(BOARD)

image: $(STAMP)
	$(BIN)/roampos image --board $(BOARD) -o build/roampos-$(BOARD).img

bench: $(STAMP)
	$(BIN)/python -m roampos.bench

clean:
	rm -rf $(VENV) lib build results
