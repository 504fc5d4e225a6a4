"""Human description of a loaded scenario, printed by ``z6 validate``.

Pure text formatting: nothing here checks anything (the loader did that) and nothing here
decides how a run behaves: the small VU profile samples ``engine/schedule.target_vus``, the
same function the VU runtime follows.
"""

from __future__ import annotations

from z6.engine.goals import GOAL_PERCENTILES, checked_live, evaluate_goals
from z6.engine.scenario import (
    ABORT_CHECK_SECONDS,
    Assertions,
    DataSpec,
    RequestGoals,
    RequestSpec,
    Scenario,
    Schedule,
)
from z6.engine.schedule import ArrivalPlan, peak_vus, started_vus, target_vus

__all__ = ["describe_scenario"]

_PROFILE_ROWS = 9
_BAR_WIDTH = 30
_LABEL = 14


def describe_scenario(s: Scenario) -> str:
    """Return a multi-line, human-readable account of what ``s`` will do when run.

    Covers name and file, target, HTTP version, duration or iterations, VUs, the schedule
    with a small VU profile, requests with weights and shares (or the sequence), think
    time, goals, graceful stop, limits and notes about accepted-but-ignored keys.
    """
    out: list[str] = []
    rt = s.runtime
    out.append(f"Scenario: {s.name}")
    if s.metadata.description:
        out.append(_kv("Description", s.metadata.description))
    meta = [
        f"version {s.metadata.version}" if s.metadata.version else "",
        f"by {s.metadata.author}" if s.metadata.author else "",
        f"tags: {', '.join(s.metadata.tags)}" if s.metadata.tags else "",
    ]
    if any(meta):
        out.append(_kv("About", "; ".join(m for m in meta if m)))
    if s.source_path:
        out.append(_kv("File", f"{s.source_path} (sha256 {s.sha256[:16]}...)"))

    tgt = s.target
    https = tgt.base_url.startswith("https://")
    target = f"{tgt.base_url} (HTTP/1.1"
    if https:
        target += ", certificates " + ("verified" if tgt.verify_cert else "NOT verified")
        if tgt.ca_bundle:
            target += f" against {tgt.ca_bundle}"
    target += f", connect timeout {_num(tgt.connection_timeout_ms)} ms"
    if tgt.max_connections is not None:
        target += f", at most {tgt.max_connections} connections"
    if tgt.cookies:
        scope = "iteration" if s.schedule.type == "arrival_rate" else "VU"
        target += f", a cookie jar per {scope}"
    out.append(_kv("Target", target + ")"))

    if rt.duration_seconds is not None:
        length = f"{_secs(rt.duration_seconds)}"
    else:
        length = f"{rt.iterations} iteration{'s' if rt.iterations != 1 else ''} per VU"
    out.append(_kv("Length", length))
    seed = str(rt.prng_seed) if rt.prng_seed is not None else "random (drawn and recorded)"
    out.append(_kv("Seed", seed))
    out.append(_kv("Graceful stop", _secs(rt.graceful_stop_seconds)))
    pool = peak_vus(s.schedule)
    vus_label = "VU pool" if s.schedule.type == "arrival_rate" else "Peak VUs"
    out.append(_kv(vus_label, str(pool)))

    out.append(_kv("Schedule", _schedule_line(s.schedule, rt.duration_seconds)))
    out.extend(_profile(s.schedule, rt.duration_seconds, starts_only=rt.iterations is not None))

    out.append("")
    if s.sequence is not None:
        per_iter = sum(step.repeat for step in s.sequence.steps)
        out.append(
            f"Sequence ({len(s.sequence.steps)} steps, {per_iter} requests per iteration; "
            "request weights are not used):"
        )
        by_name = {r.name: r for r in s.requests}
        for i, step in enumerate(s.sequence.steps, start=1):
            req = by_name[step.request]
            times = f" x{step.repeat}" if step.repeat != 1 else ""
            out.append(f"  {i}. {step.request}{times}: {req.method} {_path(req)}")
        unused = [
            r.name for r in s.requests if r.name not in {st.request for st in s.sequence.steps}
        ]
        if unused:
            out.append(f"  (defined but not in the sequence: {', '.join(unused)})")
    out.append(f"Requests ({len(s.requests)}):")
    total_weight = sum(r.weight for r in s.requests)
    name_w = max(len(r.name) for r in s.requests)
    path_w = min(max(len(_path(r)) for r in s.requests), 40)
    for r in s.requests:
        line = f"  {r.name:<{name_w}}  {r.method:<7} {_path(r):<{path_w}}"
        if s.sequence is None:
            share = 100.0 * r.weight / total_weight if total_weight > 0 else 0.0
            line += f"  weight {_num(r.weight):>5}  {share:5.1f} %"
        extras = [f"timeout {_num(r.timeout_ms)} ms"]
        if r.body_file is not None:
            extras.append(f"body file {r.body_file} ({len(r.body_bytes)} bytes)")
        elif r.body_parts is not None:
            extras.append(f"body with fields (about {len(r.body_bytes)} bytes, varies)")
        elif r.body is not None:
            extras.append(f"body {len(r.body_bytes)} bytes")
        if r.headers:
            count = f"{len(r.headers)} header{'s' if len(r.headers) != 1 else ''}"
            if r.header_parts:
                # Names only: a value may hold a ${NAME} secret.
                n = len(r.header_parts)
                count += f" ({n} with fields, varying: {', '.join(r.header_parts)})"
            extras.append(count)
        if r.expect_status is not None:
            extras.append("expects " + "/".join(str(c) for c in r.expect_status))
        else:
            extras.append("expects status < 400")
        for key, value in (
            ("body contains", r.expect_body_contains),
            ("body lacks", r.expect_body_not_contains),
        ):
            if value is not None:
                texts = [value] if isinstance(value, str) else value
                extras.append(f"{key} " + " and ".join(_short(t) for t in texts))
        out.append(line + "  " + ", ".join(extras))

    if s.data:
        out.append(f"Data ({len(s.data)}):")
        out.extend(_data_line(d) for d in s.data)

    tt = s.think_time
    if tt is None:
        think = "none"
    elif tt.type == "constant":
        think = f"{_num(tt.duration_ms or 0.0)} ms after each request"
    else:
        think = (
            f"uniform random {_num(tt.min_ms or 0.0)}..{_num(tt.max_ms or 0.0)} ms after each "
            "request (seeded)"
        )
    out.append(_kv("Think time", think))

    goals = _goals(s.assertions)
    out.append("")
    if goals:
        out.append(f"Goals ({len(goals)}; any failed goal makes the run exit 1):")
        out.extend(f"  - {g}" for g in goals)
        a = s.assertions
        if a.abort_on_fail:
            start = (
                f"from {_num(a.abort_delay_seconds)} s into the run"
                if a.abort_delay_seconds
                else "from the start"
            )
            chosen = a.abort_on_fail
            if isinstance(chosen, list):
                which = f"the goal{'s' if len(chosen) > 1 else ''} {', '.join(chosen)} "
                which += "are" if len(chosen) > 1 else "is"
            else:
                which = "the goals are"
            out.append(
                f"  abort_on_fail: {which} checked every {ABORT_CHECK_SECONDS:g} s {start}, "
                "on the metrics so far (not rps_min); the first that fails stops the run"
            )
    else:
        out.append("Goals: none (the run is not judged: exit 0 unless z6 itself fails)")

    lim = s.limits
    limits = [
        f"max VUs {lim.max_vus}" if lim.max_vus is not None else "",
        f"max connections {lim.max_connections}" if lim.max_connections is not None else "",
        f"request timeout <= {lim.request_timeout_ms} ms"
        if lim.request_timeout_ms is not None
        else "",
        f"event log <= {_num(lim.max_event_log_size_mb)} MB"
        if lim.max_event_log_size_mb is not None
        else "",
    ]
    if any(limits):
        out.append(_kv("Limits", ", ".join(x for x in limits if x)))

    notes = _notes(s)
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"  - {n}" for n in notes)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- pieces


def _kv(key: str, value: str) -> str:
    return f"{key + ':':<{_LABEL}} {value}"


def _data_line(d: DataSpec) -> str:
    """One ``[[data]]`` source: its file, rows, columns and order (and the file's sha256, to
    match a run to its data)."""
    line = f"  {d.name}: {d.file}, order {d.order}"
    if not d.rows:
        return line + " (file not read)"
    columns = ", ".join(d.columns)
    return (
        f"{line}, {d.rows} row{'s' if d.rows != 1 else ''}, columns {columns} "
        f"({d.size} bytes, sha256 {d.sha256[:16]}...)"
    )


def _path(req: RequestSpec) -> str:
    """A request's path as written: a ``${NAME}`` in it may stand for a secret."""
    return req.path_written if req.path_written is not None else req.path


def _short(text: str, limit: int = 40) -> str:
    """``text`` quoted for one line of the description, cut to about ``limit`` characters."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _vus(n: int | None) -> str:
    return f"{n} VU" if n == 1 else f"{n} VUs"


def _num(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def _secs(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{_num(value)} s ({_num(value / 60)} min)"
    return f"{_num(value)} s"


def _schedule_line(s: Schedule, duration: float | None) -> str:
    if s.type == "constant":
        return f"constant, {_vus(s.vus)} for the whole run"
    if s.type == "ramp":
        text = (
            f"ramp from {s.start_vus} to {_vus(s.end_vus)} over "
            f"{_secs(s.ramp_duration_seconds or 0.0)}"
        )
        if s.hold_duration_seconds:
            text += f", then hold {_vus(s.end_vus)} for {_secs(s.hold_duration_seconds)}"
        return text
    if s.type == "spike":
        start = s.spike_start_seconds or 0.0
        return (
            f"spike: {_vus(s.baseline_vus)}, {_vus(s.spike_vus)} from {_secs(start)} for "
            f"{_secs(s.spike_duration_seconds or 0.0)}, then {_vus(s.baseline_vus)} again"
        )
    if s.type == "steps":
        parts = [f"{_vus(st.vus)} for {_secs(st.duration_seconds)}" for st in s.steps]
        return f"{len(s.steps)} steps: " + ", ".join(parts)
    rate = s.rate or 0.0
    plan = ArrivalPlan.of(s)
    # Exactly the arrivals the run schedules (ArrivalPlan: n / rate without stages).
    due = plan.total(duration) if duration else 0
    expected = f", {due} iteration{'s' if due != 1 else ''} due" if duration else ""
    if plan.staged:
        shape = f"from {_num(rate)} iterations/s, " + ", ".join(
            f"to {_num(st.rate)} over {_secs(st.duration_seconds)}" for st in s.stages
        )
        rates = shape
        if duration is None or sum(st.duration_seconds for st in s.stages) < duration:
            rates += f", then {_num(s.stages[-1].rate)} to the end"
    else:
        rates = f"{_num(rate)} iterations/s"
    return (
        f"arrival rate (open model): {rates}{expected}, from a pool of "
        f"{_vus(s.max_vus)} (an iteration with no free VU is counted as dropped)"
    )


def _span(s: Schedule, duration: float | None) -> float | None:
    """How long the VU profile should cover: the run, or the schedule's own shape."""
    if duration is not None:
        return duration
    if s.type == "ramp":
        return (s.ramp_duration_seconds or 0.0) + (s.hold_duration_seconds or 0.0)
    if s.type == "spike":
        start = s.spike_start_seconds or 0.0
        length = s.spike_duration_seconds or 0.0
        return start + length + max(length, 1.0)
    if s.type == "steps":
        return sum(st.duration_seconds for st in s.steps)
    return None


def _profile(s: Schedule, duration: float | None, *, starts_only: bool = False) -> list[str]:
    """A few rows of 'time | bar  VUs' sampled evenly over the run (ASCII only).

    ``starts_only`` (iterations mode): each VU runs all its iterations once started, so the
    rows show how many VUs have started by then, not the shape's decreases."""
    if s.type == "arrival_rate":
        return _rate_profile(s, duration)
    if s.type == "constant":
        return []
    span = _span(s, duration)
    if not span or span <= 0:
        return []
    peak = max(peak_vus(s), 1)
    rows = ["  VU profile (VUs started by then):" if starts_only else "  VU profile:"]
    for i in range(_PROFILE_ROWS):
        t = span * i / (_PROFILE_ROWS - 1)
        vus = started_vus(s, t) if starts_only else target_vus(s, t)
        bar = "#" * round(_BAR_WIDTH * vus / peak)
        rows.append(f"    {_num(round(t, 1)):>8} s |{bar:<{_BAR_WIDTH}} {vus}")
    return rows


def _rate_profile(s: Schedule, duration: float | None) -> list[str]:
    """The rows of ``_profile`` for an arrival rate with stages: iterations/s over the run."""
    plan = ArrivalPlan.of(s)
    if not plan.staged or not duration:
        return []
    span = duration
    peak = max([s.rate or 0.0] + [st.rate for st in s.stages]) or 1.0
    rows = ["  Rate profile (iterations/s):"]
    times = {span * i / (_PROFILE_ROWS - 1) for i in range(_PROFILE_ROWS)}
    if len(s.stages) <= _PROFILE_ROWS:
        # The stage ends too: where the rate turns (a peak between two even samples showed
        # 75 of 100/s).
        end = 0.0
        for st in s.stages:
            end += st.duration_seconds
            if end < span:
                times.add(end)
    for t in sorted(times):
        rate = plan.rate_at(t)
        bar = "#" * round(_BAR_WIDTH * rate / peak)
        rows.append(f"    {_num(round(t, 1)):>8} s |{bar:<{_BAR_WIDTH}} {_num(round(rate, 2))}")
    return rows


def _pct(rate: float) -> str:
    return f"{_num(round(rate * 100, 4))} %"


def _goals(a: Assertions) -> list[str]:
    goals = _goal_lines(a, "", "")
    if a.dropped_iterations_max is not None:
        goals.append(f"dropped iterations <= {a.dropped_iterations_max}  (dropped_iterations_max)")
    for name, per_request in a.by_name.items():
        goals.extend(_goal_lines(per_request, f"{name}: ", f"by_name.{name}."))
    return goals


def _goal_lines(a: RequestGoals, label_prefix: str, key_prefix: str) -> list[str]:
    """One line per set goal of ``a``: ``LABEL op VALUE  (KEY)``, label and key prefixed."""
    pairs: list[tuple[str, str]] = []
    for key, pct in GOAL_PERCENTILES.items():
        value = getattr(a, key)
        if value is not None:
            pairs.append((f"p{pct:g} latency <= {_num(value)} ms", key))
    if a.error_rate_max is not None:
        pairs.append((f"error rate <= {_pct(a.error_rate_max)}", "error_rate_max"))
    if a.success_rate_min is not None:
        pairs.append((f"success rate >= {_pct(a.success_rate_min)}", "success_rate_min"))
    if a.rps_min is not None:
        pairs.append((f"throughput >= {_num(a.rps_min)} requests/s", "rps_min"))
    if a.status_5xx_max_rate is not None:
        pairs.append((f"5xx responses <= {_pct(a.status_5xx_max_rate)}", "status_5xx_max_rate"))
    return [f"{label_prefix}{text}  ({key_prefix}{key})" for text, key in pairs]


def _abort_notes(s: Scenario) -> list[str]:
    """Settings of abort_on_fail that can do nothing."""
    a = s.assertions
    if not a.abort_on_fail:
        if a.abort_delay_seconds:
            return ["assertions.abort_delay_seconds does nothing without abort_on_fail = true"]
        return []
    checked = [g for g in evaluate_goals(a, {}) if checked_live(a, g.name)]
    if not checked:
        return [
            "abort_on_fail has no goal to check during the run (rps_min is checked only at the end)"
        ]
    length = s.runtime.duration_seconds
    if length is not None and a.abort_delay_seconds >= length:
        return [
            f"assertions.abort_delay_seconds ({_num(a.abort_delay_seconds)} s) is not before "
            f"the end of the run ({_num(length)} s): no goal is checked during it"
        ]
    return []


def _notes(s: Scenario) -> list[str]:
    notes: list[str] = _abort_notes(s)
    rt = s.runtime
    if rt.flush_interval is not None:
        notes.append(
            "runtime.flush_interval is accepted for compatibility and ignored: z6 flushes "
            "the event log on its own schedule"
        )
    if rt.event_log_path is not None:
        notes.append(f"events.bin is written to {rt.event_log_path} when --out is not given")
    if s.target.base_url.startswith("https://") and not s.target.verify_cert:
        notes.append("TLS certificates are NOT verified (target.verify_cert = false)")
    if s.schedule.type == "arrival_rate":
        notes.append(
            "open model: latency is also reported from each iteration's scheduled start "
            "(coordinated-omission corrected)"
        )
    if rt.iterations is not None and s.schedule.type != "constant":
        notes.append(
            "the run ends when every VU has finished its iterations; the schedule decides "
            "only when each VU starts: once started, a VU runs all its iterations (a "
            "ramp-down, the end of a spike or a lower step stops none)"
        )
    if s.sequence is None and any(r.weight == 0 for r in s.requests):
        zero = [r.name for r in s.requests if r.weight == 0]
        notes.append(f"weight 0: never chosen: {', '.join(zero)}")
    if s.target.cookies:
        # None: the request sends the Host of base_url.
        hosts = {
            next((v.strip().lower() for k, v in r.headers.items() if k.lower() == "host"), None)
            for r in s.requests
        }
        if len(hosts) > 1:
            notes.append(
                "cookies: the requests send different Host headers; cookies are kept for the "
                "host of base_url, and a Set-Cookie whose Domain names another host is ignored"
            )
        if s.target.base_url.startswith("http://"):
            notes.append("cookies: the target is plain http, so Secure cookies are never kept")
    literal = [r.name for r in s.requests if _texts_look_resolved(r)]
    if literal:
        notes.append(
            "body check texts are matched as written: ${NAME} and {{...}} are not resolved "
            f"in them ({', '.join(literal)})"
        )
    return notes


def _texts_look_resolved(r: RequestSpec) -> bool:
    """True when a body check text of ``r`` holds ``${`` or ``{{``, which stay literal."""
    texts: list[str] = []
    for value in (r.expect_body_contains, r.expect_body_not_contains):
        if value is not None:
            texts += [value] if isinstance(value, str) else value
    return any("${" in t or "{{" in t for t in texts)
