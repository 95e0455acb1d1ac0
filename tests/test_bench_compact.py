"""`bench compact`: bench_serving's per-request files with itls rounded to 1 us, gzipped."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from sglang_indexcache.bench import compact
from sglang_indexcache.bench.__main__ import main as bench_main

ROOT = Path(__file__).resolve().parents[1]
# a committed concurrency-1 replay of the flash-12 trace (session 28, server c2)
REPLAY = ROOT / "benchmarks/results/h200-2026-12-04-session28/fl-c2/c-c1.jsonl.gz"


def _record(**kw) -> dict:
    rec = {"backend": "sglang-oai-chat", "request_rate": math.inf, "std_itl_ms": math.nan, "duration": 12.5,
           "ttfts": [0.1234567891, 0.2], "itls": [[1.1259250349999093, 0.0034559220000573987], None, []],
           "generated_texts": ["a", "b", "c"]}
    rec.update(kw)
    return rec


def test_a_raw_file_becomes_gzipped_with_itls_rounded_to_a_microsecond(tmp_path):
    src = tmp_path / "c-c16.jsonl"
    records = [_record(), _record(duration=13.0)]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))  # as bench_serving appends
    assert bench_main(["compact", str(src)]) == 0
    assert not src.exists()
    back = [json.loads(line) for line in gzip.open(tmp_path / "c-c16.jsonl.gz", "rt").read().splitlines()]
    assert len(back) == 2
    for before, after in zip(records, back):
        assert after["itls"] == [[1.125925, 0.003456], None, []]
        for k in before:  # every other field as it was, Infinity and NaN included
            if k != "itls":
                assert json.dumps(after[k]) == json.dumps(before[k]), k


def test_a_committed_replay_still_gives_the_turn_figures_computed_on_the_device(tmp_path):
    """On a real file: each turn's median ITL from the committed (compacted) file, compacted
    once more, equals what `bench agentic` computed on the device from the unrounded file
    (results.json's turns) to 0.5 us."""
    copy = tmp_path / REPLAY.name
    shutil.copy(REPLAY, copy)
    before = json.loads(gzip.open(REPLAY, "rt").read())
    compact.compact(copy)
    after = json.loads(gzip.open(copy, "rt").read())
    device = json.loads((REPLAY.parent / "results.json").read_text())["configs"]["c"]["levels"]["1"]["turns"]
    assert len(device) == len(after["itls"]) == before["completed"] > 0
    for row, itl in zip(device, after["itls"]):
        assert abs(statistics.median(itl) - row["itl_median_s"]) <= 0.5e-6 + 1e-12, row
    assert after["ttfts"] == before["ttfts"] == [row["ttft_s"] for row in device]
    assert after["generated_texts"] == before["generated_texts"]


def test_a_file_that_is_not_bench_servings_output_is_refused_by_line(tmp_path):
    other = tmp_path / "fpm.jsonl"
    other.write_text(json.dumps(_record()) + "\n" + json.dumps({"wall_time": 0.1}) + "\n")
    with pytest.raises(ValueError, match=r"fpm.jsonl: line 2: no `itls` list"):
        compact.compact(other)
    assert other.exists() and not (tmp_path / "fpm.jsonl.gz").exists()  # nothing written
    with pytest.raises(ValueError, match="not a .jsonl"):
        compact.compact(tmp_path / "results.json")
