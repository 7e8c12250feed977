# Two commands on a fresh machine:  make demo  (runs the pipeline on the example corpus)  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of PyTorch first (small and fast to install); set TORCH_SPEC= to let pip choose (e.g. CUDA builds).
TORCH_SPEC ?= torch==2.13.0
CORPUSMAP := $(VENV)/bin/corpusmap

# The page tests drive Debian's Chromium headless (installed here when missing; the tests point at it).
CHROMIUM ?= /usr/bin/chromium

.PHONY: venv demo test bench clean browser

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
	@echo "Outputs are in runs/demo/: maps/tsne.html (the interactive map: open it in a browser), maps/tsne.png"
	@echo "(t-SNE map by label), maps/tsne.cluster-1.png (named regions), maps/tsne.year.png, maps/*.parquet,"
	@echo "clusters/, eval/metrics.md, excess/report.md, embeddings/ (vectors + manifest.json), corpus.parquet"

browser:
	test -x $(CHROMIUM) || (apt-get update -q && apt-get install -y -q chromium fonts-dejavu-core)

test: venv browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
