"""Validation at the door: a request that would crash a scheduler is refused with HTTP 400.

SGLang 0.5.23 range-checks `token_ids_logprob` but not the prompt's own token ids: one
`/generate {"input_ids": [1000000000]}` raised IndexError in the embedding on CPU and killed
the scheduler, and so the server, for every user (on CUDA it is an out-of-bounds read).
`TokenizerManager._validate_one_request` runs for every request of every route (`/generate`,
the OpenAI-compatible ones, each element of a batch) after tokenization and before anything
is sent to the scheduler; a ValueError there is answered with HTTP 400 and the message. This
module adds the missing check there, through the plugin API (a BEFORE hook), and imports no
SGLang itself.

Upstream: sgl-project/sglang issue #31597 (item 3) and pull requests #31908 (open) and #35903
(closed) propose the same check in `_validate_one_request`. Remove this hook once SGLang
range-checks prompt token ids itself.
"""

from __future__ import annotations

from array import array
from typing import Any, Optional, Sequence

import numpy as np

TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager._validate_one_request"


def check_token_ids(input_ids: Optional[Sequence[Any]], vocab_size: int, field: str = "input_ids") -> None:
    """Raise ValueError naming `field` unless `input_ids` is empty/None or a flat list of ints in [0, vocab_size)."""
    if input_ids is None:
        return
    try:
        ids = array("q", input_ids)  # C speed on 128K-token prompts; refuses floats, strings, lists
    except (TypeError, OverflowError, ValueError):
        raise ValueError(f"{field} must be a flat list of integer token ids in [0, {vocab_size})") from None
    if not ids:
        return
    # The range check on the array's buffer: Python's min() and max() over the array box every id
    # and took 1.3 of the 1.8 ms a 32K-token prompt cost (session 38, 2 cores); this, about 0.05.
    view = np.frombuffer(ids, dtype=np.int64)
    if view.min() < 0 or view.max() >= vocab_size:
        pos = int(np.flatnonzero((view < 0) | (view >= vocab_size))[0])
        raise ValueError(f"{field}[{pos}] is {ids[pos]}, out of the vocabulary: valid token ids are [0, {vocab_size})")


def before_validate_one_request(manager, obj, input_ids, *args, **kwargs):
    """BEFORE hook on `TokenizerManager._validate_one_request(obj, input_ids)`."""
    check_token_ids(input_ids, int(manager.model_config.vocab_size))
    return None
