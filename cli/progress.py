"""Live progress of ``z6 run`` on stderr, once per second.

On a terminal it is one rich status line rewritten in place; otherwise one plain line per
interval (for CI logs). It only formats what the aggregator already computed, so it costs
the workers nothing. No threads: the aggregator calls ``update`` from its own loop (workers are
forked, and forking a process with extra threads is unsafe).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Prints one progress line per ``update`` call."""

    def __init__(self, total_s: float | None, *, stream: TextIO | None = None) -> None:
        self.total_s = total_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._console: Any = None
        if self.tty:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, stats: Any, elapsed_s: float) -> str:
        """The text of one progress line (shared by both display modes)."""
        total = f"/{self.total_s:.0f}s" if self.total_s else "s"
        parts = [
            f"[{elapsed_s:5.1f}{total}]",
            f"vus={stats.active_vus}",
            f"reqs={stats.total_requests}",
            f"rps={stats.rps:.0f}",
            f"p50={_ms(stats.p50_ms)}",
            f"p99={_ms(stats.p99_ms)}",
            f"errors={stats.total_errors}",
        ]
        if getattr(stats, "total_dropped", 0):
            parts.append(f"dropped={stats.total_dropped}")
        return " ".join(parts)

    def update(self, stats: Any, elapsed_s: float) -> None:
        """Show the stats of the last interval."""
        text = self.line(stats, elapsed_s)
        if self._console is not None:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the in-place line on a terminal."""
        if self._console is not None:
            self.stream.write("\n")
            self.stream.flush()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"
