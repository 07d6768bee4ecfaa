# Every target sets up what it needs: `make test` on a fresh clone creates the environment.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: env demo test lint format unit integration bench kafka-start kafka-stop clean

env:
	@bash scripts/bootstrap.sh

demo: env
	$(VENV)/bin/vitaltwin demo

lint: env
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy twin

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite, real servers included: the integration fixtures start Kafka themselves.
# --durations: when CI is slow or a test times out, the log says where the time went.
test: lint
	bash scripts/browser.sh
	$(PY) -m pytest -q --durations=15

unit: env
	$(PY) -m pytest -q -m "not integration"

integration: env
	$(PY) -m pytest -q -m integration

# Real sizes; each benchmark writes JSON under var/bench/ (QUICK=1 for a fast smoke run).
BENCH_FLAGS := $(if $(QUICK),--quick,)
bench: env
	mkdir -p var/bench
	$(PY) benchmarks/bench_twin.py --out var/bench/twin.json
	$(PY) benchmarks/bench_simulator.py --out var/bench/simulator.json $(BENCH_FLAGS)
	$(PY) benchmarks/bench_alerts.py --out var/bench/alerts.json $(BENCH_FLAGS)
	$(PY) benchmarks/bench_trials.py --out var/bench/trials.json $(BENCH_FLAGS)
	$(PY) benchmarks/bench_forecast.py --out var/bench/forecast.json $(BENCH_FLAGS)
	$(PY) benchmarks/bench_training.py --out var/bench/training.json
	PYTHON=$(PY) bash scripts/kafka.sh start
	$(PY) benchmarks/bench_kafka.py --out var/bench/kafka.json $(BENCH_FLAGS)
	# Larger edge records: the best throughput, and the best latency with short batches.
	$(PY) benchmarks/bench_kafka.py --out var/bench/kafka-tuned.json --samples-per-record 30 \
		--batch-within 0.25 $(BENCH_FLAGS)
	$(PY) benchmarks/bench_kafka.py --out var/bench/kafka-latency.json --samples-per-record 30 \
		--batch-within 0.05 --skip-throughput $(BENCH_FLAGS)
	$(PY) scripts/bench_summary.py var/bench > var/bench/SUMMARY.md
	cat var/bench/SUMMARY.md

kafka-start:
	PYTHON=$(PY) bash scripts/kafka.sh start

kafka-stop:
	bash scripts/kafka.sh stop

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
