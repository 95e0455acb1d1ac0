#!/usr/bin/env bash
# On an air-gapped CUDA host: install the offline bundle and this package into $SG, apply
# the patch set there, and print what is installed. Then `source scripts/gpu_host.sh env`
# in later shells (or export PYTHONPATH=$SG yourself).
#   bash scripts/gpu_host.sh install BUNDLE_DIR     # verify + install (about 1 minute)
#   bash scripts/gpu_host.sh test [pytest args]     # the gpu-marked tests
#   bash scripts/gpu_host.sh bench agentic|run ...  # python -m sglang_indexcache.bench ...
#   bash scripts/gpu_host.sh study-long MODEL OUT [train-model options]  # train the long preset, study it (no engine)
#   bash scripts/gpu_host.sh jit-pack OUT.tgz       # the kernels SGLang compiled here, for the next host
#   bash scripts/gpu_host.sh jit-restore IN.tgz     # ... unpacked into ~/.cache (install does it: BUNDLE/jit-cache.tgz, else benchmarks/jit/)
set -euo pipefail
SG=${SG:-/tmp/sg}
PY=${PY:-python3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH=$SG${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SG/bin:$PATH
export PYTHONUNBUFFERED=1
cmd=${1:-}
shift || true
case "$cmd" in
  install)
    bundle=${1:?bundle folder}
    $PY "$bundle/install_bundle.py" --from "$bundle" --target "$SG"
    # SGLang's kernels as an earlier host of this kind compiled them: the bundle's own, else the
    # checkout's (benchmarks/jit/, see its README)
    for jit in "$bundle/jit-cache.tgz" "$here/benchmarks/jit/h200-sglang-0.5.23.tar.xz"; do
      if [ -f "$jit" ]; then bash "$here/scripts/gpu_host.sh" jit-restore "$jit"; break; fi
    done
    # this package, with its entry point (SGLang finds plugins through package metadata)
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SG" "$here"
    # from / so the installed copy (with its bundled patches) is imported, not the checkout
    (cd / && $PY -m sglang_indexcache.cli patch apply --target "$SG" && $PY -m sglang_indexcache.cli patch check --target "$SG")
    $PY - <<'PY'
import torch, triton, sglang, importlib.metadata as md
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "sglang", md.version("sglang"))
print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
eps = [e.name for e in md.entry_points(group="sglang.srt.plugins")]
print("plugins", eps)
PY
    ;;
  test)
    cd "$here" && $PY -m pytest -m gpu -v -rA -p no:cacheprovider -W ignore::DeprecationWarning "$@"
    ;;
  bench)
    cd "$here" && $PY -m sglang_indexcache.bench "$@"
    ;;
  study-long)
    # MODEL must hold a folder prepared on the CPU machine (train-model --prepare-only): the
    # engine check runs there afterwards and needs the same tokenizer and token stream; a folder
    # prepared here would tokenize this host's standard library (session 7 lost its tokenizer so).
    model=${1:?model folder}; out=${2:?results folder}; shift 2  # then train-model options, if any
    [ -f "$model/data.json" ] || { echo "study-long: $model is not a prepared folder (no data.json); carry the one train-model --prepare-only made" >&2; exit 2; }
    cd "$here" && $PY -m sglang_indexcache.cli train-model --preset long --device cuda "$model" "$@"
    $PY -m sglang_indexcache.tools.study --model-path "$model" --device cuda --skip-engine \
      --calibration 8 --held-out 32 --out "$out"
    ;;
  jit-pack)
    # SGLang points its own JIT cache and DeepGEMM's, Triton's, FlashInfer's and the CUDA driver's
    # under ~/.cache/sglang, to be warmed as one folder (sglang/srt/environ.py). Compiling them took
    # 209 s of the first server's start on a fresh H200 in session 15; later servers skipped it
    out=${1:?output .tgz}
    [ -d "$HOME/.cache/sglang" ] || { echo "jit-pack: no $HOME/.cache/sglang (no server has run here)" >&2; exit 2; }
    tar czf "$out" -C "$HOME" --exclude='.cache/sglang/*/locks' --exclude='.cache/sglang/*/.staging-*' .cache/sglang
    echo "jit-pack: $(tar tzf "$out" | grep -vc '/$') files, $(du -h "$out" | cut -f1) in $out"
    ;;
  jit-restore)
    # every cache there is keyed by a hash of what it compiled (SGLang's own re-hashes an entry's
    # recorded sources before using it), so an entry built from other sources is rebuilt, not loaded
    in=${1:?a jit-pack .tgz or .tar.xz}
    mkdir -p "$HOME" && $PY -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="tar")' "$in" "$HOME"
    echo "jit-restore: $(find "$HOME/.cache/sglang" -type f | wc -l) files under $HOME/.cache/sglang"
    ;;
  env) ;;
  *) echo "usage: $0 install BUNDLE | test [...] | bench agentic|turn|run [...] | study-long MODEL OUT | jit-pack OUT | jit-restore IN" >&2; exit 2 ;;
esac
