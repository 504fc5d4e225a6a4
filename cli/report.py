"""Pure rendering of summaries: the end-of-test text, the time-series CSV and run diffs.

Everything here takes the plain dicts of :func:`z6.engine.summary.build_summary` (or rows of
:func:`z6.engine.summary.timeseries_rows`) and returns text (``write_timeseries_csv`` writes
it to a stream); nothing is printed or measured.
Missing or ``None`` values render as ``-`` so that summaries of empty or damaged runs print too.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from z6.engine.errors import ConfigError

__all__ = [
    "BY_NAME",
    "DEFAULT_GATE",
    "diff_dict",
    "gate_result",
    "render_diff",
    "render_text",
    "render_timeseries_csv",
    "write_timeseries_csv",
]

_TIMESERIES_COLUMNS = (
    "second",
    "requests",
    "ok",
    "errors",
    "rps",
    "p50_ms",
    "p99_ms",
    "active_vus",
    "vus_avg",
)


def _num(value: Any, digits: int = 3) -> str:
    """A number without trailing zeros (``12.5``, ``3``), or ``-`` for ``None``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return str(value)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{_num(value)} ms"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{_num(value * 100, 2)}%"


def _bytes(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover - the loop always returns


def _line(label: str, value: str) -> str:
    return f"  {label} {'.' * max(2, 20 - len(label))} {value}"


def _ordered_latency_keys(keys: Sequence[str]) -> list[str]:
    """min, mean, the percentiles, then max: the order people read latencies in."""
    head = [k for k in ("min", "mean") if k in keys]
    tail = ["max"] if "max" in keys else []
    return head + [k for k in keys if k not in ("min", "mean", "max")] + tail


def _latency_line(lat: Mapping[str, Any]) -> str:
    if not lat or all(v is None for v in lat.values()):
        return "-"
    parts = [f"{k}={_num(lat[k])}" for k in _ordered_latency_keys(list(lat))]
    return "  ".join(parts) + "  (ms)"


def render_text(summary: Mapping[str, Any]) -> str:
    """A k6-like end-of-test summary of ``summary`` (no trailing newline)."""
    out: list[str] = []
    scen = summary.get("scenario", {})
    sha = str(scen.get("sha256", ""))[:12]
    out.append(f"z6 {summary.get('z6_version', '?')}  scenario: {scen.get('name', '?')} ({sha})")
    out.append(
        f"  seed {summary.get('seed', '-')}, procs {summary.get('procs', '-')}, "
        f"started {summary.get('started_at', '-')}"
    )
    shard = summary.get("shard")
    if shard:
        out.append(f"  shard {shard.get('index')}/{shard.get('count')}")
    options = summary.get("options")
    if options:
        out.append("  options " + ", ".join(f"{k} {v}" for k, v in options.items()))
    out.append("")
    req = summary.get("requests", {})
    total = req.get("total", 0)
    errors = summary.get("errors", {})
    out.append(_line("duration", f"{_num(summary.get('duration_s'))} s"))
    out.append(
        _line(
            "requests",
            f"{total} total, {req.get('ok', 0)} ok, {req.get('failed', 0)} failed"
            f" ({_pct(errors.get('rate'))} errors)"
            + (
                f"; {req['retried']} retried on a new connection (a kept-alive one failed)"
                if req.get("retried")
                else ""
            ),
        )
    )
    out.append(_line("rps", _num(summary.get("rps"), 1)))
    out.append(_line("latency", _latency_line(summary.get("latency_ms", {}))))
    if "latency_corrected_ms" in summary:
        out.append(_line("latency corrected", _latency_line(summary["latency_corrected_ms"])))
    out.append(_line("data received", _bytes(summary.get("bytes_received"))))
    conns = summary.get("connections", {})
    cms = conns.get("connect_ms", {})
    out.append(
        _line(
            "connections",
            f"{conns.get('new', 0)} new, connect mean {_ms(cms.get('mean'))},"
            f" max {_ms(cms.get('max'))}"
            + (f"; {conns['failed']} failed to connect" if conns.get("failed") else ""),
        )
    )
    if "latency_corrected_ms" in summary or summary.get("dropped_iterations"):
        out.append(_line("dropped iterations", str(summary.get("dropped_iterations", 0))))
    if summary.get("ring_waits"):
        waited = summary.get("ring_wait_s")
        # Old logs have no wait time (None) or 0 for it.
        blocked = f", {waited:g} s in all" if waited else ""
        out.append(
            _line(
                "ring waits",
                f"{summary['ring_waits']} (workers waited for the aggregator{blocked}; "
                "requests in flight meanwhile include that wait)",
            )
        )

    by_name = req.get("by_name", {})
    if by_name:
        out.append("")
        out.append(_name_table(by_name))
    by_status = req.get("by_status", {})
    if by_status:
        out.append("")
        out.append("  status codes: " + "  ".join(f"{k}: {v}" for k, v in by_status.items()))
    by_kind = errors.get("by_kind", {})
    if by_kind:
        out.append("  errors by kind: " + "  ".join(f"{k}: {v}" for k, v in by_kind.items()))

    acc = summary.get("accounting")
    if acc is not None and not acc.get("complete", True):
        out.append("")
        out.append(_accounting_line(acc))
    outcome = summary.get("outcome")
    if outcome and outcome != "complete":
        text = f"  outcome: {outcome}"
        if summary.get("failed_workers"):
            text += " (failed workers: " + ", ".join(map(str, summary["failed_workers"])) + ")"
        out.append(text)

    goals = summary.get("assertions", [])
    out.append("")
    if goals:
        out.append("  goals:")
        for g in goals:
            mark = "PASS" if g.get("passed") else "FAIL"
            out.append(
                f"    [{mark}] {g.get('name')} {g.get('op', '')} {_num(g.get('expected'), 6)}:"
                f" actual {_num(g.get('actual'), 6)}"
            )
        n_failed = sum(1 for g in goals if not g.get("passed"))
        if n_failed:
            out.append(f"\n  result: FAILED ({n_failed} of {len(goals)} goals failed)")
        elif not summary.get("passed", True):
            # abort_on_fail stopped the run on a goal that the end of the run then met.
            out.append(
                f"\n  result: FAILED (a goal failed during the run and abort_on_fail stopped "
                f"it; at the end all {len(goals)} goals are met)"
            )
        else:
            out.append(f"\n  result: PASSED (all {len(goals)} goals met)")
    else:
        # Not "PASSED": a run of refused connects has no goal to fail either (exit 0).
        out.append(
            "  result: no goals (the run is not judged; [assertions] sets them)"
            if summary.get("passed", True)
            else "  result: FAILED"
        )
    return "\n".join(out)


def _name_table(by_name: Mapping[str, Any]) -> str:
    lat_keys: list[str] = []
    for entry in by_name.values():
        for k in entry.get("latency_ms", {}):
            if k not in ("min", "mean") and k not in lat_keys:
                lat_keys.append(k)
    lat_keys = _ordered_latency_keys(lat_keys)
    header = ["request", "total", "ok", "failed", *lat_keys]
    rows = [header]
    for name, entry in by_name.items():
        lat = entry.get("latency_ms", {})
        rows.append(
            [
                name,
                str(entry.get("total", 0)),
                str(entry.get("ok", 0)),
                str(entry.get("failed", 0)),
                *(_num(lat.get(k)) for k in lat_keys),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("    " + "  ".join(cells).rstrip())
        if i == 0:
            lines[-1] += "   (latency in ms)"
    return "\n".join(lines)


def _accounting_line(acc: Mapping[str, Any]) -> str:
    parts = []
    for w in acc.get("workers", []):
        reported = w.get("reported")
        parts.append(
            f"worker {w.get('worker')}: {w.get('received')}/{'?' if reported is None else reported}"
        )
    detail = ", ".join(parts) if parts else "no worker reported"
    return f"  accounting: INCOMPLETE, {acc.get('missing', 0)} events missing ({detail})"


def render_timeseries_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """``timeseries.csv``: a header line, then one line per row (``None`` as empty cells)."""
    buf = io.StringIO()
    write_timeseries_csv(rows, buf)
    return buf.getvalue()


def write_timeseries_csv(rows: Iterable[Mapping[str, Any]], out: IO[str]) -> None:
    """:func:`render_timeseries_csv` written to ``out`` row by row: a month-long run has 2.6
    million rows, which as one string took 1.5 GB."""
    it = iter(rows)
    first = next(it, None)
    columns = list(first.keys()) if first is not None else list(_TIMESERIES_COLUMNS)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    if first is None:
        return
    for row in itertools.chain((first,), it):
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


# ---------------------------------------------------------------------- diff

_LOWER_BETTER = "lower"
_HIGHER_BETTER = "higher"
_NEUTRAL = "neutral"


_RATES = ("success_rate", "error_rate")


def _share(s: Mapping[str, Any], key: str) -> float | None:
    """``requests[key] / requests.total`` from the counts, unrounded: the summary's rates
    are rounded to 6 decimals, and rare errors (1 in 5,000) then lost a third of their
    relative change."""
    req = s.get("requests", {})
    total = req.get("total", 0)
    return req.get(key, 0) / total if total else None


def _tidy(x: float) -> float:
    """``x`` to 12 significant digits: drops float noise (0.30000000000000004) without
    flattening small rates as rounding to 6 decimals did."""
    return float(f"{x:.12g}")


def _metrics_of(s: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """The compared metrics of one summary: ``{label: (value, direction)}``. Open-model runs
    (or any run with drops) add ``dropped_iterations`` and the corrected latencies; each
    request name adds ``by_name.NAME.`` rows (its total, error rate, rps and latencies)."""
    req = s.get("requests", {})
    errors = s.get("errors", {})
    lat = s.get("latency_ms", {})
    m: dict[str, tuple[Any, str]] = {
        "requests.total": (req.get("total"), _NEUTRAL),
        "requests.ok": (req.get("ok"), _NEUTRAL),
        "requests.failed": (req.get("failed"), _LOWER_BETTER),
        "requests.retried": (req.get("retried"), _LOWER_BETTER),
        "success_rate": (_share(s, "ok"), _HIGHER_BETTER),
        "error_rate": (_share(s, "failed"), _LOWER_BETTER),
        "rps": (s.get("rps"), _HIGHER_BETTER),
        "duration_s": (s.get("duration_s"), _NEUTRAL),
    }
    _latency_rows(m, "latency_ms.", lat)
    corrected = s.get("latency_corrected_ms")
    if corrected is not None or s.get("dropped_iterations"):
        m["dropped_iterations"] = (s.get("dropped_iterations", 0), _LOWER_BETTER)
    _latency_rows(m, "latency_corrected_ms.", corrected or {})
    for kind, n in errors.get("by_kind", {}).items():
        m[f"errors.{kind}"] = (n, _LOWER_BETTER)
    for name, entry in req.get("by_name", {}).items():
        total = entry.get("total", 0)
        prefix = f"{BY_NAME}{name}."
        m[prefix + "requests.total"] = (total, _NEUTRAL)
        m[prefix + "error_rate"] = (
            entry.get("failed", 0) / total if total else None,
            _LOWER_BETTER,
        )
        if "rps" in entry:  # summaries of z6 before per-request rates have none
            m[prefix + "rps"] = (entry["rps"], _HIGHER_BETTER)
        _latency_rows(m, prefix + "latency_ms.", entry.get("latency_ms", {}))
    return m


def _latency_rows(m: dict[str, tuple[Any, str]], prefix: str, lat: Mapping[str, Any]) -> None:
    """Add a latency dict's rows (all but ``min``) under ``prefix``."""
    for k, v in lat.items():
        if k != "min":
            m[prefix + k] = (v, _LOWER_BETTER)


BY_NAME = "by_name."
"""The prefix of a request's own rows in :func:`diff_dict` (``by_name.login.latency_ms.p99``)."""


def _is_rate(label: str) -> bool:
    return label.rsplit(".", 1)[-1] in _RATES


def _rate_pct(value: float | None) -> str:
    """A rate as a percentage to 6 significant digits (``99.9793%``, ``0.0207%``): a rare
    error rate must not print as 0, nor 99.9995 % as 100 %."""
    if value is None:
        return "-"
    text = f"{value * 100:.6g}"
    return f"{'0' if text == '-0' else text}%"


def diff_dict(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Compare summary ``b`` against baseline ``a``.

    Returns ``{"a": {...}, "b": {...}, "metrics": {LABEL: {"a", "b", "delta", "relative",
    "change"}}}`` where ``delta = b - a``, ``relative = delta / a`` (``None`` when ``a`` is 0 or
    a value is missing) and ``change`` is ``"improvement"``, ``"regression"``, ``"unchanged"``
    or ``"n/a"`` (totals, which are neither good nor bad, and missing values). Lower latency,
    errors, error rate and dropped iterations are better; higher rps and success rate are
    better. An error kind present in only one run counts as 0 in the other, and so do the
    dropped iterations of a closed-model run compared with an open-model one. The rates are
    computed from the request counts; ``delta`` and ``relative`` keep 12 significant digits.
    """
    ma, mb = _metrics_of(a), _metrics_of(b)
    labels = list(ma)
    labels += [k for k in mb if k not in ma]
    metrics: dict[str, Any] = {}
    for label in labels:
        va, direction = ma[label] if label in ma else (None, mb[label][1])
        vb = mb[label][0] if label in mb else None
        if label.startswith("errors.") or label == "dropped_iterations":
            va = 0 if va is None else va
            vb = 0 if vb is None else vb
        delta = relative = None
        change = "n/a"
        if isinstance(va, int | float) and isinstance(vb, int | float):
            delta = _tidy(vb - va) if isinstance(vb - va, float) else vb - va
            relative = _tidy((vb - va) / va) if va else None
            if direction != _NEUTRAL:
                if delta == 0:
                    change = "unchanged"
                elif (delta < 0) == (direction == _LOWER_BETTER):
                    change = "improvement"
                else:
                    change = "regression"
        metrics[label] = {"a": va, "b": vb, "delta": delta, "relative": relative, "change": change}
    return {"a": _ident(a), "b": _ident(b), "metrics": metrics}


DEFAULT_GATE = (
    "latency_ms.p50",
    "latency_ms.p95",
    "latency_ms.p99",
    "latency_corrected_ms.p99",
    "error_rate",
    "rps",
)
"""The metrics ``z6 diff --max-regression`` checks unless ``--gate`` names others (those of
them that the two runs have)."""


def _zero_when_absent(label: str) -> bool:
    """Error kinds and dropped iterations that a run does not list are 0 in it (as in
    :func:`diff_dict`), not unknown."""
    return label.startswith("errors.") or label == "dropped_iterations"


def gate_result(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    max_regression_pct: float,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Whether run ``b`` stays within ``max_regression_pct`` of baseline ``a``.

    A gated metric fails when it is worse in B than in A by more than ``max_regression_pct``
    percent of A's value, when it got worse from 0 (errors that A did not have: no relative
    change can be small), or when B reports it without a value and A with one (B recorded no
    latency at all). B also fails when it did not run to its end (an ``outcome`` other than
    ``complete``, a damaged log, a log without footer: the entry ``{"metric": "outcome",
    ..., "reason"}``). Only metrics both runs report are
    compared: the default gate
    (:data:`DEFAULT_GATE`) skips one that a run does not report (other ``--percentiles``, a
    closed-model run against an open-model one); a label in ``labels`` must be reported by both
    and be a rate, latency or rps (``ConfigError`` otherwise). Returns ``{"max_regression_pct",
    "metrics", "failed": [{"metric", "a", "b", "relative"}], "passed"}``; raises
    ``ValueError`` for a gated value that is not a number.
    """
    ma, mb = _metrics_of(a), _metrics_of(b)

    def reported(label: str) -> bool:
        in_a, in_b = label in ma, label in mb
        return (in_a or in_b) if _zero_when_absent(label) else (in_a and in_b)

    if labels is None:
        chosen = [label for label in DEFAULT_GATE if reported(label)]
    else:
        chosen = list(dict.fromkeys(labels))
        for label in chosen:
            if label not in ma and label not in mb:
                known = ", ".join(dict.fromkeys([*ma, *mb]))
                raise ConfigError(f"--gate: no metric {label!r} in these runs; they have: {known}")
            if not reported(label):
                only = "A" if label in ma else "B"
                raise ConfigError(f"--gate: {label} is only reported by {only}: nothing to compare")
            if (ma.get(label) or mb[label])[1] == _NEUTRAL:
                raise ConfigError(
                    f"--gate: {label} is neither better nor worse when it changes; gate on "
                    "latencies, rates, errors or rps"
                )
    failed: list[dict[str, Any]] = []
    early = _stopped_early(b)
    if early is not None:
        # A run cut short (a goal's abort_on_fail, Ctrl-C, a dead worker) is no evidence that
        # the change is fine, however its partial numbers compare.
        failed.append(
            {
                "metric": "outcome",
                "a": a.get("outcome"),
                "b": b.get("outcome"),
                "relative": None,
                "reason": early,
            }
        )
    for label in chosen:
        direction = (ma.get(label) or mb[label])[1]
        absent = 0 if _zero_when_absent(label) else None
        va = ma[label][0] if label in ma else absent
        vb = mb[label][0] if label in mb else absent
        for value in (va, vb):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"{label} is {value!r}, not a number")
        relative = None
        if va is None or vb is None:
            over = va is not None  # B has no value where A had one: no latency at all
        else:
            worse = vb > va if direction == _LOWER_BETTER else vb < va
            # Compared without dividing: 100 -> 107 is exactly 7 %, where (107 - 100) / 100 *
            # 100 is 7.000000000000001.
            over = worse and (va == 0 or abs(vb - va) * 100 > max_regression_pct * abs(va))
            relative = _tidy((vb - va) / va) if va else None
        if over:
            failed.append({"metric": label, "a": va, "b": vb, "relative": relative})
    return {
        "max_regression_pct": max_regression_pct,
        "metrics": chosen,
        "failed": failed,
        "passed": not failed,
    }


def _ident(s: Mapping[str, Any]) -> dict[str, Any]:
    scen = s.get("scenario", {})
    return {
        "scenario": scen.get("name"),
        "sha256": scen.get("sha256"),
        "started_at": s.get("started_at"),
        "seed": s.get("seed"),
        "outcome": s.get("outcome"),
        "passed": s.get("passed"),
    }


def _stopped_early(s: Mapping[str, Any]) -> str | None:
    """Why a summary covers only part of its run (``None`` when it covers all of it): an
    ``outcome`` other than ``complete``, a damaged log, or an accounting that does not add up
    (a log without footer: z6 was killed). A hand-written summary without these keys is
    taken as complete."""
    outcome = s.get("outcome")
    if outcome is not None and not isinstance(outcome, str):
        raise ValueError(f"outcome is {outcome!r}, not a string")
    if outcome not in (None, "complete"):
        return f"outcome {outcome}"
    if s.get("damaged_logs"):
        return "its event log is damaged"
    accounting = s.get("accounting")
    if isinstance(accounting, Mapping) and accounting.get("complete") is False:
        return "outcome unknown: " + ("no footer" if outcome is None else "events missing")
    return None


def render_diff(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    gate: Mapping[str, Any] | None = None,
    *,
    by_name: bool = False,
) -> str:
    """A table of :func:`diff_dict`: metric, A, B, delta, relative change and a mark; with
    ``gate`` (of :func:`gate_result`), its verdict last. The rows of each request name are
    shown with ``by_name`` only (the counts below the table are of the rows shown)."""
    d = diff_dict(a, b)
    out = [
        f"A: {d['a']['scenario']} started {d['a']['started_at']} (seed {d['a']['seed']})",
        f"B: {d['b']['scenario']} started {d['b']['started_at']} (seed {d['b']['seed']})",
    ]
    if d["a"]["sha256"] != d["b"]["sha256"]:
        out.append("note: the two runs used different scenario files")
    for side, s in (("A", a), ("B", b)):
        early = _stopped_early(s)
        if early is not None:
            out.append(
                f"note: {side} did not run to its end ({early}): its numbers cover only part "
                "of the run"
            )
    out.append("")
    marks = {"improvement": "better", "regression": "WORSE", "unchanged": "=", "n/a": ""}
    rows = [["metric", "A", "B", "delta", "relative", ""]]
    shown = {
        label: m for label, m in d["metrics"].items() if by_name or not label.startswith(BY_NAME)
    }
    for label, m in shown.items():
        delta = m["delta"]
        show = _rate_pct if _is_rate(label) else _num
        rows.append(
            [
                label,
                show(m["a"]),
                show(m["b"]),
                "-" if delta is None else ("+" if delta > 0 else "") + show(delta),
                "-" if m["relative"] is None else f"{m['relative'] * 100:+.1f}%",
                marks[m["change"]],
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:5], widths[1:5], strict=True)
        ]
        out.append(("  " + "  ".join(cells) + "  " + r[5]).rstrip())
    n_reg = sum(1 for m in shown.values() if m["change"] == "regression")
    n_imp = sum(1 for m in shown.values() if m["change"] == "improvement")
    out.append("")
    out.append(f"  {n_imp} improved, {n_reg} regressed")
    if gate is not None:
        out.append(_gate_line(gate))
    return "\n".join(out)


def _gate_line(gate: Mapping[str, Any]) -> str:
    limit = f"{gate['max_regression_pct']:g}%"
    if gate["passed"]:
        return f"  gate: PASSED (no regression over {limit} in {', '.join(gate['metrics'])})"
    why: list[str] = []
    worse: list[str] = []
    for f in gate["failed"]:
        if f["metric"] == "outcome":
            why.append(f"B did not run to its end ({f['reason']})")
            continue
        show = _rate_pct if _is_rate(f["metric"]) else _num
        rel = "" if f["relative"] is None else f" {f['relative'] * 100:+.1f}%"
        worse.append(f"{f['metric']} {show(f['a'])} -> {show(f['b'])}{rel}")
    if worse:
        why.append(f"regressed over {limit}: {'; '.join(worse)}")
    return f"  gate: FAILED ({'; '.join(why)})"
