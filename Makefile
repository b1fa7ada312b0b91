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
	  cpu) $(BIN)/pip install -q torch==2.13.0 --extra-index-url $(TORCH_CPU_INDEX) ;; \
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
	$(BIN)/vlac data collect --tasks reach-v3,push-v3 --episodes-per-task 2 --out runs/demo
	$(BIN)/vlac data info runs/demo
	$(BIN)/vlac critic score --dataset runs/demo --episode 0 --out runs/demo/score-episode0
	$(BIN)/vlac critic score --dataset runs/demo --episode 1 --out runs/demo/score-episode1
	$(BIN)/vlac actor eval --tasks reach-v3,push-v3 --episodes 2 --max-steps 60 --out runs/demo/actor-eval
	rm -rf runs/demo/rl
	$(BIN)/vlac rl --out runs/demo/rl --tasks reach-v3,push-v3 --robots 2 --episodes 4 --episodes-per-update 4 \
	  --max-steps 30 --eval-episodes 2

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_data.py --out runs/bench_data
	$(BIN)/python benchmarks/bench_critic.py
	$(BIN)/python benchmarks/bench_actor.py
	$(BIN)/python benchmarks/bench_rl.py --out runs/bench_rl
