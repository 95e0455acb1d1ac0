"""`python -m sglang_indexcache.bench compact FILE...`: bench_serving's per-request output
files, made small enough to commit.

bench_serving writes every streamed token's inter-token latency (`itls`, seconds) at full
float precision: 80,000 of them in a concurrency-16 replay of the flash-12 trace, 97 % of the
gzipped file (650 of 672 KB; `generated_texts` is under 1 %). Every call to the device machine
carries the checkout, so each such file costs staging room in every later session. Rounded to
1 us (far below what an HTTP stream's timing resolves) the same file gzips to 204 KB. Nothing
else changes: the other fields are written back as they were read, and the file is checked
after rounding. Figures in results.json come from the unrounded files on the device.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from sglang_indexcache.bench.common import read_text

DIGITS = 6  # seconds: 1 us
TOLERANCE_S = 0.5e-6 + 1e-12


def _round_itls(record: dict) -> dict:
    itls = record.get("itls")
    if not isinstance(itls, list):
        raise ValueError("no `itls` list: not a bench_serving output record")
    out = dict(record)
    out["itls"] = [None if row is None else [round(v, DIGITS) for v in row] for row in itls]
    return out


def _check(before: dict, after: dict) -> None:
    same = lambda k: json.dumps(before[k]) == json.dumps(after[k])  # noqa: E731 (NaN != NaN)
    if before.keys() != after.keys() or not all(same(k) for k in before if k != "itls"):
        raise AssertionError("a field other than itls changed")
    for row_b, row_a in zip(before["itls"], after["itls"], strict=True):
        if (row_b is None) != (row_a is None) or row_b is not None and len(row_b) != len(row_a):
            raise AssertionError("an itls row changed its length")
        if row_b is not None and any(abs(b - a) > TOLERANCE_S for b, a in zip(row_b, row_a)):
            raise AssertionError("an itl moved by more than 0.5 us")


def compact(path: Path) -> tuple:
    """Round `path`'s itls to 1 us and write it gzipped: FILE.jsonl becomes FILE.jsonl.gz (the
    original removed), FILE.jsonl.gz is rewritten in place. Returns (bytes before, bytes after,
    the written path). Raises ValueError for a file that is not bench_serving's output."""
    path = Path(path)
    gz = path.suffix == ".gz"
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"{path}: not a .jsonl or .jsonl.gz file")
    text = read_text(path)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty")
    out_lines = []
    for n, line in enumerate(lines, 1):
        before = json.loads(line)
        try:
            after = _round_itls(before)
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: {e}") from None
        line_out = json.dumps(after)
        _check(before, json.loads(line_out))  # what is written, read back
        out_lines.append(line_out)
    target = path if gz else path.with_name(path.name + ".gz")
    tmp = target.with_name(target.name + ".tmp")
    with gzip.open(tmp, "wt") as fh:
        fh.write("\n".join(out_lines) + "\n")
    size_before = path.stat().st_size
    os.replace(tmp, target)
    if not gz:
        path.unlink()
    return size_before, target.stat().st_size, target


def compact_cmd(args) -> int:
    total_before = total_after = 0
    for f in args.files:
        before, after, target = compact(Path(f))
        total_before += before
        total_after += after
        print(f"{target}: {before:,} -> {after:,} bytes")
    print(f"{len(args.files)} files: {total_before:,} -> {total_after:,} bytes")
    return 0
