"""`sglang-indexcache` command line: plan, patch, make-model."""

from __future__ import annotations

import argparse
import json
import sys

from sglang_indexcache.schedule import PP_HANDOFFS, IndexCacheFlags, ScheduleError


def _plan(args) -> int:
    from sglang.srt.utils.hf_transformers_utils import get_config, get_hf_text_config

    from sglang_indexcache.integration.model_config import _loaded_sharing, memory_of, schedule_for_model
    from sglang_indexcache.schedule import kv_memory_line

    overrides = json.loads(args.json_model_override_args)
    hf_config = get_config(args.model_path, trust_remote_code=True, model_override_args=overrides)
    text = get_hf_text_config(hf_config)
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
    mem = memory_of(text, schedule, args.kv_bytes)
    if args.json:
        print(json.dumps({**schedule.to_dict(), "kv_memory": mem}, indent=2))
    else:
        print(schedule.table())
        if mem is not None:
            print(kv_memory_line(mem, schedule.num_layers, "bf16" if args.kv_bytes == 2 else f"{args.kv_bytes}-byte"))
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
    plan.add_argument("--kv-bytes", type=int, default=2, choices=(1, 2), help="bytes per latent KV value (2: bf16, 1: fp8)")
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

    from sglang_indexcache import bundle

    bun = sub.add_parser("bundle", help="offline wheel bundle: build here, install on an air-gapped host")
    bsub = bun.add_subparsers(dest="bundle_action", required=True)
    bb = bsub.add_parser("build", help="pip download, strip, pack and split wheels into a bundle folder")
    bundle.add_build_arguments(bb)
    bb.set_defaults(fn=_bundle, bundle_fn=bundle.run_build)
    bi = bsub.add_parser("install", help="verify a bundle and pip-install it into a target folder")
    bundle.add_install_arguments(bi)
    bi.set_defaults(fn=_bundle, bundle_fn=bundle.run_install)
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
