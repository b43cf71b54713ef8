"""CPU work: spins for a measured time. For benchmarks and load drills: a
side-effecting step with no I/O, so a measurement shows the engine's own cost."""

import time
from typing import Literal

from pydantic import Field

from connectors.base import Connector, Context, Result, SideEffect, StrictConfig, register


class CpuWorkConfig(StrictConfig):
    milliseconds: float = Field(default=0, ge=0, le=10_000)
    side_effect: Literal["none", "idempotent"] = "idempotent"


@register
class CpuWork(Connector):
    key = "cpu.work"
    in_palette = False  # a demo/benchmark stand-in, not for new flows
    label = "CPU work (benchmark)"
    category = "Testing"
    icon = "cpu"
    description = "Spin the CPU for a set time: a side-effecting step with no I/O, for benchmarks."
    Config = CpuWorkConfig
    example_config = {"milliseconds": 10}
    side_effect_class = SideEffect.IDEMPOTENT
    timeout_seconds = 10.0

    def side_effect(self, config: CpuWorkConfig) -> SideEffect:
        return SideEffect(config.side_effect)

    def execute(self, ctx: Context) -> Result:
        start = time.process_time()
        deadline = start + ctx.config.milliseconds / 1000
        spins = 0
        while time.process_time() < deadline:
            spins += 1
        spent = time.process_time() - start
        return Result(output={"cpu_ms": round(spent * 1000, 3), "spins": spins})
