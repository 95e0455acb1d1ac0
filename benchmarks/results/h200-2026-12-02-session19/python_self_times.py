"""The per-server comparison of README.md: for each server's profile, SGLang's own Python
functions (same call count as in the reference, at least 0.5 ms of self time there) against the
fastest (c) (dg-r0), the median ratio of their self times; and the self time of this package's
functions among each profile's 40 costliest. Run from this folder: python3 python_self_times.py"""
import json
import re
import statistics


def table(job, key):
    out = {}
    for name, v in json.load(open(f"{job}/results.json"))["configs"][key]["decode"]["profile"]["kernels"]["python"].items():
        row = out.setdefault(re.sub(r" at 0x[0-9a-f]+", "", name), {"self_us": 0, "calls": 0})
        row["self_us"] += v["self_us"]
        row["calls"] += v["calls"]
    return out


ref = table("dg-r0", "c")
for job in ("dg-on", "dg-off", "dg-r0", "dg-on2", "dg-pin"):
    for key, cfg in json.load(open(f"{job}/results.json"))["configs"].items():
        t = table(job, key)
        same = [n for n in t if n in ref and "sglang/" in n and ref[n]["calls"] == t[n]["calls"] and ref[n]["self_us"] > 500]
        ratio = statistics.median(t[n]["self_us"] / ref[n]["self_us"] for n in same)
        ours = sum(v["self_us"] for n, v in t.items() if "sglang_indexcache" in n)
        print(f"{job:7} ({key}) {cfg['decode']['log_gen_throughput_median']:6.1f} tok/s  SGLang functions x{ratio:.2f} "
              f"over {len(same)}  sglang_indexcache among the top 40: {ours:.0f} us")
