# Set-up is part of every target: a fresh machine needs nothing but python3 (>= 3.10).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test bench

# torch: the CPU build (from TORCH_CPU_INDEX) on a machine where `nvidia-smi` sees no GPU, the
# default CUDA build where it sees one; override with `make setup TORCH=cpu` or `TORCH=cuda`
# (after `rm -rf .venv` to change an existing set-up).
TORCH ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@build=$(TORCH); if [ "$$build" = auto ]; then \
	  if nvidia-smi -L >/dev/null 2>&1; then build=cuda; else build=cpu; fi; fi; \
	echo "set-up: torch 2.13.0, $$build build (TORCH=$(TORCH); override with TORCH=cpu or TORCH=cuda)"; \
	case $$build in \
	  cpu) if $(PY) -c "import socket, urllib.parse as u; socket.create_connection((u.urlparse('$(TORCH_CPU_INDEX)').hostname, 443), 5)" 2>/dev/null; \
	       then $(BIN)/pip install -q torch==2.13.0 --extra-index-url $(TORCH_CPU_INDEX); \
	       else echo "set-up: $(TORCH_CPU_INDEX) is not reachable; torch 2.13.0 from the configured index"; \
	            $(BIN)/pip install -q torch==2.13.0; fi ;; \
	  cuda) $(BIN)/pip install -q torch==2.13.0 ;; \
	  *) echo "TORCH must be auto, cpu or cuda, not $$build" >&2; exit 2 ;; \
	esac; \
	echo $$build > $(VENV)/torch-build
	# torch pinned, so nothing below replaces the build chosen above
	echo "torch==2.13.0" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[all,test]"
	@if [ "$$(cat $(VENV)/torch-build)" = cpu ] && $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia'; then \
	  echo "CUDA packages were pulled into a CPU set-up; check that $(TORCH_CPU_INDEX) is reachable" >&2; exit 1; fi
	touch $@

setup: $(VENV)/.installed

demo: setup
	@echo "== 1/4 data: one expert (succeeds) and one stalled (fails) episode each of reach and push, LeRobot layout"
	$(BIN)/vlac data collect --tasks reach-v3 push-v3 --episodes-per-task 2 --behaviours expert:0.5 stall:0.5 --out runs/demo
	$(BIN)/vlac data info runs/demo
	@echo "== 2/4 critic: the same task (reach), a success (episode 0) and a failure (episode 2) side by side."
	@echo "   Final value = the critic's progress estimate 0..1 (Eq. 7 over its pairwise deltas, each pair read both"
	@echo "   ways): expect about 0.95 for the success and 0.3 for the stall, and a done probability at the end"
	@echo "   near 1 against near 0. Plots: runs/demo/score-success/scores.png, runs/demo/score-failure/scores.png"
	$(BIN)/vlac critic score --dataset runs/demo --episode 0 --symmetric --out runs/demo/score-success
	$(BIN)/vlac critic score --dataset runs/demo --episode 2 --symmetric --out runs/demo/score-failure
	@echo "== 3/4 actor: the built-in behaviour-cloned actor rolled out on reach and push (simulator success flag)."
	@echo "   2 episodes of 60 steps: expect 0.0-0.5; over 40 episodes of 150 steps it succeeds 0.20 on reach, 0.125 on push"
	@echo "   (model card; \`vlac actor eval --tasks reach-v3 push-v3 --episodes 40 --out runs/actor-eval\`)."
	$(BIN)/vlac actor eval --tasks reach-v3 push-v3 --episodes 2 --max-steps 60 --out runs/demo/actor-eval
	@echo "== 4/4 RL loop: two simulated robots over ZeroMQ, Ray workers, critic rewards, one PPO update."
	@echo "   4 episodes cannot change success (expect the same before and after); a real run takes hundreds:"
	@echo "   \`vlac rl --config configs/rl/reach-v3.yaml --episodes 200 --out runs/rl-reach\` (see BENCHMARKS.md, RL loop)."
	rm -rf runs/demo/rl
	$(BIN)/vlac rl --out runs/demo/rl --tasks reach-v3 push-v3 --robots 2 --episodes 4 --episodes-per-update 4 \
	  --max-steps 30 --eval-episodes 2
	@echo "== done: runs/demo/score-*/scores.png, runs/demo/actor-eval/report.md, runs/demo/rl/report.md"

# Tests run in up to 4 processes (pytest-xdist; one per core, each sizing torch's pool to its share):
# much of their time is spent waiting on subprocesses, sockets and Ray (2 cores: 7-22 min by machine, BENCHMARKS.md);
# tests marked slow(SECONDS) start first, longest first (tests/conftest.py), and an idle worker steals queued ones.
# The operator console's browser test drives Debian's chromium + chromium-driver: installed here when
# this user may (root with apt-get), else the test is skipped with a note (CI requires it).
test: setup
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "set-up: Debian's chromium and chromium-driver, for the console's browser test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	      echo "note: apt-get could not install chromium; the console's browser test is skipped"; \
	  else echo "note: no /usr/bin/chromium and chromedriver (sudo apt-get install chromium chromium-driver):" \
	    "the console's browser test is skipped"; fi; fi
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal --durations=25

bench: setup
	$(BIN)/python benchmarks/bench_data.py --out runs/bench_data
	$(BIN)/python benchmarks/bench_critic.py
	$(BIN)/python benchmarks/bench_actor.py
	$(BIN)/python benchmarks/bench_rl.py --out runs/bench_rl
