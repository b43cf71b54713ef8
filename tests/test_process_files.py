"""platform/Procfile (for other process managers) and platform/supervisord.conf
(what `make run` runs) name the same processes with the same commands."""

import configparser
import re
import shlex

from tests.processes import ROOT


def _procfile() -> dict[str, list[str]]:
    commands = {}
    for line in (ROOT / "platform" / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, command = line.partition(":")
            words = [w for w in shlex.split(command) if "=" not in w.split("$")[0]]
            commands[name] = [re.sub(r"\$\{(\w+)(:-[^}]*)?\}", r"\1", w) for w in words]
    return commands


def _supervisord() -> dict[str, list[str]]:
    parser = configparser.RawConfigParser()
    parser.read(ROOT / "platform" / "supervisord.conf")
    commands = {}
    for section in parser.sections():
        if section.startswith("program:"):
            words = shlex.split(parser.get(section, "command"))
            # Drop the exec wrapper: "<python> -P config/orphans.py".
            assert words[1:3] == ["-P", "config/orphans.py"], section
            commands[section.split(":")[1]] = [
                re.sub(r"%\(ENV_(\w+)\)s", r"\1", w) for w in words[3:]
            ]
    return commands


def test_procfile_and_supervisord_conf_run_the_same_commands():
    assert _procfile() == _supervisord()
    assert set(_procfile()) == {"web", "worker", "beat", "queues", "payments", "crm"}
