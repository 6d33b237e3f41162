# sgdbench — every target sets up .venv from the repo's own files first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GRID   ?= experiments/quickstart.toml

.PHONY: help install run test test-fast lint bench bench-compare bench-gate bench-ratios experiments suite clean

help:
	@echo "make run            set up, run $(GRID), print its report"
	@echo "make test           the whole test suite"
	@echo "make test-fast      the suite without the slow end-to-end tests (the edit loop)"
	@echo "make lint           ruff (with complexity C901), ruff format, mypy on sgdbench/"
	@echo "make bench          pytest-benchmark suite (saved under .benchmarks/)"
	@echo "make bench-compare  compare against the saved baseline, fail on a >25% regression (min)"
	@echo "make bench-gate     CI gate: engine vs plain loops in one session, exit 1 if it falls behind"
	@echo "make bench-ratios   engine vs plain training loops, hyperfine-style table + markdown"
	@echo "make experiments    run every grid in experiments/ and write reports and plots"
	@echo "make suite          run $(SUITE) (8 problems x 7 optimizers), print its cross-problem report"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,dask]"
	touch $(STAMP)

run: install
	$(BIN)/sgdbench run $(GRID)
	$(BIN)/sgdbench report results/$$(basename $(GRID) .toml)

# Suites (suite_*.toml) run with `make suite`. A grid with one learning rate has no lr plot: `sgdbench plot --kind lr` says so (exit 2).
experiments: install
	@for grid in experiments/*.toml; do \
		name=$$(basename $$grid .toml); out=results/$$name; \
		case $$name in suite_*) continue;; esac; \
		echo "== $$name"; \
		$(BIN)/sgdbench run $$grid -q || exit $$?; \
		$(BIN)/sgdbench report $$out --format markdown > $$out/report.md || exit $$?; \
		$(BIN)/sgdbench report $$out --format html --out $$out/report.html || exit $$?; \
		for kind in curves lr speed; do \
			$(BIN)/sgdbench plot $$out --kind $$kind --out $$out/$$kind.png \
				|| { rc=$$?; [ $$kind = lr ] && [ $$rc = 2 ] || exit $$rc; }; \
		done; \
		cat $$out/report.md; \
	done

# A suite: every problem into results/<suite>/<problem>/, then the cross-problem report and plots.
SUITE ?= experiments/suite_standard.toml
suite: install
	@name=$$(basename $(SUITE) .toml); out=results/$$name; \
	$(BIN)/sgdbench run $(SUITE) -q || exit $$?; \
	$(BIN)/sgdbench report $$out --format markdown > $$out/report.md || exit $$?; \
	$(BIN)/sgdbench report $$out --format html --out $$out/report.html || exit $$?; \
	for kind in profile tuneability; do \
		$(BIN)/sgdbench plot $$out --kind $$kind --out $$out/$$kind.png || exit $$?; \
	done; \
	cat $$out/report.md

test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks: results are JSON under .benchmarks/<machine>/ (git-ignored: machine-specific).
# The timer is this process's CPU time: the benchmarks use one intra-op thread, and on a shared
# machine wall time mostly measures the neighbours. On a quiet machine, or for CUDA timings, run
# `make bench BENCH_TIMER=time.perf_counter`.
BENCH_TIMER   ?= time.process_time
BENCH_STORAGE ?= .benchmarks
BENCH_ROUNDS  ?= 5
BENCH_ARGS  := --benchmark-storage=file://$(BENCH_STORAGE) --benchmark-timer=$(BENCH_TIMER) \
               --benchmark-max-time=0.2 --benchmark-min-rounds=$(BENCH_ROUNDS) \
               --benchmark-columns=min,mean,stddev,max,rounds \
               -p no:cacheprovider

bench: install
	$(BIN)/python -m pytest benchmarks -q $(BENCH_ARGS) --benchmark-autosave

# Compares with the latest run saved by `make bench`; without one, runs and saves a baseline.
# Gated on the min of the rounds (noise on a shared machine only ever adds time) beyond 25%:
# an unchanged tree passes, a 1.5x slower engine fails (rates in docs/performance.md).
BENCH_FAIL ?= min:25%
bench-compare: install
	@if ls $(BENCH_STORAGE)/*/*.json >/dev/null 2>&1; then \
		$(BIN)/python -m pytest benchmarks -q $(BENCH_ARGS) \
			--benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL); \
	else \
		echo "bench-compare: no saved baseline under $(BENCH_STORAGE)/ yet; saving this run as one"; \
		$(BIN)/python -m pytest benchmarks -q $(BENCH_ARGS) --benchmark-autosave; \
	fi

# No baseline needed: the engine against the plain loops, measured in the same session.
bench-gate: install
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.gate

bench-ratios: install
	$(BIN)/python -m benchmarks.ratios --markdown

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
