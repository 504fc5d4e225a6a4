"""Live progress of ``z6 run`` on stderr, once per second.

On a terminal it is a small rich panel redrawn in place (``rich.live.Live`` without its
refresh thread); otherwise one plain line per interval (for CI logs). It only formats what
the aggregator already computed, so it costs the workers nothing. No threads: the aggregator
calls ``update`` from its own loop (workers are forked, and forking a process with extra
threads is unsafe).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Prints one progress line per ``update`` call. ``pool``: the open model's VU pool, shown
    beside the busy VUs (``vus=3/20``); a fast server keeps few busy, and ``vus=0`` alone read
    as if nothing ran."""

    def __init__(
        self, total_s: float | None, *, stream: TextIO | None = None, pool: int | None = None
    ) -> None:
        self.total_s = total_s
        self.pool = pool
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._console: Any = None
        self._live: Any = None
        if self.tty:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, stats: Any, elapsed_s: float, final: bool = False) -> str:
        """The text of one progress line (shared by both display modes).

        The ``final`` line, once every event is in, gives the run's totals only (they equal
        the summary's); the rate and percentiles of its last sliver of time would mislead,
        and the summary that follows has the run's own."""
        total = f"/{_secs(self.total_s)}s" if self.total_s else "s"
        parts = [f"[{elapsed_s:5.1f}{total}]"]
        if final:
            parts.append("done")
        parts.append(f"vus={self._vus(stats)}")
        parts.append(f"reqs={stats.total_requests}")
        if not final:
            parts += [
                f"rps={stats.rps:.0f}",
                f"p50={_ms(stats.p50_ms)}",
                f"p99={_ms(stats.p99_ms)}",
            ]
        parts.append(f"errors={stats.total_errors}")
        if getattr(stats, "total_dropped", 0):
            parts.append(f"dropped={stats.total_dropped}")
        return " ".join(parts)

    def _vus(self, stats: Any) -> str:
        return f"{stats.active_vus}/{self.pool}" if self.pool else str(stats.active_vus)

    def update(self, stats: Any, elapsed_s: float, final: bool = False) -> None:
        """Show the stats of the last interval (``final``: the run's totals, see ``line``)."""
        if self._console is None:
            print(self.line(stats, elapsed_s, final), file=self.stream, flush=True)
            return
        renderable = self._panel(stats, elapsed_s, final)
        if self._live is None:
            from rich.live import Live

            # No auto refresh: that would start a thread, and the aggregator calls us anyway.
            self._live = Live(
                renderable,
                console=self._console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._live.update(renderable, refresh=True)

    def _panel(self, stats: Any, elapsed_s: float, final: bool) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        if self.total_s:
            done = min(elapsed_s, self.total_s)
            bar = ProgressBar(total=self.total_s, completed=done, width=30)
            grid.add_row("time", bar)
            done_mark = "  done" if final else ""
            grid.add_row("", f"{elapsed_s:.1f}s / {_secs(self.total_s)}s{done_mark}")
        else:
            grid.add_row("time", f"{elapsed_s:.1f}s{'  done' if final else ''}")
        grid.add_row("VUs", self._vus(stats) + (" (busy/pool)" if self.pool else ""))
        if final:
            grid.add_row("requests", str(stats.total_requests))
        else:
            grid.add_row("requests", f"{stats.total_requests}  ({stats.rps:.0f}/s)")
            grid.add_row("latency", f"p50 {_ms(stats.p50_ms)}  p99 {_ms(stats.p99_ms)}")
        errors = f"[red]{stats.total_errors}[/red]" if stats.total_errors else "0"
        grid.add_row("errors", errors)
        if getattr(stats, "total_dropped", 0):
            grid.add_row("dropped", f"[yellow]{stats.total_dropped}[/yellow]")
        return grid

    def close(self) -> None:
        """Leave the last display on screen."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def _secs(value: float) -> str:
    """Seconds as written, never in exponent form: 2.5, 10, 1000000 (``:g`` gave 1e+06)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"
