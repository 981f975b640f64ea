# wseg: every target creates the virtualenv on first use (see constraints.txt for why torch is pinned).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
SETTING ?= demo
MODE ?= conv
DATA ?= synthetic
RULE ?= overlap-void
GPU_CHECK_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) with the pinned dependencies of constraints.txt (about 2 minutes, once)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -c constraints.txt -e '.[dev,export]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install wseg with pinned dependencies

demo: $(STAMP) ## the main job: synthetic data, train Supervised + BboxRect on CPU, print the table, write overlays
	$(PY) -m wseg.demo

test: $(STAMP) ## run the CPU test suite (what CI runs)
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-slow: $(STAMP) ## run the slow end-to-end tests too
	$(PY) -m pytest -n 2 --dist loadgroup -m "slow or not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check wseg tests benchmarks
	$(PY) -m ruff format --check wseg tests benchmarks

format: $(STAMP) ## ruff format and autofix
	$(PY) -m ruff format wseg tests benchmarks
	$(PY) -m ruff check --fix wseg tests benchmarks

selfcorr: $(STAMP) ## self-correction chain, restartable (SETTING=demo|tiny_coco|voc_f1464|cityscapes_f914|..., MODE=conv|linear|none|all)
	$(PY) -m wseg.pipeline selfcorr --setting $(SETTING) --mode $(MODE)

bench: $(STAMP) ## speed and label-quality benchmarks (printed ratios; about 30 minutes on 2 CPU cores)
	$(PY) -m benchmarks

bbox-seg: $(STAMP) ## Bbox-Seg chain, restartable: CRF-from-boxes store -> fit (SETTING=demo|demo_semi|tiny_coco|voc|voc_semi)
	$(PY) -m wseg.pipeline bbox-seg --setting $(SETTING)

box2seg: $(STAMP) ## Box2Seg chain, restartable: GrabCut store -> pretrain -> main (SETTING=demo|tiny_coco|voc)
	$(PY) -m wseg.pipeline box2seg --setting $(SETTING)

box2tag: $(STAMP) ## Box2Tag chain, restartable: class networks -> pseudo GT -> final (SETTING=demo|tiny_coco|voc, RULE=overlap-void|...|all)
	$(PY) -m wseg.pipeline box2tag --setting $(SETTING) --rule $(RULE)

scribbles: $(STAMP) ## PAM scribble gap study, restartable (SETTING=demo|voc|voc_original)
	$(PY) -m wseg.pipeline scribbles --setting $(SETTING)

compare: $(STAMP) ## one-command method comparison table (DATA=synthetic|camvid|tiny_coco|voc [ROOT=dir]; rows resume)
	$(PY) -m wseg.compare --data $(DATA) $(if $(ROOT),--root $(ROOT))

gpu-check: $(STAMP) ## on a CUDA machine: every GPU path in one run (<= 8 min), table in runs/gpu_check/results.md
	$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

bench-methods: $(STAMP) ## per-family method tables on the synthetic data (long on CPU)
	$(PY) -m benchmarks em_family self_correction box2seg_ablation box2tag_pseudo_gt scribbles

clean: ## remove generated data and run outputs (not the virtualenv)
	rm -rf data/synthetic runs outputs lightning_logs wandb

.PHONY: help install demo test test-slow lint format selfcorr bbox-seg box2seg box2tag scribbles compare bench gpu-check bench-methods clean
