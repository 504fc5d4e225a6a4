"""``z6 validate SCENARIO``: load and check a scenario, then print what it will do."""

from __future__ import annotations

import sys
from pathlib import Path

from z6.engine.describe import describe_scenario
from z6.engine.loader import load_scenario


def run_validate(path: Path) -> int:
    """Validate the scenario at ``path`` and print its description to stdout; return 0.

    A bad scenario raises :class:`~z6.engine.errors.ScenarioError`, which the CLI turns into
    one ``z6: file:line: key: message`` line on stderr and exit code 2.
    """
    scenario = load_scenario(path)
    sys.stdout.write(describe_scenario(scenario))
    sys.stdout.write("\nOK: the scenario is valid.\n")
    sys.stdout.flush()
    return 0
