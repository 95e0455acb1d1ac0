"""`make bench`: SGLang's `dsa` backend against `indexcache`, side by side on one CUDA GPU.

Configurations of one model, run one after another in one invocation (`common.configs`):
  a  upstream `dsa`, every layer Full
  b  `indexcache`, every layer Full (`--index-cache-pattern F...F`)
  c  `indexcache`, a pattern through our flag (1/4 of indexers by default)
  d  upstream native sharing with that pattern (`--json-model-override-args`
     '{"indexer_types": null, "index_topk_pattern": ...}')
  e  `indexcache` at lower retention (every 8th layer; on GLM-5.2 every other declared Full)
  f  `indexcache` with a pattern of the shape the greedy search found (12 layers)

Workloads, one module each, all writing one JSON (commands, GPU, versions) and PNGs:
  agentic  multi-turn agent sessions replayed by SGLang's `bench_serving` (`agentic.py`,
           traces from `trace.py`): TTFT per turn against context, ITL, sessions/min,
           cache hit rate, at several concurrencies; `--repeats` and `--servers` replay a
           level again on one server and on several, `merge` joins separate invocations'
           servers (`agentic_runs.py`)
  prefill  batch-1 prefill through SGLang's `one_batch` (`prefill.py`), the paper's table
  decode   B concurrent requests at L tokens of context on a server (`decode.py`)
  turn     one turn of +N new tokens on a long cached prefix, timed and recorded with
           SGLang's profiler, kernels summarised by family (`turn.py`; the trace summary in `profile.py`,
           also behind `run --phase decode --profile-steps N`)
  pp       pipeline parallel (PP 2): each stage-boundary handoff (dsa's transfer, our recompute,
           transfer, align), prefill per length and a decode point, with the boundary bytes and
           stage times measured in the servers (`pp.py`, `integration/pp_probe.py`)
  topk     the indexer's top-k kernels alone (SGLang's, FlashInfer's, ours) on the same
           causal scores, timed and checked against torch.topk (`topk.py`)
  search   the pattern search's cost: one switchable server against a server per candidate,
           evaluations per hour and a whole search projected (`search.py`)
`report.py` prints tables and draws plots of a results file. The first server on a fresh
machine spends minutes in kernel JIT during graph capture.

    python -m sglang_indexcache.bench agentic --out out/agentic --shape flash-12
    python -m sglang_indexcache.bench run --out out/paper --phase prefill
    python -m sglang_indexcache.bench run --out out/paper --phase decode
    python -m sglang_indexcache.bench turn --out out/turn --shape flash-12
    python -m sglang_indexcache.bench topk --out out/topk
    python -m sglang_indexcache.bench search --out out/search --shape glm-5.2-tp8
    python -m sglang_indexcache.bench report out/agentic/results.json --png out/agentic/agentic.png
    python -m sglang_indexcache.bench merge call1/results.json call2/results.json --out out/joined
"""
