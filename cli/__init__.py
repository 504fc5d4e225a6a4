"""z6 cli: the ``z6`` command (``entry.main``), its commands, and the reports they print.

The names below are the public API; each is imported from its module on first use, so that
``z6 version`` imports neither trio nor the run machinery.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: the console script imports ``z6.cli.entry``, and until that
# import is done a Ctrl-C prints a traceback, so this package imports nothing at all (mypy
# reads any name TYPE_CHECKING as true).
TYPE_CHECKING = False

_EXPORTS: dict[str, str] = {
    "main": "entry",
    "RunOptions": "run_cmd",
    "run_scenario": "run_cmd",
    "AnalyzeResult": "analyze_cmd",
    "analyze_logs": "analyze_cmd",
    "load_run_summary": "analyze_cmd",
    "diff_dict": "report",
    "render_diff": "report",
    "render_text": "report",
    "write_timeseries_csv": "report",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from z6.cli.analyze_cmd import (
        AnalyzeResult as AnalyzeResult,
        analyze_logs as analyze_logs,
        load_run_summary as load_run_summary,
    )
    from z6.cli.entry import main as main
    from z6.cli.report import (
        diff_dict as diff_dict,
        render_diff as render_diff,
        render_text as render_text,
        write_timeseries_csv as write_timeseries_csv,
    )
    from z6.cli.run_cmd import RunOptions as RunOptions, run_scenario as run_scenario


def __getattr__(name: str) -> object:
    from z6.engine._exports import lazy_getattr

    return lazy_getattr(__name__, _EXPORTS)(name)
