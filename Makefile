# Set-up is part of every target: a fresh machine needs nothing but python3 (>= 3.10).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first and pinned: any other torch spec pulls GBs of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[all,test]"
	@if $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia'; then echo "CUDA packages were pulled in; check the torch pin" >&2; exit 1; fi
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
