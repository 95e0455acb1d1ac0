#!/usr/bin/env bash
# On an air-gapped CUDA host: install the offline bundle and this package into $SG, apply
# the patch set there, and print what is installed. Then `source scripts/gpu_host.sh env`
# in later shells (or export PYTHONPATH=$SG yourself).
#   bash scripts/gpu_host.sh install BUNDLE_DIR     # verify + install (about 1 minute)
#   bash scripts/gpu_host.sh test [pytest args]     # the gpu-marked tests
#   bash scripts/gpu_host.sh bench agentic|run ...  # python -m sglang_indexcache.bench ...
#   bash scripts/gpu_host.sh study-long MODEL OUT [train-model options]  # train the long preset, study it (no engine)
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
  env) ;;
  *) echo "usage: $0 install BUNDLE | test [...] | bench agentic|turn|run [...] | study-long MODEL OUT" >&2; exit 2 ;;
esac
