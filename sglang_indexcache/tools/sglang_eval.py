"""The SGLang engine as a search evaluator: prompt log-probabilities through the HTTP API.

`SwitchingEvaluator` (`search --evaluator sglang`): one `--index-cache-switchable` server, its
pattern switched per candidate (`integration/switch.py`; a switch flushes the radix cache, so
no candidate scores on another's cached prefix). `SGLangEvaluator` (`--evaluator
sglang-restart`): a server per candidate, started with `--index-cache-pattern` and
`--disable-radix-cache`; what a stock server allows, kept to measure the switching one against.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from sglang_indexcache.server import Server, post_json
from sglang_indexcache.tools.search import evaluation_key


def mean_nll(outputs: Sequence[dict]) -> float:
    """Mean negative log-probability of the prompt tokens after the first, over `/generate` answers."""
    lps = [x[0] for out in outputs for x in out["meta_info"]["input_token_logprobs"][1:]]
    return -sum(lps) / len(lps)


class SGLangEvaluator:
    name = "sglang"  # its state files keep their key

    def __init__(self, model_path, sequences: Sequence[Sequence[int]], *, all_full: str,
                 server_args: Sequence[str] = (), device: str = "cpu", log_dir=None, env: Optional[dict] = None):
        self.model_path = str(model_path)
        self.env = dict(env or {})
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
        with Server(self.model_path, args, log=self.log_dir / f"{pattern}.log", device=self.device, env=self.env) as srv:
            return mean_nll([srv.generate(seq, 1, logprobs=True) for seq in self.sequences])

    def close(self) -> None:
        pass


class SwitchingEvaluator:
    """One server for the whole search: a `--index-cache-switchable` server whose pattern is
    switched per candidate (POST /index_cache/pattern, which flushes its radix cache), and the
    calibration set scored as one batched `/generate`. Either started here once, or an
    existing one (`server_url` and its `admin_key`)."""

    name = "sglang-switch"

    def __init__(self, model_path, sequences: Sequence[Sequence[int]], *, all_full: str,
                 server_url: Optional[str] = None, admin_key: Optional[str] = None,
                 server_args: Sequence[str] = (), device: str = "cpu", log_dir=None, env: Optional[dict] = None):
        self.sequences = [list(s) for s in sequences]
        self.all_full = all_full
        self.num_layers = len(all_full)
        self.server = None
        if server_url is None:
            admin_key = secrets.token_hex(16)
            args = ["--attention-backend", "indexcache", "--index-cache-pattern", all_full, "--index-cache-switchable",
                    "--admin-api-key", admin_key, *server_args]
            args += ["--sleep-on-idle"] if device == "cpu" else ["--disable-cuda-graph"]
            log = Path(log_dir or tempfile.mkdtemp(prefix="indexcache-search-")) / "switchable-server.log"
            self.server = Server(model_path, args, log=log, device=device, env=env).start()
            server_url = self.server.url
        elif admin_key is None:
            raise ValueError("an existing switchable server needs its --admin-api-key")
        self.url, self.admin_key = server_url.rstrip("/"), admin_key
        self.key = evaluation_key(self.name, model_path, self.sequences, [device, *server_args])

    def loss(self, pattern: str) -> float:
        post_json(self.url + "/index_cache/pattern", {"pattern": pattern}, token=self.admin_key, timeout=3600)
        return mean_nll(post_json(self.url + "/generate", {
            "input_ids": self.sequences, "return_logprob": True, "logprob_start_len": 0,
            "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}}, timeout=3600))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
