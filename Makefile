# make demo   - the whole DAG on the tiny preset, locally (kfp local runner)
# make test   - the test suite (what CI runs)
# make bench  - the benchmark scripts (print figures; not part of the tests; rl_lift.py takes ~35 min idle)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.diffucoder-installed
# checkov pins tabulate<0.10, which the project's pins exclude: it gets a venv of its own.
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
PRESET ?= tiny-cpu
OUT    ?= runs/demo

export DS_BUILD_OPS = 0
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup demo test bench compile chart-sync constraints image-requirements clean

setup: $(STAMP) $(TOOLS_STAMP)

# torch first, from the pinned CPU wheel; then the project with every extra.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $@

$(TOOLS_STAMP): tests/platform/checkov-constraints.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q -c tests/platform/checkov-constraints.txt checkov
	touch $@

# demo needs only the project venv (the checkov tools venv is for the tests).
demo: $(STAMP)
	$(BIN)/diffucoder pipeline run-local --preset $(PRESET) --output $(OUT)

test: setup
	$(BIN)/python -m pytest -q

# After changing the pipeline: recompile, then copy it into the chart and the kustomize base.
compile: setup
	$(BIN)/diffucoder pipeline compile --output-dir pipelines/compiled
	$(BIN)/python manifests/chart_sync.py

chart-sync: setup
	$(BIN)/python manifests/chart_sync.py

# Re-pin constraints.txt from the working venv (after adding a dependency).
constraints: setup
	{ sed -n '1,4p' constraints.txt; $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -e '^torch==' -e '^pip==' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Re-pin each image's Python install (images/<name>/requirements.txt, from its requirements.in and
# constraints.txt) after changing one of those or pyproject.toml's dependencies.
image-requirements: $(STAMP)
	$(BIN)/python images/requirements.py

bench: setup
	$(BIN)/python benchmarks/curate.py --input $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
	$(BIN)/python benchmarks/sandbox.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/coupled_variance.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/rl_lift.py

clean:
	rm -rf $(VENV) $(TOOLS) runs .pytest_cache
