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


def test_the_final_line_gives_the_totals_only() -> None:
    """Once every event is in, the line says ``done`` and gives the run's totals (equal to the
    summary's), not the rate or percentiles of the run's last sliver of time; a total that is
    not whole seconds is printed as it is (2.5 s read "/2s")."""
    out = io.StringIO()
    p = Progress(2.5, stream=out)
    p.update(_stats(), 1.0)
    p.update(_stats(total_requests=130, active_vus=0, rps=9000.0), 2.6, True)
    p.close()
    assert out.getvalue().splitlines() == [
        "[  1.0/2.5s] vus=7 reqs=120 rps=40 p50=1.2ms p99=9.5ms errors=3",
        "[  2.6/2.5s] done vus=0 reqs=130 errors=3",
    ]
    # A long run's total is not printed in exponent form (1e+06).
    assert Progress(1_000_000.0).line(_stats(), 1.0).startswith("[  1.0/1000000s] ")


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


def test_rich_panel_final_shows_the_totals() -> None:
    out = _Tty()
    p = Progress(None, stream=out)
    p.update(_stats(total_requests=999, rps=9000.0), 4.2, True)
    p.close()
    text = out.getvalue()
    assert "4.2s  done" in text
    assert "999" in text
    assert "9000" not in text
    assert "p50" not in text


def test_the_open_model_shows_busy_vus_out_of_its_pool() -> None:
    # A fast server keeps few of an arrival-rate pool busy: "vus=0" alone read as if nothing
    # ran.
    out = io.StringIO()
    p = Progress(10.0, stream=out, pool=20)
    p.update(_stats(active_vus=0), 3.0)
    p.close()
    assert out.getvalue().startswith("[  3.0/10s] vus=0/20 reqs=120 ")
    tty = _Tty()
    p = Progress(10.0, stream=tty, pool=20)
    p.update(_stats(active_vus=3), 3.0)
    p.close()
    assert "3/20 (busy/pool)" in tty.getvalue()
