"""`sglang-indexcache` command line: plan, patch, make-model."""

from __future__ import annotations

import argparse
import json
import sys

from sglang_indexcache.schedule import PP_HANDOFFS, IndexCacheFlags, ScheduleError


def _plan(args) -> int:
    from sglang_indexcache.integration.model_config import _loaded_sharing, memory_of, schedule_for_model, text_config
    from sglang_indexcache.kv_memory import host_memory_line, kv_memory_line

    overrides = json.loads(args.json_model_override_args)
    text = text_config(args.model_path, overrides)
    flags = IndexCacheFlags(args.pattern, args.freq, args.offset, args.pp_handoff)
    schedule = schedule_for_model(
        model_path=args.model_path,
        num_layers=text.num_hidden_layers,
        loaded=_loaded_sharing(text),
        overrides=overrides,
        flags=flags,
        pp_size=args.pp_size,
        dummy_weights=args.load_format == "dummy",
    )
    mem = memory_of(text, schedule, args.kv_cache_dtype)
    pp = None
    if args.pp_size > 1:
        from sglang_indexcache.pipeline import handoff_report
        from sglang_indexcache.schedule import Role

        full = [r.role is Role.FULL for r in schedule.layers]  # as configured: promotions are the handoff's
        pp = handoff_report(full, args.pp_size, int(getattr(text, "index_topk", 0) or 0), schedule.stage_starts)
    if args.json:
        print(json.dumps({**schedule.to_dict(), "kv_memory": mem, "pipeline": pp}, indent=2))
    else:
        print(schedule.table())
        if mem is not None:
            print(kv_memory_line(mem, schedule.num_layers, args.kv_cache_dtype))
            print(host_memory_line(mem, schedule.num_layers))
        if pp is not None:
            from sglang_indexcache.pipeline import report_lines

            print("\n".join(report_lines(pp, args.pp_size)))
    return 0


def _patch(args) -> int:
    from sglang_indexcache.integration.patches import PatchSet

    ps = PatchSet.load(args.target)
    if args.action == "apply":
        written = ps.apply()
        print(f"applied: {len(written)} file(s) written" + ("" if written else " (already applied)"))
    elif args.action == "revert":
        written = ps.revert()
        print(f"reverted: {len(written)} file(s) written" + ("" if written else " (nothing to revert)"))
    status = ps.status()
    print(status.report())
    if args.action == "check" and not status.applied:
        print("check failed: the patch set is not (exactly) applied; run `sglang-indexcache patch apply`")
        return 1
    return 0


def _make_model(args) -> int:
    from sglang_indexcache.tiny_model import make_model, make_shape

    if (args.preset is None) == (args.shape is None):
        raise SystemExit("make-model: give exactly one of --preset or --shape")
    if args.preset is not None:
        out = make_model(args.preset, args.out)
    else:
        out = make_shape(args.shape, args.out, num_layers=args.num_layers, num_heads=args.num_heads)
    print(out)
    return 0


def _bundle(args) -> int:
    from sglang_indexcache import bundle

    try:
        return args.bundle_fn(args)
    except bundle.BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _calibration(args):
    """(calibration, held-out) token sequences from --text-file or Python's bundled docs."""
    from sglang_indexcache.tiny_model import _training_text
    from sglang_indexcache.tools.hf import tokenize_texts

    text = open(args.text_file).read() if args.text_file else _training_text()
    seqs = tokenize_texts(args.model_path, [text], seq_len=args.seq_len)
    n = args.num_seqs
    if len(seqs) < n + args.held_out:
        raise SystemExit(f"text gives {len(seqs)} sequences of {args.seq_len} tokens; need {n + args.held_out}")
    return seqs[:n], seqs[n : n + args.held_out]


def _overlap(args) -> int:
    from pathlib import Path

    from sglang_indexcache.tools import overlap

    seqs, _ = _calibration(args)
    result = overlap.analyse(args.model_path, seqs)
    out = Path(args.out)
    overlap.write(result, out)
    overlap.plot(result, out / "overlap.png")
    print(overlap.summary(result))
    print(f"wrote {out / 'overlap.json'} and {out / 'overlap.png'}")
    return 0


def _search(args) -> int:
    import json
    from pathlib import Path

    from sglang_indexcache.integration.model_config import stage_starts
    from sglang_indexcache.tools import search
    from sglang_indexcache.tools.hf import HFEvaluator, load

    calib, _ = _calibration(args)
    fixed = stage_starts_for(args, stage_starts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server_args = args.server_args.split() if args.server_args else []
    if args.evaluator == "sglang":
        from sglang_indexcache.checkpoint import buildable_indexer_layers
        from sglang_indexcache.integration.model_config import text_config
        from sglang_indexcache.tools.sglang_eval import SwitchingEvaluator

        # nothing loaded here (the model may be far too large for this process)
        n = text_config(args.model_path).num_hidden_layers
        built = buildable_indexer_layers(args.model_path, n)
        all_full = "".join("F" if i in built else "S" for i in range(n))
        evaluator = SwitchingEvaluator(args.model_path, calib, all_full=all_full, server_url=args.server,
                                       admin_key=args.admin_key, server_args=server_args, device=args.device,
                                       log_dir=out)
    elif args.evaluator == "sglang-restart":
        from sglang_indexcache.tools.sglang_eval import SGLangEvaluator

        _, ctl = load(args.model_path)
        evaluator = SGLangEvaluator(args.model_path, calib, all_full=ctl.all_full, server_args=server_args,
                                    device=args.device)
    else:
        evaluator = HFEvaluator(args.model_path, calib)
    try:
        result = search.greedy_search(evaluator, args.targets, fixed_full=fixed,
                                      state_file=Path(args.state) if args.state else out / "search-state.json",
                                      progress=not args.quiet)
    finally:
        evaluator.close()
    (out / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    search.plot(result, out / "search.png")
    print(f"baseline (all Full {result['baseline']['pattern']}): loss {result['baseline']['loss']:.4f}")
    for count, pattern in result["patterns"].items():
        print(f"{count:>3}/{result['num_layers']} Full: loss {result['losses'][count]:.4f}  --index-cache-pattern {pattern}")
    print(f"wrote {out / 'search.json'} and {out / 'search.png'} ({result['evaluations']} patterns evaluated)")
    return 0


def _distill(args) -> int:
    import json
    from pathlib import Path

    from sglang_indexcache.tools import distill

    calib, _ = _calibration(args)
    info = distill.distill(args.model_path, args.pattern, calib, steps=args.steps, lr=args.lr,
                           batch_size=args.batch_size, out=args.out, seed=args.seed)
    Path(args.out, "distill.json").write_text(json.dumps(info, indent=2) + "\n")
    h = info["history"]
    print(f"multi-layer KL {h[0]['kl']:.4f} -> {h[-1]['kl']:.4f} over {args.steps} steps; wrote {args.out}")
    print(f"serve it with: --model-path {args.out} --attention-backend indexcache --index-cache-pattern {args.pattern}")
    return 0


def _train_model(args) -> int:
    from sglang_indexcache.tools.train import prepare_data, train_model

    if args.prepare_only:
        data = prepare_data(args.out, args.preset)
        print(f"{data['corpus_tokens']} tokens of {data['corpus']} and the tokenizer in {args.out}")
        return 0

    info = train_model(args.out, args.preset, dense_steps=args.dense_steps, sparse_steps=args.sparse_steps,
                       batch_size=args.batch_size, seq_len=args.seq_len, seed=args.seed, device=args.device)
    print(f"trained {info['params']} parameters ({info['preset']}, context {info['seq_len']}, "
          f"index_topk {info['index_topk']}) on {info['device']} in {info['train_s']} s; wrote {args.out}")
    return 0


def stage_starts_for(args, stage_starts) -> list:
    from transformers import AutoConfig

    n = AutoConfig.from_pretrained(args.model_path).num_hidden_layers
    return stage_starts(n, args.pp_size) if args.pp_size > 1 else [0]


def _add_calibration_args(p) -> None:
    p.add_argument("--model-path", required=True)
    p.add_argument("--text-file", help="calibration text (default: the package's corpus, CPython 3.11.7's documentation topics)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--num-seqs", type=int, default=4, help="calibration sequences")
    p.add_argument("--held-out", type=int, default=0, help="sequences after the calibration ones kept aside")
    p.add_argument("--out", required=True)


def build_parser() -> argparse.ArgumentParser:
    from sglang_indexcache.tiny_model import PRESETS, SHAPES

    p = argparse.ArgumentParser(prog="sglang-indexcache", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    plan = sub.add_parser("plan", help="print every layer's IndexCache role and why")
    plan.add_argument("--model-path", required=True)
    plan.add_argument("--pp-size", type=int, default=1)
    plan.add_argument("--pattern", dest="pattern", help="as --index-cache-pattern")
    plan.add_argument("--freq", type=int, help="as --index-cache-freq")
    plan.add_argument("--offset", type=int, help="as --index-cache-offset")
    plan.add_argument("--pp-handoff", choices=PP_HANDOFFS, default="recompute")
    plan.add_argument("--json-model-override-args", default="{}")
    plan.add_argument("--load-format", default="auto", help="'dummy' skips the indexer-weight check")
    plan.add_argument("--json", action="store_true", help="print JSON instead of the table")
    plan.add_argument("--kv-cache-dtype", default="bf16", choices=("bf16", "fp8_e4m3"),
                      help="the latent KV dtype, as SGLang's --kv-cache-dtype (default bf16; fp8_e4m3: 656 B per "
                           "token-layer on GLM-5 / DeepSeek-V3.2, SGLang's scaled FP8 layout)")
    plan.set_defaults(fn=_plan)

    patch = sub.add_parser("patch", help="apply/check/revert/status of the SGLang patch set")
    patch.add_argument("action", choices=["apply", "check", "revert", "status"])
    patch.add_argument("--target", help="site-packages holding sglang/ (default: the installed one)")
    patch.set_defaults(fn=_patch)

    mm = sub.add_parser("make-model", help="write a tiny DSA checkpoint or a config-only real shape")
    mm.add_argument("out")
    mm.add_argument("--preset", choices=sorted(PRESETS))
    mm.add_argument("--shape", choices=sorted(SHAPES))
    mm.add_argument("--num-layers", type=int)
    mm.add_argument("--num-heads", type=int)
    mm.set_defaults(fn=_make_model)

    ov = sub.add_parser("overlap", help="top-k overlap between every pair of layers (JSON + PNG heat map)")
    _add_calibration_args(ov)
    ov.set_defaults(fn=_overlap)

    se = sub.add_parser("search", help="greedy (training-free) pattern search on LM loss")
    _add_calibration_args(se)
    se.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.25, 0.125],
                    help="retentions (fractions of layers kept Full) or Full-layer counts")
    se.add_argument("--evaluator", choices=["transformers", "sglang", "sglang-restart"], default="transformers",
                    help="sglang: one --index-cache-switchable server, its pattern switched per candidate; "
                         "sglang-restart: a server per candidate")
    se.add_argument("--server", help="--evaluator sglang: the URL of a running --index-cache-switchable server "
                                     "(default: start one)")
    se.add_argument("--admin-key", help="with --server: its --admin-api-key")
    se.add_argument("--server-args", default="", help="extra launch_server arguments for --evaluator sglang*")
    se.add_argument("--device", default="cpu", help="--evaluator sglang: cpu or cuda")
    se.add_argument("--pp-size", type=int, default=1, help="keep the first layer of every pipeline stage Full")
    se.add_argument("--state", help="resumable state file (default: OUT/search-state.json)")
    se.add_argument("--quiet", action="store_true")
    se.set_defaults(fn=_search)

    di = sub.add_parser("distill", help="train the retained indexers of a pattern (multi-layer KL)")
    _add_calibration_args(di)
    di.add_argument("--pattern", required=True)
    di.add_argument("--steps", type=int, default=200)
    di.add_argument("--lr", type=float, default=1e-3)
    di.add_argument("--batch-size", type=int, default=4)
    di.add_argument("--seed", type=int, default=0)
    di.set_defaults(fn=_distill)

    from sglang_indexcache.tools.train import PRESETS

    tr = sub.add_parser("train-model", aliases=["train-small"],
                        help="train a 12-layer DSA model for the pattern tools (presets: tools/train.py)")
    tr.add_argument("out")
    tr.add_argument("--preset", choices=sorted(PRESETS), default="small",
                    help="small: context 128, top-k 32 (CPU, minutes); long: context 2048, top-k 128 (a GPU job)")
    tr.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    tr.add_argument("--dense-steps", type=int, default=None, help="default: the preset's")
    tr.add_argument("--sparse-steps", type=int, default=None, help="default: the preset's")
    tr.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    tr.add_argument("--seq-len", type=int, default=None, help="a shorter context than the preset's (smoke tests)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--prepare-only", action="store_true",
                    help="write the tokenizer and token stream only (train elsewhere on the same tokens)")
    tr.set_defaults(fn=_train_model)

    from sglang_indexcache import bundle

    bun = sub.add_parser("bundle", help="offline wheel bundle: build here, install on an air-gapped host")
    bsub = bun.add_subparsers(dest="bundle_action", required=True)
    bb = bsub.add_parser("build", help="pip download, strip, pack and split wheels into a bundle folder")
    bundle.add_build_arguments(bb)
    bb.set_defaults(fn=_bundle, bundle_fn=bundle.run_build)
    bi = bsub.add_parser("install", help="verify a bundle and pip-install it into a target folder")
    bundle.add_install_arguments(bi)
    bi.set_defaults(fn=_bundle, bundle_fn=bundle.run_install)
    br = bsub.add_parser("resplit", help="cut a bundle's parts again at another size (no wheels, no network)")
    bundle.add_resplit_arguments(br)
    br.set_defaults(fn=_bundle, bundle_fn=bundle.run_resplit)
    return p


def main(argv=None) -> int:
    from sglang_indexcache.integration.patches import PatchError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ScheduleError, PatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
