"""Switch: compare one value with a list of cases; leave by the first
matching case's port, or by the default port. The ports come from the
config, so the editor and the engine ask ``ports_for``."""

from typing import Any

from pydantic import Field, model_validator

from connectors.base import Connector, Context, Result, StrictConfig, register

PORT_NAME = r"^[a-z][a-z0-9_]{0,30}$"


class SwitchCase(StrictConfig):
    equals: Any
    # Plain text, never an expression: edges are drawn from it at publish time.
    port: str = Field(pattern=PORT_NAME)


class SwitchConfig(StrictConfig):
    # An expression; its rendered value is compared with each case.
    value: Any
    cases: list[SwitchCase] = Field(min_length=1, max_length=50)
    default_port: str = Field(default="default", pattern=PORT_NAME)

    @model_validator(mode="after")
    def distinct_ports(self):
        ports = [case.port for case in self.cases]
        if len(set(ports)) != len(ports):
            raise ValueError("two cases use the same port")
        if self.default_port in ports:
            raise ValueError("the default port is also a case's port")
        return self


@register
class Switch(Connector):
    key = "switch"
    label = "Switch"
    category = "Logic"
    icon = "git-fork"
    description = "Leave by the port of the first case equal to a value, or by the default port."
    Config = SwitchConfig
    example_config = {
        "value": "{{ trigger.country }}",
        "cases": [{"equals": "FR", "port": "france"}, {"equals": "DE", "port": "germany"}],
        "default_port": "elsewhere",
    }
    output_schema = {"type": "object", "properties": {"value": {}, "port": {"type": "string"}}}
    inline = True

    def ports_for(self, config: Any) -> tuple[str, ...]:
        # Read the raw config leniently: a broken one is reported by
        # validation, here it only means fewer ports.
        if not isinstance(config, dict):
            return ("default",)
        cases = config.get("cases") if isinstance(config.get("cases"), list) else []
        ports = [c["port"] for c in cases if isinstance(c, dict) and isinstance(c.get("port"), str)]
        default = config.get("default_port", "default")
        return tuple(dict.fromkeys([*ports, default if isinstance(default, str) else "default"]))

    def execute(self, ctx: Context) -> Result:
        config: SwitchConfig = ctx.config
        for case in config.cases:
            if case.equals == config.value:
                return Result(output={"value": config.value, "port": case.port}, port=case.port)
        return Result(
            output={"value": config.value, "port": config.default_port}, port=config.default_port
        )
