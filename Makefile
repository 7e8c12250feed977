# Two commands on a fresh machine:  make demo  (runs the pipeline on the example corpus)  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch first (small and fast to install); set TORCH_SPEC= to let pip choose (e.g. CUDA builds).
TORCH_SPEC ?= torch==2.13.0
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
	$(CORPUSMAP) run examples/demo.toml
	@echo
	@cat runs/demo/eval/metrics.md
	@echo
	@echo "Outputs are in runs/demo/: maps/tsne.png (t-SNE map by label), maps/tsne.year.png, maps/*.parquet,"
	@echo "eval/metrics.md, excess/report.md, embeddings/ (vectors + manifest.json), corpus.parquet"

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
