"""The SGLang engine as a search evaluator: prompt log-probabilities through the HTTP API.

A pattern is fixed when a server starts, so every candidate gets its own server, started
with `--index-cache-pattern` and `--disable-radix-cache`: no candidate can score on
another's cached prefix (or its own earlier requests).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from sglang_indexcache.server import Server
from sglang_indexcache.tools.search import evaluation_key


class SGLangEvaluator:
    name = "sglang"

    def __init__(self, model_path, sequences: Sequence[Sequence[int]], *, all_full: str,
                 server_args: Sequence[str] = (), device: str = "cpu", log_dir=None):
        self.model_path = str(model_path)
        self.sequences = [list(s) for s in sequences]
        self.all_full = all_full
        self.num_layers = len(all_full)
        self.server_args = list(server_args)
        self.device = device
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="indexcache-search-"))
        self.key = evaluation_key(self.name, model_path, self.sequences, [device, *self.server_args])

    def loss(self, pattern: str) -> float:
        args = ["--attention-backend", "indexcache", "--index-cache-pattern", pattern,
                "--disable-radix-cache", *self.server_args]
        if self.device == "cpu":
            args += ["--sleep-on-idle"]
        with Server(self.model_path, args, log=self.log_dir / f"{pattern}.log", device=self.device) as srv:
            total, count = 0.0, 0
            for seq in self.sequences:
                out = srv.generate(seq, 1, logprobs=True)
                lps = [x[0] for x in out["meta_info"]["input_token_logprobs"][1:]]
                total -= sum(lps)
                count += len(lps)
        return total / count

    def close(self) -> None:
        pass
