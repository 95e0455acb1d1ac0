# sglang-indexcache: `make install` then `make test`; `make demo` runs the main job.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= models

.PHONY: install test demo bench bench-paper plan clean small-model study long-model study-long soak

# The venv gets exactly requirements/lock.txt (every package pinned with hashes; regenerate with
# `$(BIN)/python -m sglang_indexcache.envlock`), then this package without dependencies, then the
# patch set. INSTALLER=pip installs the same lock with pip instead of uv (slower). uv links
# site-packages to its cache; SGLang, the one package patched in place, is fetched afresh
# (--refresh-package) so a cache that an older patch tool wrote through cannot leak edited files.
INSTALLER ?= uv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/bootstrap.txt

# SGLang 0.5.23 and its closure (torch 2.14.1 included) are about 10 GB.
install: $(BIN)/python
ifeq ($(INSTALLER),pip)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
else
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes --refresh-package sglang requirements/lock.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
endif
	$(BIN)/sglang-indexcache patch apply
	$(BIN)/sglang-indexcache patch check

test:
	$(BIN)/python -m pytest -q --durations=20 -W ignore::DeprecationWarning -W ignore::UserWarning

$(MODELS)/glm-tiny/config.json:
	$(BIN)/sglang-indexcache make-model --preset glm-tiny $(MODELS)/glm-tiny

$(MODELS)/deepseek-tiny/config.json:
	$(BIN)/sglang-indexcache make-model --preset deepseek-tiny $(MODELS)/deepseek-tiny

# The main job on the embedded default: the tiny DSA models and their schedules.
# The main job on the embedded default: the tiny GLM-MoE-DSA model served on CPU by the
# real SGLang engine with the indexcache backend, under a small agentic workload.
demo: $(MODELS)/glm-tiny/config.json
	$(BIN)/sglang-indexcache plan --model-path $(MODELS)/glm-tiny --pattern FSSSSSFS
	$(BIN)/python -m sglang_indexcache.demo --model-path $(MODELS)/glm-tiny --pattern FSSSSSFS

# A bounded CPU soak: mixed agentic traffic with aborts, hang-ups and bad requests at a fixed
# seed; every kept answer is rerun solo (sglang_indexcache/soak.py). SOAK_S seconds of load.
SOAK_S ?= 120
soak: $(MODELS)/deepseek-tiny/config.json
	$(BIN)/python -m sglang_indexcache.soak --model-path $(MODELS)/deepseek-tiny --pattern FSSFSS \
		--duration $(SOAK_S) --seed 0 --out soak_results

# Side by side on a CUDA GPU (sglang_indexcache/bench/): agentic sessions replayed by SGLang's
# bench_serving, dsa vs indexcache (all-Full, native sharing, 1/4, every 8th, searched shape), at
# concurrency 1, 4, 16. BENCH_SHAPE=glm-5.2-tp8 for one TP rank of GLM-5.2 (78 layers).
# BENCH_SERVERS=N: N servers per configuration, interleaved, figures medians over all (a host
# whose speed differs between server processes: README, "Agentic sessions", session 19).
BENCH_OUT     ?= bench_results/agentic
BENCH_SHAPE   ?= flash-12
BENCH_SERVERS ?= 1
bench:
	$(BIN)/python -m sglang_indexcache.bench agentic --out $(BENCH_OUT) --shape $(BENCH_SHAPE) --servers $(BENCH_SERVERS)
	$(BIN)/python -m sglang_indexcache.bench report $(BENCH_OUT)/results.json --png $(BENCH_OUT)/agentic.png

# The paper's table: batch-1 prefill (one_batch) and 16 x 64K decode, dsa vs indexcache.
PAPER_OUT ?= bench_results/paper
bench-paper:
	$(BIN)/python -m sglang_indexcache.bench run --out $(PAPER_OUT)
	$(BIN)/python -m sglang_indexcache.bench report $(PAPER_OUT)/results.json --png $(PAPER_OUT)/bench.png

# The small trained 12-layer DSA model the pattern tools are demonstrated on (~12 min, CPU).
$(MODELS)/glm-small/config.json:
	$(BIN)/sglang-indexcache train-model --preset small $(MODELS)/glm-small
small-model: $(MODELS)/glm-small/config.json

# The 12-layer model at realistic sparsity (context 2048, index_topk 128): a GPU job
# (tools/train.py); on a CPU-only machine it runs, but for many hours.
$(MODELS)/glm-long/config.json:
	$(BIN)/sglang-indexcache train-model --preset long --device auto $(MODELS)/glm-long
long-model: $(MODELS)/glm-long/config.json

# Overlap, greedy search vs uniform, distillation, engine check on the small model.
study: $(MODELS)/glm-small/config.json
	$(BIN)/python -m sglang_indexcache.tools.study --model-path $(MODELS)/glm-small --out benchmarks/results/pattern-study

# The same study on the long model: transformers evaluations on the GPU where there is one,
# then the SGLang engine check (CPU server) added to the same study.json.
STUDY_LONG ?= benchmarks/results/pattern-study-long
study-long: $(MODELS)/glm-long/config.json
	$(BIN)/python -m sglang_indexcache.tools.study --model-path $(MODELS)/glm-long --device auto --skip-engine \
		--calibration 8 --held-out 32 --out $(STUDY_LONG)
	$(BIN)/python -m sglang_indexcache.tools.study --model-path $(MODELS)/glm-long --engine-only \
		--held-out 32 --engine-held-out 4 --out $(STUDY_LONG)

clean:
	rm -rf $(MODELS) .pytest_cache .hypothesis
