"""Switch the pattern of a running server (`--index-cache-switchable`), for pattern search.

    curl -X POST http://HOST:PORT/index_cache/pattern -H "Authorization: Bearer $ADMIN_KEY" \
         -d '{"pattern": "FSSSFSSS..."}'

The route is SGLang's admin kind (`AuthLevel.ADMIN_FORCE`: the `--admin-api-key` bearer token,
403 when the server has none, 401 with a wrong one) and exists only on a switchable server (a
normal one answers 404). The HTTP process validates the pattern against the layers built with
an indexer (400 naming the layer, nothing changes), then hands it to every scheduler through
SGLang's own `set_internal_state` channel; each scheduler flushes its radix cache, which it
refuses while a request runs or waits (409, the old pattern stays), and installs the new
schedule in the backend and the model's layers. The fail-closed check reads the new schedule
from the next forward on; a switchable server runs without CUDA graphs (refused at startup
otherwise), so nothing captured under the old roles can replay.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request  # SGLang's HTTP server's framework (the route's parameter)

from sglang_indexcache.schedule import ScheduleError, switched_schedule

logger = logging.getLogger("sglang_indexcache")

ROUTE = "/index_cache/pattern"
TOKENIZER_TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager.__init__"
SCHEDULER_TARGET = ("sglang.srt.managers.scheduler_components.internal_state."
                    "SchedulerInternalStateController.set_internal_state")
# SGLang's internal-state channel carries numbers only: the pattern travels as its length and
# 60-layer words of Full bits
KEY = "index_cache_pattern"
WORD = 60


def encode(pattern: str) -> dict:
    words = {f"{KEY}_w{k}": sum(1 << j for j, c in enumerate(pattern[k * WORD:(k + 1) * WORD]) if c == "F")
             for k in range((len(pattern) + WORD - 1) // WORD)}
    return {f"{KEY}_len": len(pattern), **words}


def decode(values: dict) -> str:
    n = int(values[f"{KEY}_len"])
    return "".join("F" if int(values[f"{KEY}_w{i // WORD}"]) >> (i % WORD) & 1 else "S" for i in range(n))


# ---- the HTTP process -------------------------------------------------------------------------


def after_tokenizer_manager_init(result, manager, *args, **kwargs):
    """AFTER hook on TokenizerManager.__init__ (in the HTTP server's process, before the app
    serves and before SGLang decides whether it needs its API-key middleware)."""
    import sys

    built = getattr(getattr(manager, "model_config", None), "index_cache_switchable", None)
    http = sys.modules.get("sglang.srt.entrypoints.http_server")
    if built is None or http is None:
        return result
    app = http.app
    if any(getattr(r, "path", None) == ROUTE for r in app.router.routes):
        return result
    from sglang.srt.utils.auth import AuthLevel, auth_level

    num_layers = manager.model_config.index_cache_schedule.num_layers

    @auth_level(AuthLevel.ADMIN_FORCE)
    async def switch_pattern(request: Request):
        from fastapi.responses import ORJSONResponse
        from sglang.srt.managers.io_struct import SetInternalStateReq

        try:
            body = await request.json()
            schedule = switched_schedule(num_layers, body.get("pattern") if isinstance(body, dict) else None, built)
        except (ScheduleError, ValueError) as e:
            return ORJSONResponse({"error": str(e)}, status_code=400)
        updated = await manager.set_internal_state(SetInternalStateReq(server_args=encode(schedule.pattern)))
        if not updated or not all(updated):
            return ORJSONResponse({"error": "not switched: requests are running or waiting (a switch flushes the "
                                            "radix cache and needs an idle server); the old pattern stays"},
                                  status_code=409)
        logger.info("IndexCache pattern switched to %s", schedule.pattern)
        return ORJSONResponse({"pattern": schedule.pattern, "table": schedule.table()})

    app.add_api_route(ROUTE, switch_pattern, methods=["POST"])
    return result


# ---- the scheduler processes ------------------------------------------------------------------


def around_set_internal_state(original, controller, recv_req, *args, **kwargs):
    """AROUND hook on the scheduler's `set_internal_state`, installed by a switchable backend
    when it is built (`backend._switchable`); other requests pass through."""
    values = getattr(recv_req, "server_args", None) or {}
    if f"{KEY}_len" not in values:
        return original(controller, recv_req, *args, **kwargs)
    from sglang.srt.managers.io_struct import SetInternalStateReqOutput

    scheduler = controller.scheduler
    runner = scheduler.tp_worker.model_runner
    try:
        built = runner.model_config.index_cache_switchable
        schedule = switched_schedule(runner.model_config.index_cache_schedule.num_layers, decode(values), built)
    except (AttributeError, KeyError, ScheduleError) as e:  # validated in the HTTP process too
        logger.warning("IndexCache pattern switch refused: %s", e)
        return SetInternalStateReqOutput(updated=False)
    if not scheduler.flush_cache():  # refuses while a request runs or waits
        return SetInternalStateReqOutput(updated=False)
    try:
        runner.attn_backend.install_schedule(schedule)
    except Exception as e:  # the backend keeps its old schedule; a raise here would stop the scheduler
        logger.error("IndexCache pattern switch refused by the backend: %s", e)
        return SetInternalStateReqOutput(updated=False)
    runner.model_config.index_cache_schedule = schedule
    logger.info("IndexCache schedule switched:\n%s", schedule.table())
    return SetInternalStateReqOutput(updated=True)


def register(hook_registry: Any, hook_type: Any) -> None:
    """At plugin load (every process): the route appears only where a TokenizerManager of a
    switchable server is built."""
    hook_registry.register(TOKENIZER_TARGET, after_tokenizer_manager_init, hook_type.AFTER)
