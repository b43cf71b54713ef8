"""Merge: join branches. ``all`` waits for every incoming branch that can
still arrive (a skipped branch does not count); ``first`` runs as soon as one
arrives, and the others are then ignored (they run on, their results unused)
or cancelled (their steps that have not begun are cancelled). The waiting is
the decider's (``_advance``); this connector only combines what arrived."""

from typing import Literal

from connectors.base import Connector, Context, Result, StrictConfig, register


class MergeConfig(StrictConfig):
    mode: Literal["all", "first"] = "all"
    # What happens to the other branches when mode is "first".
    losers: Literal["ignore", "cancel"] = "ignore"


@register
class Merge(Connector):
    key = "merge"  # runs.decider.MERGE_TYPE
    label = "Merge"
    category = "Logic"
    icon = "git-merge"
    description = (
        "Join branches: wait for all that can still arrive, or go on with the first to arrive."
    )
    Config = MergeConfig
    example_config = {"mode": "first", "losers": "cancel"}
    # The outputs of the branches that had arrived when it ran, by node.
    output_schema = {"type": "object", "properties": {"arrived": {"type": "object"}}}
    inline = True

    def execute(self, ctx: Context) -> Result:
        return Result(output={"arrived": dict(sorted(ctx.arrived.items()))})
