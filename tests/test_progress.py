"""The live view: plain lines off a terminal, a rich panel on one."""

from __future__ import annotations

import io

from z6.cli.progress import Progress
from z6.engine.metrics import IntervalStats


def _stats(**kw: object) -> IntervalStats:
    base: dict[str, object] = {
        "requests": 40,
        "ok": 38,
        "failed": 2,
        "dropped": 0,
        "bytes_received": 100,
        "rps": 40.0,
        "p50_ms": 1.25,
        "p99_ms": 9.5,
        "active_vus": 7,
        "span_s": 1.0,
        "total_requests": 120,
        "total_errors": 3,
        "total_dropped": 0,
    }
    base.update(kw)
    return IntervalStats(**base)  # type: ignore[arg-type]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_line_per_update() -> None:
    out = io.StringIO()
    p = Progress(10.0, stream=out)
    p.update(_stats(), 3.0)
    p.update(_stats(total_dropped=5, p50_ms=None), 4.0)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "[  3.0/10s] vus=7 reqs=120 rps=40 p50=1.2ms p99=9.5ms errors=3",
        "[  4.0/10s] vus=7 reqs=120 rps=40 p50=- p99=9.5ms errors=3 dropped=5",
    ]


def test_rich_panel_on_a_terminal() -> None:
    out = _Tty()
    p = Progress(10.0, stream=out)
    p.update(_stats(), 3.0)
    p.update(_stats(total_requests=999), 4.0)
    p.close()
    text = out.getvalue()
    assert "120  (40/s)" in text
    assert "999  (40/s)" in text
    assert "p50 1.2ms  p99 9.5ms" in text
    assert "4.0s / 10s" in text
