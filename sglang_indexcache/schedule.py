"""Per-layer IndexCache roles: which layers run the lightning indexer, which reuse, and why.

A **Full** layer runs its indexer and selects the top-k keys. A **Shared** layer reuses
the top-k of the nearest earlier Full layer of the same forward pass. A Shared layer
that has no such source (layer 0, or the first layer of a pipeline stage when indices
are not handed over) is **Promoted** to Full when its checkpoint carries indexer
weights, and refused with a `ScheduleError` otherwise. Nothing here imports SGLang:
the schedule is computed once from plain values and then only read.

Example:
    >>> s = build_schedule(8, {}, flags=IndexCacheFlags(pattern="SSSSFSSS"))
    >>> s.pattern
    'FSSSFSSS'
    >>> s.layers[0].role, s.layers[3].source
    (<Role.PROMOTED: 'promoted'>, 0)
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from sglang_indexcache.sharing import (  # ScheduleError: raised here too, imported from here by callers
    ScheduleError,
    describe_config,
    shadowed_notes,
    shared_mask,
    source_in_force,
    validate_config,
)

# recompute: a stage's Shared first layer is promoted; transfer: it stays Shared and reads the
# previous stage's top-k, sent by SGLang; align / auto: resolved before the schedule is built,
# into a partition whose stages start on Full layers, or one of the others
# (`pipeline.choose_handoff`)
PP_HANDOFFS = ("recompute", "transfer", "align", "auto")

class Role(enum.Enum):
    FULL = "full"
    SHARED = "shared"
    PROMOTED = "promoted"  # configured Shared, but runs its indexer: no valid source


@dataclass(frozen=True)
class LayerRole:
    layer: int
    role: Role
    stage: int
    source: Optional[int]  # SHARED only: the layer whose top-k this layer reuses
    reason: str

    @property
    def runs_indexer(self) -> bool:
        return self.role is not Role.SHARED


@dataclass(frozen=True)
class IndexCacheFlags:
    """The `--index-cache-*` launch flags; None means "not given".

    `offset` has SGLang's `index_skip_topk_offset` meaning: layer l is Full iff
    `max(l - offset + 1, 0) % freq == 0`, so offset=1 gives F S S S F ..., and offset=3
    keeps layers 0-2 Full. Without an offset, SGLang's default rule applies (offset 2:
    layers 0 and 1 Full).
    """

    pattern: Optional[str] = None
    freq: Optional[int] = None
    offset: Optional[int] = None
    pp_handoff: str = "recompute"

    def __post_init__(self):
        if self.pp_handoff not in PP_HANDOFFS:
            raise ScheduleError(
                f"--index-cache-pp-handoff must be one of {list(PP_HANDOFFS)}, got {self.pp_handoff!r}"
            )
        if self.pattern is not None:
            bad = sorted({c for c in self.pattern if c not in "FS"})
            if bad or not self.pattern:
                where = [i for i, c in enumerate(self.pattern) if c not in "FS"]
                raise ScheduleError(
                    f"--index-cache-pattern may contain only 'F' (Full) and 'S' (Shared), one per "
                    f"layer; got {bad} at layer(s) {where[:10]}"
                    + ("" if self.pattern else ": the pattern is empty")
                )
            if self.freq is not None or self.offset is not None:
                raise ScheduleError(
                    "--index-cache-pattern cannot be combined with --index-cache-freq/--index-cache-offset: "
                    "give either an explicit pattern or a frequency"
                )
        if self.freq is not None and self.freq < 1:
            raise ScheduleError(f"--index-cache-freq must be >= 1, got {self.freq}")
        if self.offset is not None:
            if self.offset < 1:
                raise ScheduleError(
                    f"--index-cache-offset must be >= 1 (an offset <= 0 would make layer 0 Shared), "
                    f"got {self.offset}"
                )
            if self.freq is None:
                raise ScheduleError("--index-cache-offset needs --index-cache-freq")

    @property
    def given(self) -> bool:
        return self.pattern is not None or self.freq is not None

    def describe(self) -> str:
        if self.pattern is not None:
            return f"--index-cache-pattern {self.pattern}"
        if self.freq is not None:
            off = f" --index-cache-offset {self.offset}" if self.offset is not None else ""
            return f"--index-cache-freq {self.freq}{off}"
        return "no --index-cache flags"


def _flags_config(flags: IndexCacheFlags) -> dict:
    """The flags as the config keys SGLang's rule reads."""
    if flags.pattern is not None:
        return {"index_topk_pattern": flags.pattern}
    return {"index_topk_freq": flags.freq, "index_skip_topk_offset": flags.offset}


@dataclass(frozen=True)
class Schedule:
    """Every layer's role, computed once at startup; `table()` explains it."""

    num_layers: int
    layers: tuple
    stage_starts: tuple
    pp_handoff: str
    source: str
    notes: tuple = field(default=())
    indexer_weights_checked: bool = False
    handoff_note: Optional[str] = None  # how --index-cache-pp-handoff align/auto was resolved

    @property
    def pattern(self) -> str:
        """The pattern in force, F for every layer that runs its indexer (Promoted too)."""
        return "".join("F" if r.runs_indexer else "S" for r in self.layers)

    def indexer_types(self) -> list:
        """The schedule in SGLang's `indexer_types` form (highest precedence upstream)."""
        return ["full" if r.runs_indexer else "shared" for r in self.layers]

    @property
    def num_indexers(self) -> int:
        return sum(r.runs_indexer for r in self.layers)

    def stage_bounds(self) -> list:
        ends = list(self.stage_starts[1:]) + [self.num_layers]
        return list(zip(self.stage_starts, ends))

    def received_sources(self, start: int, end: int) -> tuple:
        """The sources a stage of layers start..end-1 receives from the previous stage instead
        of computing them (`transfer`): those of its Shared layers that lie before `start`."""
        return tuple(sorted({r.source for r in self.layers[start:end] if r.role is Role.SHARED and r.source < start}))

    def summary(self) -> str:
        n_promoted = sum(r.role is Role.PROMOTED for r in self.layers)
        kept = self.num_indexers
        lines = [
            f"IndexCache schedule: {self.num_layers} layers, {kept} run the indexer "
            f"({kept / self.num_layers:.1%} kept, {self.num_layers - kept} Shared, {n_promoted} Promoted); "
            f"source: {self.source}",
            f"pattern: {self.pattern}",
        ]
        if len(self.stage_starts) > 1:
            per_stage = []
            for k, (a, b) in enumerate(self.stage_bounds()):
                n = sum(r.runs_indexer for r in self.layers[a:b])
                per_stage.append(f"stage {k}: layers {a}-{b - 1}, {n}/{b - a} indexers")
            lines.append(f"pipeline handoff={self.pp_handoff}; " + "; ".join(per_stage))
            if self.handoff_note:
                lines.append(self.handoff_note)
        if not self.indexer_weights_checked:
            lines.append("indexer weights: not checked (dummy weights or no safetensors index)")
        lines += [f"WARNING: {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> str:
        rows = [f"{'layer':>5}  {'stage':>5}  {'role':<8}  {'source':>6}  reason"]
        for r in self.layers:
            src = "-" if r.source is None else str(r.source)
            rows.append(f"{r.layer:>5}  {r.stage:>5}  {r.role.name:<8}  {src:>6}  {r.reason}")
        return self.summary() + "\n" + "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "num_layers": self.num_layers,
            "pattern": self.pattern,
            "num_indexers": self.num_indexers,
            "source": self.source,
            "pp_handoff": self.pp_handoff,
            "handoff_note": self.handoff_note,
            "stage_starts": list(self.stage_starts),
            "indexer_weights_checked": self.indexer_weights_checked,
            "notes": list(self.notes),
            "layers": [
                {"layer": r.layer, "stage": r.stage, "role": r.role.value, "source": r.source, "reason": r.reason}
                for r in self.layers
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def nearest_full(runs_indexer: Sequence[bool]) -> list:
    """Each layer's source: None for a layer that runs its indexer, else the nearest earlier one
    that does. The one definition of "nearest earlier Full" (schedule, tools, distillation).

    >>> nearest_full([True, False, False, True, False])
    [None, 0, 0, None, 3]
    """
    out, last = [], None
    for i, runs in enumerate(runs_indexer):
        if not runs and last is None:
            raise ScheduleError(f"layer {i} is Shared but no earlier layer runs the indexer")
        out.append(None if runs else last)
        last = i if runs else last
    return out


def pattern_sources(pattern: str) -> list:
    """`nearest_full` of an F/S pattern string."""
    if set(pattern) - {"F", "S"}:
        raise ScheduleError(f"pattern {pattern!r}: only F and S are allowed")
    return nearest_full([c == "F" for c in pattern])


def _stage_of(stage_starts: Sequence[int], num_layers: int) -> list:
    stage, out = 0, []
    for layer in range(num_layers):
        while stage + 1 < len(stage_starts) and layer >= stage_starts[stage + 1]:
            stage += 1
        out.append(stage)
    return out


def _check_stage_starts(stage_starts: Sequence[int], num_layers: int) -> tuple:
    starts = tuple(stage_starts)
    if not starts or starts[0] != 0 or list(starts) != sorted(set(starts)) or starts[-1] >= num_layers:
        raise ScheduleError(
            f"pipeline stage starts {list(starts)} must be strictly increasing from 0 and below {num_layers}"
        )
    return starts


def build_schedule(
    num_layers: int,
    config: Mapping[str, Any],
    *,
    flags: IndexCacheFlags = IndexCacheFlags(),
    stage_starts: Sequence[int] = (0,),
    indexer_weight_layers: Optional[Iterable[int]] = None,
    notes: Sequence[str] = (),
) -> Schedule:
    """Compute and validate every layer's role.

    Args:
        num_layers: the model's `num_hidden_layers` (draft/MTP layers excluded).
        config: the model config's sharing keys (`CONFIG_SOURCE_KEYS`) as declared by the
            checkpoint and `--json-model-override-args`; absent keys mean "not given".
        flags: the `--index-cache-*` launch flags; when given they replace the config's source.
        stage_starts: first layer of every pipeline stage, from SGLang's own partition.
        indexer_weight_layers: layers whose checkpoint carries indexer weights; None when
            unknown (dummy weights), in which case every layer may be promoted.
        notes: extra warnings from the caller (shown in the table).

    Raises:
        ScheduleError: invalid pattern/frequency, or a layer that must run its indexer
            has no indexer weights in the checkpoint.
    """
    if num_layers < 1:
        raise ScheduleError(f"num_layers must be >= 1, got {num_layers}")
    starts = _check_stage_starts(stage_starts, num_layers)
    stage_of = _stage_of(starts, num_layers)
    notes = list(notes)
    in_force = source_in_force(config)
    if not flags.given:
        validate_config(num_layers, config, in_force)

    if flags.given:
        if flags.pattern is not None and len(flags.pattern) != num_layers:
            raise ScheduleError(
                f"--index-cache-pattern has {len(flags.pattern)} characters but the model has "
                f"{num_layers} layers: give exactly one 'F' or 'S' per layer (layers 0-{num_layers - 1})"
            )
        rule = _flags_config(flags)
        source = flags.describe()
        if in_force is not None and shared_mask(num_layers, config) != shared_mask(num_layers, rule):
            notes.append(f"{describe_config(config, in_force)} is overridden by {source}")
    else:
        rule = config
        source = describe_config(config, in_force)
        notes += shadowed_notes(num_layers, config, in_force)
    shared = shared_mask(num_layers, rule)

    weights = None if indexer_weight_layers is None else frozenset(indexer_weight_layers)
    roles = []
    for i in range(num_layers):
        stage_start = i == starts[stage_of[i]]
        if not shared[i]:
            roles.append((Role.FULL, "configured Full, runs its indexer"))
        elif i == 0 or (stage_start and flags.pp_handoff != "transfer"):
            why = (
                "layer 0 has no earlier layer to reuse"
                if i == 0
                else f"first layer of pipeline stage {stage_of[i]}; --index-cache-pp-handoff {flags.pp_handoff}"
            )
            roles.append((Role.PROMOTED, f"configured Shared, {why}"))
        else:
            roles.append((Role.SHARED, None))
    sources = nearest_full([role is not Role.SHARED for role, _ in roles])
    layers: list = []
    for i, ((role, why), src) in enumerate(zip(roles, sources)):
        if role is Role.SHARED:
            via = " (handed over from the previous stage)" if stage_of[src] != stage_of[i] else ""
            why = f"reuses layer {src}'s top-k{via}"
        layers.append(LayerRole(i, role, stage_of[i], src, why))
    missing = [r for r in layers if weights is not None and r.runs_indexer and r.layer not in weights]

    if missing:
        raise ScheduleError(_missing_weights_message(missing, weights, num_layers))
    return Schedule(
        num_layers=num_layers,
        layers=tuple(layers),
        stage_starts=starts,
        pp_handoff=flags.pp_handoff,
        source=source,
        notes=tuple(notes),
        indexer_weights_checked=weights is not None,
    )


DRAFT_SOURCE = "draft model (MTP/NextN): a separate forward, so every layer runs its own indexer"


def draft_schedule(num_layers: int) -> Schedule:
    """The speculative draft's schedule: all Full. A draft forward is not the target's forward, so
    the target's top-k is never a valid source there (reusing it collapses acceptance)."""
    if num_layers < 1:
        raise ScheduleError(f"num_layers must be >= 1, got {num_layers}")
    layers = tuple(LayerRole(i, Role.FULL, 0, None, "draft layer: runs its own indexer") for i in range(num_layers))
    return Schedule(num_layers=num_layers, layers=layers, stage_starts=(0,), pp_handoff="recompute",
                    source=DRAFT_SOURCE, indexer_weights_checked=False)


def _missing_weights_message(missing: list, weights: frozenset, num_layers: int) -> str:
    have = "".join("F" if i in weights else "S" for i in range(num_layers))
    lines = ["the checkpoint has no indexer weights for layer(s) that must run the indexer:"]
    for r in missing:
        lines.append(f"  layer {r.layer} ({r.role.name}: {r.reason})")
    fixes = ["use a pattern whose Full layers all carry indexer weights, e.g. the checkpoint's own: "
             f"--index-cache-pattern {have}"]
    if any(r.role is Role.PROMOTED and r.layer > 0 for r in missing):
        fixes.append("move the pipeline stage split (SGLANG_PP_LAYER_PARTITION) so that every stage starts on a layer with indexer weights")
        fixes.append("or receive the previous stage's top-k: --index-cache-pp-handoff transfer")
    return "\n".join(lines + ["fix: " + fixes[0]] + ["     " + f for f in fixes[1:]])


def switched_schedule(num_layers: int, pattern: Any, indexer_layers: Iterable[int]) -> Schedule:
    """The schedule a switchable server (`--index-cache-switchable`) runs after a switch to
    `pattern`: every Full layer must be one built with its indexer (`indexer_layers`) and layer
    0 must be Full (nothing is promoted at run time). Raises ScheduleError naming the layer."""
    if not isinstance(pattern, str):
        raise ScheduleError(f"the pattern must be a string of 'F' and 'S', got {type(pattern).__name__}")
    flags = IndexCacheFlags(pattern=pattern)
    if len(pattern) != num_layers:
        raise ScheduleError(f"the pattern has {len(pattern)} characters but the model has {num_layers} layers")
    if pattern[0] != "F":
        raise ScheduleError("layer 0 is Shared in the pattern: it has no earlier layer to reuse; make it Full")
    built = frozenset(indexer_layers)
    missing = [i for i, c in enumerate(pattern) if c == "F" and i not in built]
    if missing:
        raise ScheduleError(f"layer(s) {missing} are Full in the pattern but have no indexer on this server "
                            "(no indexer weights in the checkpoint)")
    return build_schedule(num_layers, {}, flags=flags, indexer_weight_layers=built)
