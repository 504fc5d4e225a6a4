#!/usr/bin/env python3
"""z6 performance regression suite (SPEC section 9).

    python perf/run.py [--quick] [--case NAME ...] [--json FILE] [--check perf/baseline.json]

Runs the cases on this machine, prints a table and writes a JSON result. Every case measures
z6 and its peers (nginx as the target, wrk and Locust as other clients) in the same run and
reports ratios, since absolute numbers move between machines. A peer that is not installed is
reported as ``{"skipped": reason}``, never faked; a z6 failure is ``{"error": message}``.
Under ``--check`` the exit code is 1 when a tracked ratio of the baseline regressed past its
tolerance or a tracked case failed. See ``perf/README.md``.

Only the standard library and z6's own packages are used. Every subprocess has a timeout;
servers started here are always stopped and temporary directories removed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

PERF_DIR = Path(__file__).resolve().parent
REPO = PERF_DIR.parent
SCENARIOS = PERF_DIR / "scenarios"
LOCUST_VENV = PERF_DIR / ".venv-locust"
CASES = ("throughput", "pipeline", "analyze", "vus", "scaling", "arrival")
CONNECTIONS = 50  # keep-alive connections of every client in throughput and scaling
CLIENT_CPU = 0  # core of the load generators in `throughput`
SERVER_CPU = 1  # core of nginx in `throughput`

#: The goals of issue 6: (case, key, comparison, target). Shown in the table; not the --check.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("throughput", "h11_vs_locust", ">=", 1.5),
    ("throughput", "fast_vs_locust", ">=", 5.0),
    ("throughput", "fast_vs_wrk", ">=", 0.5),
    ("throughput", "fast_cpu_vs_locust", "<=", 0.2),
    ("pipeline", "events_per_s", ">=", 1_000_000),
    ("analyze", "events_per_s", ">=", 1_000_000),
    ("vus", "kb_per_vu", "<=", 30.0),
    ("scaling", "cpu_ratio_2_vs_1", "<=", 1.10),
)


class Skipped(Exception):
    """A peer (nginx, wrk, Locust) is missing or unusable: the client or case is skipped."""


class CaseFailed(Exception):
    """z6 itself failed during a measurement (bad exit code, unparsable output, timeout)."""


# --------------------------------------------------------------------------------------------
# Pure helpers: parsing tool output, ratios, the baseline check, the table.


def parse_wrk(stdout: str) -> tuple[int, float]:
    """Return ``(requests, requests_per_s)`` from wrk's report; raise ``ValueError`` if absent."""
    m_req = re.search(r"^\s*(\d+) requests in ", stdout, re.MULTILINE)
    m_rps = re.search(r"^Requests/sec:\s*([0-9.]+)", stdout, re.MULTILINE)
    if m_req is None or m_rps is None:
        raise ValueError("no 'N requests in' / 'Requests/sec:' lines in wrk output")
    return int(m_req.group(1)), float(m_rps.group(1))


def parse_locust_stats(csv_text: str) -> tuple[int, int, float]:
    """Return ``(requests, failures, requests_per_s)`` of the ``Aggregated`` row of Locust's
    ``*_stats.csv``; raise ``ValueError`` when the row or a column is missing."""
    try:
        rows = list(csv.DictReader(io.StringIO(csv_text)))
    except csv.Error as e:
        raise ValueError(f"Locust stats CSV is malformed: {e}") from e
    for row in rows:
        if row.get("Name") == "Aggregated":
            try:
                return (
                    int(row["Request Count"]),
                    int(row["Failure Count"]),
                    float(row["Requests/s"]),
                )
            except (KeyError, TypeError) as e:
                raise ValueError(f"Locust stats row lacks a column: {e}") from e
    raise ValueError("no 'Aggregated' row in Locust's stats CSV")


def parse_z6_summary(stdout: str) -> tuple[int, int, float, float]:
    """Return ``(requests, failed, rps, duration_s)`` from ``z6 run --json`` output.

    Raises ``ValueError`` when the output holds no JSON object with those keys.
    """
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON object in z6 output")
    try:
        data = json.loads(stdout[start:])
        req = data["requests"]
        return int(req["total"]), int(req["failed"]), float(data["rps"]), float(data["duration_s"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"unexpected z6 JSON summary: {e}") from e


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded to 3 decimals, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def cpu_us_per_request(cpu_s: float, requests: int) -> float | None:
    """CPU microseconds per request (None without requests)."""
    if requests <= 0:
        return None
    return round(cpu_s * 1e6 / requests, 2)


def pool_runs(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result entry from several runs of the same client: req/s and CPU per request over
    all their steady windows together (each run weighs by its requests), and the runs kept.

    An entry with ``error`` or ``skipped`` (or without measurements) makes the pooled entry
    carry that instead of figures.
    """
    out: dict[str, Any] = {"client": label, "runs": runs}
    for r in runs:
        for key in ("error", "skipped"):
            if key in r:
                out[key] = r[key]
                return out
    if not runs or any(
        not r.get("window_requests") or not r.get("window_s") or r.get("cpu_us_per_request") is None
        for r in runs
    ):
        # A run measured by its own totals (no steady window) does not pool with the others.
        out["error"] = "no steady-window measurement in some run"
        return out
    requests = sum(int(r["window_requests"]) for r in runs)
    seconds = sum(float(r["window_s"]) for r in runs)
    cpu_s = sum(r["cpu_us_per_request"] * r["window_requests"] / 1e6 for r in runs)
    out.update(
        rps=round(requests / seconds, 1),
        cpu_us_per_request=cpu_us_per_request(cpu_s, requests),
        measured=f"{len(runs)} steady windows pooled",
        window_requests=requests,
        window_s=round(seconds, 3),
    )
    return out


def lag_percentiles_us(lags_ns: list[int], percentiles: tuple[float, ...]) -> dict[str, float]:
    """``{"p50": µs, ...}`` of ``lags_ns`` (nearest rank, rounded to 0.1 µs); ``{}`` when empty."""
    if not lags_ns:
        return {}
    ordered = sorted(lags_ns)
    n = len(ordered)
    out: dict[str, float] = {}
    for p in percentiles:
        # Exact arithmetic: 99.9 / 100 * 1000 in floats is a hair above 999.
        rank = min(n - 1, max(0, math.ceil(Fraction(str(p)) * n / 100) - 1))
        out[f"p{p:g}".replace(".", "")] = round(ordered[rank] / 1000, 1)
    return out


def kb_per_vu(rss_one_kb: int, rss_many_kb: int, vus: int) -> float:
    """Resident kB added per VU going from 1 VU to ``vus`` VUs."""
    if vus < 2:
        raise ValueError("need at least 2 VUs to compute memory per VU")
    return round((rss_many_kb - rss_one_kb) / (vus - 1), 2)


def parse_vmrss_kb(status_text: str) -> int | None:
    """The ``VmRSS`` value (kB) of a ``/proc/PID/status`` text, None when absent."""
    m = re.search(r"^VmRSS:\s*(\d+)\s*kB", status_text, re.MULTILINE)
    return int(m.group(1)) if m else None


def count_established(proc_net_tcp: str, port: int) -> int:
    """Count ESTABLISHED sockets whose *local* port is ``port`` in a ``/proc/net/tcp`` text
    (the server side of the connections to a listener on ``port``)."""
    n = 0
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or ":" not in parts[1]:
            continue
        try:
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
        except ValueError:
            continue
        if local_port == port and parts[3] == "01":
            n += 1
    return n


def lookup(result: dict[str, Any], dotted: str) -> Any:
    """``lookup(r, "throughput.fast_vs_wrk")``: a tracked value in a result's ``cases``.

    The key after the case name is looked up in the case dict and then in its ``ratios``.
    Returns None when absent.
    """
    case, _, key = dotted.partition(".")
    data = result.get("cases", {}).get(case)
    if not isinstance(data, dict):
        return None
    if key in data:
        return data[key]
    ratios = data.get("ratios")
    if isinstance(ratios, dict):
        return ratios.get(key)
    return None


@dataclass
class CheckRow:
    """One tracked metric compared with the baseline."""

    metric: str
    baseline: float
    value: float | None
    limit: float
    higher_is_better: bool
    status: str  # "ok", "REGRESSED", "not measured", "FAILED"
    note: str = ""


def check_against_baseline(result: dict[str, Any], baseline: dict[str, Any]) -> list[CheckRow]:
    """Compare the tracked metrics of ``baseline`` with ``result``.

    ``baseline["tracked"]`` maps ``"case.key"`` to ``{"value", "tolerance", "higher_is_better"}``
    (tolerance defaults to ``baseline["default_tolerance"]``, else 0.25). A value is REGRESSED
    when it is worse than ``value * (1 - tolerance)`` (higher is better) or
    ``value * (1 + tolerance)`` (lower is better). A metric of a skipped case (missing peer) is
    "not measured"; one of a case that failed, or that was selected and is missing, is FAILED.
    """
    rows: list[CheckRow] = []
    default_tol = float(baseline.get("default_tolerance", 0.25))
    for metric, spec in baseline.get("tracked", {}).items():
        base = float(spec["value"])
        tol = float(spec.get("tolerance", default_tol))
        higher = bool(spec.get("higher_is_better", True))
        limit = base * (1 - tol) if higher else base * (1 + tol)
        case = metric.partition(".")[0]
        case_data = result.get("cases", {}).get(case)
        if case_data is None:
            continue  # case not selected in this run
        value = lookup(result, metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            bad = value < limit if higher else value > limit
            rows.append(
                CheckRow(metric, base, float(value), limit, higher, "REGRESSED" if bad else "ok")
            )
        elif isinstance(case_data, dict) and "error" in case_data:
            rows.append(
                CheckRow(metric, base, None, limit, higher, "FAILED", str(case_data["error"]))
            )
        else:
            why = _why_missing(case_data)
            status = "not measured" if why.startswith("skipped") else "FAILED"
            rows.append(CheckRow(metric, base, None, limit, higher, status, why))
    return rows


def _why_missing(case_data: Any) -> str:
    """Explain why a tracked value is absent from a case: skipped peer or z6 error."""
    if not isinstance(case_data, dict):
        return "no data"
    if "skipped" in case_data:
        return f"skipped: {case_data['skipped']}"
    errors = [
        r.get("error") for r in case_data.get("results", []) if isinstance(r, dict) and "error" in r
    ]
    if errors:
        return f"error: {errors[0]}"
    skipped = [
        r.get("skipped")
        for r in case_data.get("results", [])
        if isinstance(r, dict) and "skipped" in r
    ]
    if skipped:
        return f"skipped: {skipped[0]}"
    return "value missing"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def goal_status(value: Any, op: str, target: float) -> str:
    """``"met"`` / ``"MISSED"`` for a numeric value against a goal, ``"-"`` otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    ok = value >= target if op == ">=" else value <= target
    return "met" if ok else "MISSED"


def render_table(result: dict[str, Any]) -> str:
    """The human table: one line per measured value, goals of issue 6 beside the ratios."""
    goals = {(c, k): (op, t) for c, k, op, t in GOALS}
    lines: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    for case, data in result.get("cases", {}).items():
        if not isinstance(data, dict):
            continue
        if "skipped" in data:
            lines.append((case, "skipped", str(data["skipped"]), ""))
            continue
        if "error" in data:
            lines.append((case, "ERROR", str(data["error"]), ""))
            continue
        for r in data.get("results", []):
            name = r.get("client", "?")
            if "skipped" in r:
                lines.append((case, name, f"skipped: {r['skipped']}", ""))
            elif "error" in r:
                lines.append((case, name, f"ERROR: {r['error']}", ""))
            else:
                rps = _fmt(r.get("rps"))
                cpu = _fmt(r.get("cpu_us_per_request"))
                each = ""
                if isinstance(r.get("runs"), list):
                    per = " / ".join(_fmt(x.get("cpu_us_per_request")) for x in r["runs"])
                    each = f" (runs: {per})"
                lines.append((case, name, f"{rps} req/s, {cpu} CPU us/req{each}", ""))
        flat: dict[str, Any] = {
            k: v for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        flat.update(data.get("ratios", {}))
        for key, value in flat.items():
            goal = ""
            if (case, key) in goals:
                op, target = goals[(case, key)]
                shown = f"{int(target):,}" if float(target).is_integer() else f"{target:g}"
                goal = f"goal {op} {shown}: {goal_status(value, op, target)}"
            lines.append((case, key, _fmt(value), goal))
        for key, value in data.items():
            if isinstance(value, dict) and key != "ratios":
                for what in ("skipped", "error"):
                    if what in value:
                        lines.append((case, key, f"{what}: {value[what]}", ""))
        for key in ("measured", "note"):
            if isinstance(data.get(key), str):
                notes.append(f"{case}: {data[key]}")
    widths = [max((len(row[i]) for row in lines), default=0) for i in range(3)]
    head = ("case", "metric", "value", "goal (issue 6)")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=False)]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(head[:3], widths, strict=True)) + "  " + head[3],
        "  ".join("-" * w for w in widths) + "  " + "-" * len(head[3]),
    ]
    for row in lines:
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    m = result.get("machine", {})
    if m:
        load = ", ".join(f"{x:.2f}" for x in m.get("loadavg", []))
        out.insert(
            0,
            f"z6 {m.get('z6')} on {m.get('cpu')} x{m.get('cpus')}, {m.get('date')}, "
            f"load average at start {load}" + (" (--quick)" if result.get("quick") else ""),
        )
    if notes:
        out.append("")
        out.extend(f"note: {n}" for n in notes)
    return "\n".join(line.rstrip() for line in out)


def render_check(rows: list[CheckRow]) -> str:
    """The ``--check`` table."""
    out = ["metric                            baseline   limit      now        status"]
    for r in rows:
        sign = ">=" if r.higher_is_better else "<="
        out.append(
            f"{r.metric:<33} {_fmt(r.baseline):<10} {sign}{_fmt(r.limit):<9} "
            f"{_fmt(r.value):<10} {r.status}{'  (' + r.note + ')' if r.note else ''}"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Processes: finding tools, running measured commands, nginx.


@dataclass
class Window:
    """Steady-state figures of a load run, taken while it ran (see :func:`run_measured`)."""

    seconds: float
    requests: int  # requests nginx served in the window (all from the measured client)
    cpu_s: float  # CPU time of the client's process tree in the window

    @property
    def rps(self) -> float:
        """Requests per second that nginx served in the window."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Measured:
    """What :func:`run_measured` observed of one command."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of the command and every descendant it waited for
    window: Window | None = None


def find_tool(name: str) -> str | None:
    """Path of an executable on PATH or in the sbin directories (nginx lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def find_locust() -> str | None:
    """Locust from ``perf/.venv-locust`` (``perf/setup.sh``), else from PATH."""
    p = LOCUST_VENV / "bin" / "locust"
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    return shutil.which("locust")


def z6_command() -> list[str]:
    """How to start z6: this interpreter's ``-m z6.cli`` (z6 is importable here)."""
    return [sys.executable, "-m", "z6.cli"]


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c CPU`` when pinning is wanted and possible."""
    if cpu is None or cpu >= (os.cpu_count() or 1):
        return cmd
    taskset = find_tool("taskset")
    return [taskset, "-c", str(cpu), *cmd] if taskset else cmd


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat(text: str) -> tuple[int, int]:
    """``(ppid, cpu_ticks)`` of a ``/proc/PID/stat`` line: utime + stime + cutime + cstime.

    The command name may hold spaces and parentheses, so fields are counted after the last
    ``)``. Raises ``ValueError`` on a line that does not have the fields.
    """
    rest = text[text.rfind(")") + 2 :].split()
    if len(rest) < 15:
        raise ValueError("short /proc stat line")
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, cpu ticks) of every process visible now."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = parse_proc_stat(Path(f"/proc/{entry}/stat").read_text())
            except (OSError, ValueError):
                continue
    return table


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and all its live descendants (and whatever they
    already reaped), from ``/proc``."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for p, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(p)
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        if p in table:
            total += table[p][1]
        todo.extend(kids.get(p, ()))
    return total / _CLK_TCK


def parse_stub_status(text: str) -> tuple[int, int]:
    """``(active_connections, total_requests)`` from nginx's ``stub_status`` page; raises
    ``ValueError`` when the text is not one."""
    m_active = re.search(r"Active connections:\s*(\d+)", text)
    m_counts = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.MULTILINE)
    if m_active is None or m_counts is None:
        raise ValueError("not an nginx stub_status page")
    return int(m_active.group(1)), int(m_counts.group(3))


class NginxStatus:
    """Reads the ``/nginx_status`` page of an nginx started by :func:`nginx_server`."""

    def __init__(self, port: int) -> None:
        """Remember the port; nothing is connected until :meth:`read`."""
        self.port = port

    def read(self) -> tuple[int, int]:
        """``(active_connections, total_requests)``, excluding this status request itself."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /nginx_status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        active, requests = parse_stub_status(b"".join(chunks).decode("latin-1"))
        return active - 1, requests - 1


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group of ``proc`` (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _measure_window(
    proc: subprocess.Popen[Any], status: NginxStatus, load_s: float, connections: int
) -> Window | None:
    """Wait until the client holds its connections, then sample nginx's request counter and
    the client's CPU at the start and end of a window inside the load phase. None when the
    client never got its connections up or ended during the window."""
    deadline = time.monotonic() + load_s + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            active, _ = status.read()
        except (OSError, ValueError):
            return None
        if active >= connections:
            break
        time.sleep(0.05)
    else:
        return None
    settle = min(0.5, 0.15 * load_s)
    time.sleep(settle)
    length = max(0.5, 0.6 * load_s)
    try:
        cpu0, (_, req0), t0 = tree_cpu_s(proc.pid), status.read(), time.perf_counter()
        time.sleep(length)
        cpu1, (_, req1), t1 = tree_cpu_s(proc.pid), status.read(), time.perf_counter()
    except (OSError, ValueError):
        return None
    if proc.poll() is not None:
        return None
    return Window(seconds=t1 - t0, requests=req1 - req0 - 1, cpu_s=cpu1 - cpu0)


def run_measured(
    cmd: list[str],
    timeout: float,
    cwd: Path | None = None,
    steady: tuple[NginxStatus, float, int] | None = None,
) -> Measured:
    """Run ``cmd`` to completion and measure wall time and the CPU time of its process tree.

    CPU time is the ``RUSAGE_CHILDREN`` delta around the wait: it covers the command and every
    descendant that was waited for (z6's workers are joined by their supervisor, so they count),
    start-up and shutdown included. Servers started by this script are children too, but they
    are only waited for when they are stopped, never during a measurement.

    With ``steady = (nginx_status, load_seconds, connections)`` a steady-state :class:`Window`
    is also measured while the command runs: requests counted by nginx itself and the CPU of
    the client's process tree from ``/proc``, which leaves start-up costs out and counts every
    client the same way. On timeout the whole process group is killed and ``CaseFailed``
    raised. Output goes through temporary files, so a chatty command never blocks on a pipe.
    """
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            text=True,
            start_new_session=True,
        )
        window = None
        try:
            if steady is not None:
                window = _measure_window(proc, *steady)
            proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            raise CaseFailed(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        return Measured(
            proc.returncode, out_f.read(), err_f.read(), wall, _children_cpu_s() - cpu0, window
        )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skipped(f"nginx exited at start with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise Skipped(f"nginx did not listen on port {port} within {timeout:.0f} s")


NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile {nofile};
events {{
    worker_connections {conns};
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=16384;
        location = /nginx_status {{
            stub_status;
        }}
        location / {{
            return 200 "ok";
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_server(cpu: int | None, connections: int = 1024, workers: int = 1) -> Iterator[int]:
    """Start a private nginx (generated config in a temp dir) and yield its port.

    ``cpu`` pins it with taskset (None: not pinned). Raises ``Skipped`` when nginx is not
    installed or does not start. Always stopped (TERM, then KILL) and its directory removed.
    """
    exe = find_tool("nginx")
    if exe is None:
        raise Skipped("nginx is not installed (run perf/setup.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="z6perf-nginx-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workers=workers,
                tmp=tmp,
                nofile=max(4096, connections * 2 + 64),
                # nginx needs headroom over the client connections: at its limit it starts
                # "reusing connections", i.e. closing idle keep-alive ones (the vus case's VUs).
                conns=max(1024, connections * 2 + 64),
                port=port,
            )
        )
        cmd = pinned([exe, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")], cpu)
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(port, proc, timeout=10)
        yield port
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()  # nginx: TERM = fast shutdown of master and workers
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    proc.wait(timeout=5)
            _kill_group(proc)  # any worker left behind
        shutil.rmtree(tmp, ignore_errors=True)


def _raise_nofile(want: int = 65536) -> None:
    """Raise this process's open-files limit (inherited by nginx and z6) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
    for h in (target_hard, hard):
        try:
            s = want if h == resource.RLIM_INFINITY else min(want, h)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, s), h))
            return
        except (ValueError, OSError):
            continue


# --------------------------------------------------------------------------------------------
# Running z6.


@dataclass
class Config:
    """What the whole run was asked for."""

    quick: bool
    secs: float  # duration of each load run in throughput / scaling
    tmp: Path
    z6_ok: bool
    z6_error: str = ""
    log: Callable[[str], None] = field(default=print)


def _scenario_file(cfg: Config, name: str, port: int) -> Path:
    text = (SCENARIOS / name).read_text().replace("@PORT@", str(port))
    path = cfg.tmp / f"{port}-{name}"
    path.write_text(text)
    return path


def z6_load(
    cfg: Config,
    port: int,
    procs: int,
    engine: str,
    cpu: int | None,
    label: str,
    scenario: str = "throughput.toml",
    connections: int = CONNECTIONS,
    read_log: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``z6 run`` of ``scenario`` (by default the 50-VU throughput one); returns the
    client result dict. The steady window starts once nginx holds ``connections``;
    ``read_log`` (``ValueError`` for a bad log) adds its figures from the run's ``events.bin``.
    """
    scen = _scenario_file(cfg, scenario, port)
    out = cfg.tmp / f"out-{label}"
    cmd = pinned(
        [
            *z6_command(),
            "run",
            str(scen),
            "--procs",
            str(procs),
            "--duration",
            str(cfg.secs),
            "--http",
            engine,
            "--quiet",
            "--json",
            "--out",
            str(out),
        ],
        cpu,
    )
    m = run_measured(cmd, timeout=cfg.secs + 60, steady=(NginxStatus(port), cfg.secs, connections))
    try:
        if m.returncode not in (0, 1):
            raise CaseFailed(f"z6 run exited {m.returncode}: {_last_line(m.stderr)}")
        try:
            total, failed, rps, duration = parse_z6_summary(m.stdout)
            from_log = read_log(out / "events.bin") if read_log is not None else {}
        except ValueError as e:
            raise CaseFailed(f"{e} (exit {m.returncode}; {_last_line(m.stderr)})") from None
    finally:
        shutil.rmtree(out, ignore_errors=True)
    res = client_result(label, m, total, rps)
    res.update(failed=failed, duration_s=round(duration, 3), procs=procs, engine=engine)
    res.update(from_log)
    return res


def client_result(label: str, m: Measured, total: int, client_rps: float) -> dict[str, Any]:
    """The result entry of one client run.

    ``rps`` and ``cpu_us_per_request`` come from the steady-state window when there is one
    (``"measured": "steady window"``: requests counted by nginx, CPU of the client's process
    tree from /proc, start-up excluded), else from the client's own totals (``"client
    totals"``). Both sets are kept: ``client_rps`` is what the client reported and
    ``cpu_us_per_request_total`` divides all the CPU it used, start-up included.
    """
    res: dict[str, Any] = {
        "client": label,
        "rps": round(client_rps, 1),
        "cpu_us_per_request": cpu_us_per_request(m.cpu_s, total),
        "measured": "client totals",
        "client_rps": round(client_rps, 1),
        "cpu_us_per_request_total": cpu_us_per_request(m.cpu_s, total),
        "requests": total,
        "wall_s": round(m.wall_s, 3),
        "cpu_s": round(m.cpu_s, 3),
    }
    w = m.window
    if w is not None and w.requests > 0:
        res.update(
            rps=round(w.rps, 1),
            cpu_us_per_request=cpu_us_per_request(w.cpu_s, w.requests),
            measured="steady window",
            window_s=round(w.seconds, 3),
            window_requests=w.requests,
        )
    return res


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _client(label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one client measurement, turning Skipped / CaseFailed into result entries."""
    try:
        return fn()
    except Skipped as e:
        return {"client": label, "skipped": str(e)}
    except CaseFailed as e:
        return {"client": label, "error": str(e)}


# --------------------------------------------------------------------------------------------
# Case: throughput


def _wrk(
    cfg: Config, port: int, threads: int = 1, cpu: int | None = CLIENT_CPU, label: str = "wrk"
) -> dict[str, Any]:
    exe = find_tool("wrk")
    if exe is None:
        raise Skipped("wrk is not installed (run perf/setup.sh)")
    secs = max(1, round(cfg.secs))
    cmd = pinned(
        [exe, f"-t{threads}", f"-c{CONNECTIONS}", f"-d{secs}s", f"http://127.0.0.1:{port}/"], cpu
    )
    m = run_measured(cmd, timeout=secs + 30, steady=(NginxStatus(port), secs, CONNECTIONS))
    if m.returncode != 0:
        raise Skipped(f"wrk exited {m.returncode}: {_last_line(m.stderr)}")
    try:
        total, rps = parse_wrk(m.stdout)
    except ValueError as e:
        raise Skipped(str(e)) from None
    return client_result(label, m, total, rps)


def _locust(cfg: Config, port: int) -> dict[str, Any]:
    exe = find_locust()
    if exe is None:
        raise Skipped("locust is not installed (run perf/setup.sh)")
    secs = max(1, round(cfg.secs))
    prefix = cfg.tmp / f"locust-{port}"
    cmd = pinned(
        [
            exe,
            "-f",
            str(PERF_DIR / "locustfile.py"),
            "--headless",
            "-u",
            str(CONNECTIONS),
            "-r",
            str(CONNECTIONS),
            "-t",
            f"{secs}s",
            "--host",
            f"http://127.0.0.1:{port}",
            "--only-summary",
            "--csv",
            str(prefix),
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ],
        CLIENT_CPU,
    )
    m = run_measured(
        cmd, timeout=secs + 60, cwd=cfg.tmp, steady=(NginxStatus(port), secs, CONNECTIONS)
    )
    stats = Path(f"{prefix}_stats.csv")
    if m.returncode != 0 or not stats.exists():
        raise Skipped(f"locust exited {m.returncode}: {_last_line(m.stderr)}")
    try:
        total, failed, rps = parse_locust_stats(stats.read_text())
    except ValueError as e:
        raise Skipped(str(e)) from None
    res = client_result("locust", m, total, rps)
    res["failed"] = failed
    return res


def _z6_client(cfg: Config, port: int, engine: str, label: str) -> dict[str, Any]:
    if not cfg.z6_ok:
        raise CaseFailed(cfg.z6_error)
    return z6_load(cfg, port, procs=1, engine=engine, cpu=CLIENT_CPU, label=label)


def case_throughput(cfg: Config) -> dict[str, Any]:
    """z6 (--procs 1, h11 and httptools) vs wrk vs Locust on one pinned nginx, 50 connections."""
    with nginx_server(cpu=SERVER_CPU, connections=4 * CONNECTIONS) as port:
        results = []
        for label, fn in (
            ("wrk", lambda: _wrk(cfg, port)),
            ("locust", lambda: _locust(cfg, port)),
            ("z6-h11", lambda: _z6_client(cfg, port, "h11", "z6-h11")),
            ("z6-httptools", lambda: _z6_client(cfg, port, "httptools", "z6-httptools")),
        ):
            cfg.log(f"  throughput: {label} for {cfg.secs:g} s")
            results.append(_client(label, fn))
    by = {r["client"]: r for r in results}

    def get(client: str, key: str) -> float | None:
        v = by.get(client, {}).get(key)
        return float(v) if isinstance(v, int | float) else None

    ratios = {
        "h11_vs_locust": ratio(get("z6-h11", "rps"), get("locust", "rps")),
        "fast_vs_locust": ratio(get("z6-httptools", "rps"), get("locust", "rps")),
        "fast_vs_wrk": ratio(get("z6-httptools", "rps"), get("wrk", "rps")),
        "fast_cpu_vs_locust": ratio(
            get("z6-httptools", "cpu_us_per_request"), get("locust", "cpu_us_per_request")
        ),
        "h11_cpu_vs_locust": ratio(
            get("z6-h11", "cpu_us_per_request"), get("locust", "cpu_us_per_request")
        ),
    }
    return {
        "results": results,
        "ratios": ratios,
        "seconds": cfg.secs,
        "connections": CONNECTIONS,
        "note": f"nginx pinned to core {SERVER_CPU}, clients to core {CLIENT_CPU}; "
        "rps and CPU/request from a steady window (nginx stub_status + /proc), start-up excluded",
    }


# --------------------------------------------------------------------------------------------
# Synthetic events (pipeline and analyze)

_REQUEST_NAMES = ("index", "bytes_1k", "echo", "missing")


class EventFactory:
    """Deterministic, realistic-looking RequestEvents: 50 VUs at ~50k req/s of run time, four
    requests with their own sizes, lognormal-ish latencies, a few errors and reconnects."""

    def __init__(self, seed: int = 6, vus: int = 50, rate: float = 50_000.0) -> None:
        """Precompute cyclic tables so that making millions of events stays cheap."""
        import random

        from z6.ipc.events import RequestEvent

        self._cls = RequestEvent
        rng = random.Random(seed)
        self.vus = vus
        self.step_ns = int(1e9 / rate)
        n = 4099  # prime: the tables do not line up with the VU cycle
        self._lat = [int(rng.lognormvariate(14.2, 0.5)) for _ in range(n)]  # ~1.5 ms median
        weights = (5, 2, 2, 1)
        self._req = [rng.choices(range(4), weights)[0] for _ in range(n)]
        sizes = (180, 1200, 200, 150)
        statuses = (200, 200, 200, 404)
        self._status: list[int] = []
        self._error: list[int] = []
        self._bytes: list[int] = []
        for i in range(n):
            r = self._req[i]
            roll = rng.random()
            if roll < 0.002:  # transport error: reset / timeout
                self._status.append(0)
                self._error.append(4 if roll < 0.001 else 3)
                self._bytes.append(0)
            else:
                st = statuses[r]
                self._status.append(st)
                self._error.append(9 if st >= 400 else 0)
                self._bytes.append(sizes[r] + rng.randrange(0, 16))
        self._newconn = [rng.random() < 0.001 for _ in range(n)]
        self._n = n

    def batch(self, first: int, count: int) -> list[Any]:
        """Events ``first .. first+count-1`` of the infinite deterministic stream."""
        cls = self._cls
        lat, req, status, error, nbytes, newc = (
            self._lat,
            self._req,
            self._status,
            self._error,
            self._bytes,
            self._newconn,
        )
        n, vus, step = self._n, self.vus, self.step_ns
        out = []
        for i in range(first, first + count):
            k = i % n
            nc = newc[k] or i < vus
            out.append(
                cls(
                    i % vus,
                    i // vus,
                    req[k],
                    0,
                    i * step,
                    lat[k],
                    status[k],
                    error[k],
                    nbytes[k],
                    nc,
                    80_000 if nc else 0,
                )
            )
        return out


def _log_header(scenario_text: str, procs: int = 1) -> Any:
    import hashlib

    from z6.engine.version import __version__
    from z6.ipc.eventlog import LogHeader

    return LogHeader(
        z6_version=__version__,
        seed=6,
        scenario_text=scenario_text,
        scenario_sha256=hashlib.sha256(scenario_text.encode()).hexdigest(),
        scenario_path="perf/scenarios/analyze.toml",
        procs=procs,
        wall_start_ns=time.time_ns(),
    )


def write_synthetic_log(path: Path, events: int, batch: int = 512) -> int:
    """Write an ``events.bin`` with ``events`` request events from one worker (plus its
    WorkerStarted/WorkerFinished and a footer); return the number of frames."""
    from z6.ipc.eventlog import EventLogWriter, LogFooter
    from z6.ipc.events import WorkerFinished, WorkerStarted, encode_batch

    factory = EventFactory()
    text = (SCENARIOS / "analyze.toml").read_text()
    writer = EventLogWriter(path, _log_header(text))
    frames = 0
    produced = 0
    buf = bytearray()
    try:
        writer.write_batch(0, encode_batch([WorkerStarted(0, os.getpid(), 0, factory.vus)]))
        produced += 1
        frames += 1
        i = 0
        while i < events:
            n = min(batch, events - i)
            writer.write_batch(0, encode_batch(factory.batch(i, n), buf))
            i += n
            produced += n
            frames += 1
        end_ns = events * factory.step_ns
        writer.write_batch(0, encode_batch([WorkerFinished(0, end_ns, produced, events, 0)]))
        frames += 1
        footer = LogFooter(
            worker_events=[produced],  # not counting WorkerFinished, like the supervisor
            worker_reported=[produced],
            end_wall_ns=time.time_ns(),
            outcome="complete",
        )
        writer.close(footer)
    finally:
        writer.close(None)
    return frames


# --------------------------------------------------------------------------------------------
# Case: pipeline


def _pipeline_producer(ring_name: str, payloads: list[bytes], rounds: int) -> None:
    """Producer process: write the pre-encoded batches ``rounds`` times, then close the ring."""
    from z6.ipc.ring import Ring

    ring = Ring.attach(ring_name)
    try:
        for _ in range(rounds):
            for p in payloads:
                while not ring.try_write(p):
                    time.sleep(0.00005)  # backpressure, as a worker waits
        ring.mark_closed()
    finally:
        ring.close()


def _producer_closed(ring: Any) -> bool:
    closed = ring.producer_closed
    return bool(closed() if callable(closed) else closed)


def _make_reducer() -> Any:
    from z6.engine.metrics import Reducer

    return Reducer(list(_REQUEST_NAMES), open_model=False)


def _rate(events: int, seconds: float) -> float:
    return round(events / seconds, 0) if seconds > 0 else 0.0


def case_pipeline(cfg: Config) -> dict[str, Any]:
    """Events/s through one ring into decode + Reducer.add + EventLogWriter.write_batch, with
    the producer in its own process; plus each part alone, and the whole z6 path on nginx."""
    from z6.ipc.eventlog import EventLogWriter
    from z6.ipc.events import decode_batch, encode_batch
    from z6.ipc.ring import Ring

    try:
        from z6.engine.vu import BATCH_MAX as batch_size
    except ImportError:
        batch_size = 512
    try:
        _make_reducer()
    except ImportError as e:
        return {"error": f"z6.engine.metrics.Reducer is not available: {e}"}
    factory = EventFactory()
    distinct = 200  # distinct batches, cycled by the producer
    payloads = [
        bytes(encode_batch(factory.batch(i * batch_size, batch_size))) for i in range(distinct)
    ]
    total_events = 500_000 if cfg.quick else 3_000_000
    rounds = max(1, total_events // (distinct * batch_size))
    text = (SCENARIOS / "analyze.toml").read_text()
    result: dict[str, Any] = {"batch_events": batch_size}

    # The whole consumer path, producer in a separate process (as a worker is). Best of
    # three: on a shared 2-core machine one run can lose a core to another process.
    expected = rounds * distinct * batch_size
    rates: list[float] = []
    for _ in range(3):
        got, elapsed = _pipeline_once(cfg, payloads, rounds, text)
        if got != expected:
            return {"error": f"pipeline read {got} events, expected {expected}"}
        rates.append(_rate(got, elapsed))
    result["events"] = expected
    result["events_per_s"] = max(rates)
    result["events_per_s_runs"] = rates

    # Each part alone, in this process, on the same batches.
    part_payloads = payloads * max(
        1, (100_000 if cfg.quick else 500_000) // (distinct * batch_size)
    )
    n_part = len(part_payloads) * batch_size
    t0 = time.perf_counter()
    decoded = [decode_batch(p) for p in part_payloads]
    result["decode_events_per_s"] = _rate(n_part, time.perf_counter() - t0)
    reducer = _make_reducer()
    t0 = time.perf_counter()
    for evs in decoded:
        reducer.add(evs, 0)
    result["reduce_events_per_s"] = _rate(n_part, time.perf_counter() - t0)
    del decoded
    log_path = cfg.tmp / "pipeline-parts.bin"
    writer = EventLogWriter(log_path, _log_header(text))
    try:
        t0 = time.perf_counter()
        for p in part_payloads:
            writer.write_batch(0, p)
        writer.flush()
        result["log_write_events_per_s"] = _rate(n_part, time.perf_counter() - t0)
    finally:
        writer.close(None)
        log_path.unlink(missing_ok=True)
    with Ring.create(8 * 1024 * 1024) as r:
        moved = 0
        t0 = time.perf_counter()
        pending = list(part_payloads)
        while pending:
            while pending and r.try_write(pending[-1]):
                pending.pop()
            moved += len(r.read_all()) * batch_size
        result["ring_events_per_s"] = _rate(moved, time.perf_counter() - t0)

    # The whole worker -> ring -> aggregator -> events.bin path of a real run (events = requests).
    full = _client("z6-run", lambda: _pipeline_full(cfg))
    if "rps" in full:
        result["full_path_events_per_s"] = full["rps"]
        result["full_path_cpu_us_per_event"] = full["cpu_us_per_request"]
    else:
        result["full_path"] = full
    return result


def _pipeline_once(
    cfg: Config, payloads: list[bytes], rounds: int, scenario_text: str
) -> tuple[int, float]:
    """One producer process -> ring -> decode + reduce + log write; ``(events, seconds)``.

    Raises ``CaseFailed`` when the producer dies or the run exceeds its time bound.
    """
    import multiprocessing

    from z6.ipc.eventlog import EventLogWriter
    from z6.ipc.events import decode_batch
    from z6.ipc.ring import Ring

    ctx = multiprocessing.get_context("fork")
    ring = Ring.create(8 * 1024 * 1024)
    log_path = cfg.tmp / "pipeline-events.bin"
    proc = None
    try:
        reducer = _make_reducer()
        writer = EventLogWriter(log_path, _log_header(scenario_text))
        proc = ctx.Process(target=_pipeline_producer, args=(ring.name, payloads, rounds))
        events = 0
        t0 = time.perf_counter()
        proc.start()
        deadline = time.monotonic() + 300
        while True:
            if time.monotonic() > deadline:
                raise CaseFailed("pipeline run exceeded 300 s")
            closed = _producer_closed(ring)
            recs = ring.read_all()
            for rec in recs:
                writer.write_batch(0, rec)
                evs = decode_batch(rec)
                reducer.add(evs, 0)
                events += len(evs)
            if closed:
                break
            if not recs:
                if proc.exitcode not in (None, 0):
                    raise CaseFailed(f"pipeline producer died with code {proc.exitcode}")
                time.sleep(0.0001)
        writer.flush()
        elapsed = time.perf_counter() - t0
        writer.close(None)
        return events, elapsed
    finally:
        if proc is not None:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        ring.close()
        ring.unlink()
        log_path.unlink(missing_ok=True)


def _pipeline_full(cfg: Config) -> dict[str, Any]:
    if not cfg.z6_ok:
        raise CaseFailed(cfg.z6_error)
    with nginx_server(cpu=SERVER_CPU, connections=4 * CONNECTIONS) as port:
        return z6_load(cfg, port, procs=1, engine="httptools", cpu=CLIENT_CPU, label="z6-run")


# --------------------------------------------------------------------------------------------
# Case: analyze


def _z6_has_analyze() -> bool:
    try:
        m = run_measured([*z6_command(), "analyze", "--help"], timeout=60)
    except CaseFailed:
        return False
    return m.returncode == 0


def _analyze_in_process(path: Path) -> int:
    """The equivalent of ``z6 analyze`` in this process; returns the requests counted."""
    from z6.engine.loader import load_scenario_text
    from z6.ipc.eventlog import EventLogReader

    reader = EventLogReader(path)
    sc = load_scenario_text(reader.header.scenario_text, reader.header.scenario_path)
    reducer = _make_reducer()
    for worker, events in reader.batches():
        reducer.add(events, worker)
    try:
        from z6.engine.summary import RunMeta, build_summary
    except ImportError:
        return -1
    summary = build_summary(
        reducer, RunMeta.from_header(reader.header), sc.assertions, footer=reader.footer
    )
    return int(summary["requests"]["total"])


def case_analyze(cfg: Config) -> dict[str, Any]:
    """Time ``z6 analyze LOG --format json`` on a generated log (in-process equivalent when the
    command does not exist yet)."""
    n = 500_000 if cfg.quick else 5_000_000
    path = cfg.tmp / "analyze-events.bin"
    try:
        t0 = time.perf_counter()
        write_synthetic_log(path, n)
        gen_s = time.perf_counter() - t0
        cfg.log(f"  analyze: generated {n:,} events in {gen_s:.1f} s")
        result: dict[str, Any] = {
            "events": n,
            "log_bytes": path.stat().st_size,
            "generate_s": round(gen_s, 2),
        }
        if cfg.z6_ok and _z6_has_analyze():
            m = run_measured([*z6_command(), "analyze", str(path), "--format", "json"], timeout=600)
            if m.returncode != 0:
                return {
                    **result,
                    "error": f"z6 analyze exited {m.returncode}: {_last_line(m.stderr)}",
                }
            try:
                total = int(json.loads(m.stdout)["requests"]["total"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                return {**result, "error": f"unexpected z6 analyze output: {e}"}
            seconds = m.wall_s
            result.update(measured="z6 analyze --format json", cpu_s=round(m.cpu_s, 3))
            # The command's fixed cost (interpreter, imports), from a 512-event log, so that
            # quick and full runs can be compared: events_per_s_excl_startup.
            tiny = cfg.tmp / "analyze-tiny.bin"
            write_synthetic_log(tiny, 512)
            try:
                t = run_measured([*z6_command(), "analyze", str(tiny), "--format", "json"], 120)
            finally:
                tiny.unlink(missing_ok=True)
            if t.returncode == 0 and t.wall_s < seconds:
                result["startup_s"] = round(t.wall_s, 3)
                result["events_per_s_excl_startup"] = _rate(n, seconds - t.wall_s)
        else:
            try:
                t0 = time.perf_counter()
                total = _analyze_in_process(path)
                seconds = time.perf_counter() - t0
            except ImportError as e:
                return {**result, "error": f"neither z6 analyze nor its modules exist: {e}"}
            result["measured"] = "in-process EventLogReader + Reducer + build_summary"
            result["events_per_s_excl_startup"] = _rate(n, seconds)
        if total not in (n, -1):
            return {**result, "error": f"analyze counted {total} requests, the log has {n}"}
        result["seconds"] = round(seconds, 3)
        result["events_per_s"] = _rate(n, seconds)
        return result
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Case: vus


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _worker_pids(z6_pid: int) -> list[int]:
    """z6's workers: forked children with z6's own command line (not the resource tracker)."""
    own = _cmdline(z6_pid)
    return [c for c in _children(z6_pid) if _cmdline(c) == own]


def _rss_kb(pid: int) -> int | None:
    try:
        return parse_vmrss_kb(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def _established(port: int) -> int:
    try:
        return count_established(Path("/proc/net/tcp").read_text(), port)
    except OSError:
        return 0


def _idle_rss(cfg: Config, port: int, vus: int, ready_timeout: float) -> dict[str, Any]:
    """Start z6 with ``vus`` idle VUs, wait until their connections exist and the worker's RSS
    is steady, sample it, then stop z6 with SIGINT."""
    scen = _scenario_file(cfg, "vus.toml", port)
    out = cfg.tmp / f"out-vus-{vus}"
    cmd = [*z6_command(), "run", str(scen), "--procs", "1", "--vus", str(vus), "--quiet"]
    cmd += ["--out", str(out)]
    base_conns = _established(port)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    try:
        deadline = t0 + ready_timeout
        conns = 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CaseFailed(f"z6 run exited {proc.returncode} before the VUs were up")
            conns = _established(port) - base_conns
            if conns >= vus:
                break
            time.sleep(0.2)
        else:
            raise CaseFailed(f"only {conns} of {vus} VU connections after {ready_timeout:.0f} s")
        up_s = time.monotonic() - t0
        workers = _worker_pids(proc.pid)
        if len(workers) != 1:
            raise CaseFailed(f"expected 1 worker process, found {len(workers)}")
        # Let the first requests finish, then wait for a steady RSS (bounded).
        time.sleep(1.0)
        samples: list[int] = []
        for _ in range(20):
            rss = _rss_kb(workers[0])
            if rss is None:
                raise CaseFailed("the worker process vanished")
            samples.append(rss)
            if len(samples) >= 3 and max(samples[-3:]) - min(samples[-3:]) <= 0.01 * rss:
                break
            time.sleep(0.25)
        return {
            "vus": vus,
            "worker_rss_kb": samples[-1],
            "supervisor_rss_kb": _rss_kb(proc.pid),
            "connections": conns,
            "startup_s": round(up_s, 2),
        }
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate(timeout=10)
        _kill_group(proc)  # a worker left behind
        shutil.rmtree(out, ignore_errors=True)


def case_vus(cfg: Config) -> dict[str, Any]:
    """Resident memory per idle VU: worker RSS at 10,000 idle VUs vs at 1 VU."""
    if not cfg.z6_ok:
        return {"error": cfg.z6_error}
    many = 10_000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < many + 256:
        return {"skipped": f"open-files limit {soft} is below {many + 256} (raise ulimit -n)"}
    with nginx_server(cpu=None, connections=many + 256) as port:
        try:
            one = _idle_rss(cfg, port, 1, ready_timeout=30)
            cfg.log(f"  vus: 1 VU -> worker RSS {one['worker_rss_kb']:,} kB; starting {many:,}")
            lots = _idle_rss(cfg, port, many, ready_timeout=120)
        except CaseFailed as e:
            return {"error": str(e)}
    return {
        "kb_per_vu": kb_per_vu(one["worker_rss_kb"], lots["worker_rss_kb"], many),
        "rss_1_vu_kb": one["worker_rss_kb"],
        "rss_10k_vus_kb": lots["worker_rss_kb"],
        "vus": many,
        "startup_10k_s": lots["startup_s"],
    }


# --------------------------------------------------------------------------------------------
# Case: scaling


SCALING_ORDER = (1, 2, 2, 1)  # procs of each run: drift of the machine's speed cancels out


def case_scaling(cfg: Config) -> dict[str, Any]:
    """z6 --procs 1 vs --procs 2 (httptools, 50 VUs, nothing pinned) on one nginx worker, and
    wrk -t1 vs -t2 in the same setting as the peer's figure.

    Runs in the order ``SCALING_ORDER`` (each z6 run followed by the wrk run with as many
    threads) and pools the two runs of each: a shared VM's speed drifts by 10-20 % within a
    minute, and a single 1-then-2 pair charges that drift to one side. wrk's ratio tells what
    the machine itself charges for a second busy client process next to the server; a
    missing wrk leaves it out, never the z6 figures.
    """
    if not cfg.z6_ok:
        return {"error": cfg.z6_error}
    runs: dict[str, list[dict[str, Any]]] = {}
    with nginx_server(cpu=None, connections=4 * CONNECTIONS) as port:
        clients: dict[str, Callable[[int, str], dict[str, Any]]] = {
            "z6-procs": lambda n, lb: z6_load(
                cfg, port, procs=n, engine="httptools", cpu=None, label=lb
            ),
            "wrk-t": lambda n, lb: _wrk(cfg, port, threads=n, cpu=None, label=lb),
        }
        for n in SCALING_ORDER:
            for prefix, fn in clients.items():
                label = f"{prefix}{n}"
                cfg.log(f"  scaling: {label} for {cfg.secs:g} s")
                runs.setdefault(label, []).append(
                    _client(label, lambda f=fn, k=n, lb=label: f(k, lb))  # type: ignore[misc]
                )
    one, two, w1, w2 = (
        pool_runs(label, runs[label]) for label in ("z6-procs1", "z6-procs2", "wrk-t1", "wrk-t2")
    )
    out: dict[str, Any] = {
        "results": [one, two, w1, w2],
        "rps_ratio_2_vs_1": ratio(two.get("rps"), one.get("rps")),
        "cpu_ratio_2_vs_1": ratio(two.get("cpu_us_per_request"), one.get("cpu_us_per_request")),
        "wrk_cpu_ratio_2_vs_1": ratio(w2.get("cpu_us_per_request"), w1.get("cpu_us_per_request")),
        "order": list(SCALING_ORDER),
        "note": "nothing pinned: nginx (1 worker) and the client share the machine's cores; "
        "wrk_cpu_ratio_2_vs_1 is wrk -t2 vs -t1 in the same setting (the peer's figure)",
    }
    for r in (one, two):
        if "error" in r:
            out["error"] = r["error"]
    return out


# --------------------------------------------------------------------------------------------
# Case: arrival

ARRIVAL_RATE = 5_000  # iterations/s of perf/scenarios/arrival.toml


def schedule_lags_ns(log: Path) -> list[int]:
    """``start_ns - scheduled_ns`` of the first request of every scheduled iteration in the
    event log ``log`` (later steps carry the same scheduled time, so their lag would hold the
    earlier steps' latency).

    Raises ``ValueError`` when the log cannot be read or is damaged.
    """
    from z6.engine.errors import Z6Error
    from z6.ipc.eventlog import EventLogReader
    from z6.ipc.events import RequestEvent

    lags: list[int] = []
    try:
        reader = EventLogReader(log)
        for _worker, batch in reader.batches():
            lags.extend(
                e.start_ns - e.scheduled_ns
                for e in batch
                if type(e) is RequestEvent and e.scheduled_ns >= 0 and e.step == 0
            )
    except Z6Error as e:
        raise ValueError(str(e)) from None
    if reader.damage is not None:
        raise ValueError(f"{log}: damaged event log ({reader.damage})")
    return lags


def case_arrival(cfg: Config) -> dict[str, Any]:
    """The open model at ``ARRIVAL_RATE``: how late z6 sends the requests it schedules (the
    schedule lag, part of ``latency_corrected_ms``), and its CPU per request; z6 --procs 1
    (httptools) and nginx pinned as in ``throughput``. No peer: wrk2 is not packaged."""
    if not cfg.z6_ok:
        return {"error": cfg.z6_error}
    cfg.log(f"  arrival: {ARRIVAL_RATE:,}/s for {cfg.secs:g} s")
    with nginx_server(cpu=SERVER_CPU, connections=4 * CONNECTIONS) as port:
        res = _client(
            "z6-arrival",
            lambda: z6_load(
                cfg,
                port,
                procs=1,
                engine="httptools",
                cpu=CLIENT_CPU,
                label="z6-arrival",
                scenario="arrival.toml",
                # The open model opens only the connections it needs: the window starts at
                # the first.
                connections=1,
                read_log=_lag_figures,
            ),
        )
    figures = {
        k: res.pop(k) for k in list(res) if k.startswith("lag_") or k == "scheduled_requests"
    }
    out: dict[str, Any] = {
        "results": [res],
        "rate": ARRIVAL_RATE,
        **figures,
        "note": "schedule lag = send time - scheduled time of each iteration's first request, "
        f"from events.bin; nginx pinned to core {SERVER_CPU}, z6 to core {CLIENT_CPU}",
    }
    if "error" in res:
        out["error"] = res["error"]
    return out


def _lag_figures(log: Path) -> dict[str, Any]:
    lags = schedule_lags_ns(log)
    if not lags:
        raise ValueError("no scheduled request in the event log")
    pct = lag_percentiles_us(lags, (50.0, 90.0, 99.0))
    return {"scheduled_requests": len(lags), **{f"lag_{k}_us": v for k, v in pct.items()}}


# --------------------------------------------------------------------------------------------
# Driver


CASE_FUNCS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "throughput": case_throughput,
    "pipeline": case_pipeline,
    "analyze": case_analyze,
    "vus": case_vus,
    "scaling": case_scaling,
    "arrival": case_arrival,
}


def _version(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0][:120] if text else None


def machine_info() -> dict[str, Any]:
    """Where and when the figures were measured, and the versions of z6 and its peers."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nginx, wrk, locust = find_tool("nginx"), find_tool("wrk"), find_locust()
    z6v: str | None = None
    with contextlib.suppress(ImportError):
        from z6.engine.version import __version__

        z6v = __version__
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "python": platform.python_version(),
        "z6": z6v,
        "nginx": _version([nginx, "-v"]) if nginx else None,
        "wrk": _version([wrk, "--version"]) if wrk else None,
        "locust": _version([locust, "--version"]) if locust else None,
    }


def _probe_z6() -> tuple[bool, str]:
    """Whether ``z6 run`` can be started at all (its modules import); the reason otherwise."""
    probe = "import z6.cli.run_cmd, z6.ipc.supervisor, z6.ipc.worker"
    try:
        m = run_measured([sys.executable, "-c", probe], timeout=60)
    except CaseFailed as e:
        return False, str(e)
    if m.returncode != 0:
        return False, f"z6 run is not usable yet: {_last_line(m.stderr)}"
    return True, ""


def _ensure_z6_interpreter() -> None:
    """Re-run under the repository's venv when this interpreter cannot import z6."""
    try:
        import z6.ipc.events  # noqa: F401
    except ImportError:
        venv_py = REPO / ".venv" / "bin" / "python"
        if venv_py.exists() and Path(sys.executable).resolve() != venv_py.resolve():
            os.execv(str(venv_py), [str(venv_py), str(Path(__file__).resolve()), *sys.argv[1:]])
        sys.exit("perf/run.py: cannot import z6; install it (pip install -e .) or create .venv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the suite."""
    p = argparse.ArgumentParser(
        prog="perf/run.py", description="z6 performance regression suite (see perf/README.md)"
    )
    p.add_argument("--quick", action="store_true", help="short runs (CI smoke): a few s per case")
    p.add_argument("--case", action="append", choices=CASES, help="run only this case (repeatable)")
    p.add_argument("--json", type=Path, help="write the result JSON here")
    p.add_argument("--check", type=Path, help="baseline JSON; exit 1 on a regression")
    p.add_argument("--seconds", type=float, help="load duration of throughput/scaling/arrival runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases; print the table; write JSON; compare with a baseline."""
    args = parse_args(argv)
    _ensure_z6_interpreter()
    _raise_nofile()
    cases = list(dict.fromkeys(args.case or CASES))
    secs = args.seconds or (3.0 if args.quick else 10.0)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    baseline = None
    if args.check is not None:
        try:
            baseline = json.loads(args.check.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log(f"perf/run.py: cannot read baseline {args.check}: {e}")
            return 2
    z6_ok, z6_error = _probe_z6()
    result: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "cases": {}}
    tmp = Path(tempfile.mkdtemp(prefix="z6perf-"))
    try:
        cfg = Config(quick=args.quick, secs=secs, tmp=tmp, z6_ok=z6_ok, z6_error=z6_error, log=log)
        for name in cases:
            log(f"perf: case {name}")
            t0 = time.perf_counter()
            try:
                data = CASE_FUNCS[name](cfg)
            except Skipped as e:
                data = {"skipped": str(e)}
            except CaseFailed as e:
                data = {"error": str(e)}
            data["case_s"] = round(time.perf_counter() - t0, 1)
            result["cases"][name] = data
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if baseline is not None:
        rows = check_against_baseline(result, baseline)
        print()
        print(render_check(rows))
        if any(r.status in ("REGRESSED", "FAILED") for r in rows):
            print("perf: REGRESSION against", args.check)
            return 1
        print("perf: no regression against", args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
