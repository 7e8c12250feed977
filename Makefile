# Two commands on a fresh machine:  make demo  (runs the pipeline on the example corpus)  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch first (small and fast to install); set TORCH_SPEC= to let pip choose (e.g. CUDA builds).
TORCH_SPEC ?= torch==2.13.0
DEMO_RUN ?= runs/demo
CORPUSMAP := $(VENV)/bin/corpusmap

.PHONY: venv demo test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install -q "$(TORCH_SPEC)" || $(PY) -m pip install -q torch; fi
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: venv
	$(CORPUSMAP) embed examples/elife_2012_2016.jsonl.gz -o $(DEMO_RUN)
	@echo
	@echo "Outputs are in $(DEMO_RUN)/: corpus.parquet, embeddings/ (vectors + manifest.json)"

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
