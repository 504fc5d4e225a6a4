"""The ``z6`` command line: argument parsing only; each command delegates to its module.

Imports of the heavy modules happen inside the commands so that ``z6 --help`` and
``z6 version`` start fast.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer

from z6.cli.entry import drop_stdout, report_interrupted
from z6.engine.errors import Z6Error, sole_error
from z6.engine.version import __version__

app = typer.Typer(
    name="z6",
    help=(
        "z6: a deterministic, multiprocess HTTP load tester.\n\n"
        "Start with 'z6 demo', then 'z6 validate scenarios/quickstart.toml' and "
        "'z6 run scenarios/quickstart.toml'."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_debug = False


def _usage_error_line(self: Any, file: IO[Any] | None = None) -> None:
    """Print a usage error (unknown option, missing argument, bad value) as the one ``z6:``
    line every other error is, with where to look, instead of click's usage block."""
    ctx = getattr(self, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    text = self.format_message()
    name, offered = getattr(self, "option_name", None), getattr(self, "possibilities", None)
    if isinstance(name, str) and offered:
        # click offers any option difflib finds close with the dashes counted in ("--foo":
        # "--out", "--verbose": "--procs"); offer only real near-misses of the name itself.
        kept = sorted(p for p in offered if _near(name, p))
        text = str(self.message) + (f"; did you mean {' or '.join(kept)}?" if kept else "")
    with contextlib.suppress(OSError, ValueError):
        typer.echo(f"z6: {text}{hint}", err=True)


def _near(typed: str, option: str) -> bool:
    """Whether ``option`` is a likely fix for ``typed`` (dashes left out): a typo of it, or
    one of the two a start of the other of at least 3 letters (``--output``, ``--dur``)."""
    a, b = typed.lstrip("-").lower(), option.lstrip("-").lower()
    if min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)):
        return True
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


# click's UsageError, reached through typer's public BadParameter (typer vendors click in a
# private module since 0.26): when its shape is not the expected one, click's block stays.
for _cls in typer.BadParameter.__mro__:
    if _cls.__name__ == "UsageError" and callable(getattr(_cls, "show", None)):
        setattr(_cls, "show", _usage_error_line)  # noqa: B010 (mypy: a method of a class object)
        break


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _fail(exc: BaseException) -> typer.Exit:
    """Print one line for an error and return the Exit carrying its code."""
    if isinstance(exc, BaseExceptionGroup):
        # A trio nursery wraps the real error: report it when it is the only one.
        sole = sole_error(exc)
        if isinstance(sole, Z6Error):
            exc = sole
    if isinstance(exc, Z6Error):
        code = exc.exit_code
        message = str(exc)
    elif isinstance(exc, BrokenPipeError):
        # The reader went away (``| head``): nobody to tell. Exit 3 (the output was cut)
        # without a word, and without a second error when Python flushes stdout at exit.
        drop_stdout()
        return typer.Exit(3)
    elif isinstance(exc, OSError):
        # Not a z6 bug but the machine: most often the report could not be printed (stdout
        # on a full disk). A runtime failure, like an unwritable output.
        code = 3
        message = f"cannot write the output: {exc.strerror or exc}"
    else:
        code = 4
        message = f"internal error: {type(exc).__name__}: {exc}"
    if _debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):
        # stderr on a full disk or closed: the exit code still tells what happened.
        typer.echo(f"z6: {message}", err=True)
    return typer.Exit(code)


def _exit_with(command: Callable[[], int | None]) -> NoReturn:
    """Run a command body and exit with its code; map every error to one line and its code.

    Ctrl-C outside the aggregator loop (start-up, writing outputs) exits 130 like SPEC 6 says.
    """
    try:
        code = command()
        # Inside the guard: a report that cannot be printed (stdout on a full disk) is an
        # error of this command, not a traceback at the interpreter's exit.
        sys.stdout.flush()
    except KeyboardInterrupt:
        typer.echo("z6: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        raise _fail(exc) from None
    raise typer.Exit(code or 0)


@app.command()
def version() -> None:
    """Print the z6 version."""
    _exit_with(lambda: typer.echo(f"z6 {__version__}"))


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file to check.")],
) -> None:
    """Check a scenario file and print what the test will do (exit 0) or the error (exit 2)."""
    from z6.cli.validate_cmd import run_validate

    _exit_with(lambda: run_validate(scenario))


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file to run.")],
    procs: Annotated[
        int | None,
        typer.Option("--procs", "-p", help="Worker processes, 1-1024 (default: CPU count)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="PRNG seed, 0 to 2**64-1 (overrides runtime.prng_seed)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="Output directory (default: results/<UTC timestamp>/)."),
    ] = None,
    vus: Annotated[
        int | None,
        typer.Option(help="Override the VU count (constant/arrival_rate), 1-1000000."),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            help="Override the duration: seconds (30, 2.5) or with units (30s, 500ms, 2m, "
            "1h30m); at most one year.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the JSON summary instead of the text one.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No live progress (notes and errors still go to stderr)."
        ),
    ] = False,
    percentiles: Annotated[
        str | None,
        typer.Option(help="Percentiles to report [default: 50,90,95,99,99.9].", show_default=False),
    ] = None,
    http: Annotated[
        str,
        typer.Option(
            "--http",
            help="Protocol engine: auto (httptools when installed, else h11), h11 or httptools.",
        ),
    ] = "auto",
    shard: Annotated[
        str | None,
        typer.Option(help="Run only shard I of N (0-based, N at most 1024), e.g. 0/4."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Aim the scenario at another server: replaces target.base_url "
            "(scheme://host[:port]), e.g. https://staging.example.com.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a load test. Exit 0 when every goal passed, 1 when a goal failed."""
    from z6.cli.options import (
        check_procs,
        check_seed,
        parse_duration,
        parse_out,
        parse_percentiles,
        parse_shard,
    )
    from z6.cli.run_cmd import RunOptions, run_scenario

    def body() -> int:
        opts = RunOptions(
            scenario=scenario,
            procs=check_procs(procs),
            seed=check_seed(seed),
            out=parse_out(out),
            vus=vus,
            duration=parse_duration(duration),
            json=json_out,
            quiet=quiet,
            percentiles=parse_percentiles(percentiles),
            engine=http,
            shard=parse_shard(shard),
            base_url=base_url,
        )
        return run_scenario(opts)

    _exit_with(body)


@app.command()
def demo(
    procs: Annotated[
        int | None, typer.Option("--procs", "-p", help="Worker processes, 1-1024.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Output directory.")] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No live progress (notes and errors still go to stderr)."
        ),
    ] = False,
) -> None:
    """Run scenarios/quickstart.toml against a built-in server started for the occasion."""
    from z6.cli.options import check_procs, parse_out
    from z6.cli.run_cmd import run_demo

    _exit_with(lambda: run_demo(check_procs(procs), quiet, parse_out(out)))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port, 0-65535 (0 = any free port).")] = 8080,
    procs: Annotated[int, typer.Option("--procs", "-p", help="Server processes, 1-1024.")] = 1,
) -> None:
    """Run the built-in target server: /, /status/CODE, /delay/MS, /bytes/N, POST /echo."""
    from z6.cli.serve import serve as serve_forever

    _exit_with(lambda: serve_forever(host=host, port=port, procs=procs))


@app.command()
def analyze(
    logs: Annotated[list[Path], typer.Argument(help="Event logs (events.bin); several merge.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Output: summary, json or csv (time series).")
    ] = "summary",
    percentiles: Annotated[
        str | None,
        typer.Option(
            help="Percentiles to report [default: those the (first) run reported].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recompute every metric from event logs. Exit 0 when every goal passed, 1 otherwise."""
    from z6.cli.analyze_cmd import run_analyze
    from z6.cli.options import parse_percentiles

    def body() -> int:
        pcts = parse_percentiles(percentiles) if percentiles is not None else None
        return run_analyze(logs, fmt, pcts)

    _exit_with(body)


@app.command()
def replay(
    log: Annotated[Path, typer.Argument(help="Event log (events.bin) to check.")],
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-derive every VU decision and compare.")
    ] = False,
) -> None:
    """Check a log against the decisions re-derived from its seed and scenario (exit 1 on a
    mismatch)."""
    from z6.cli.analyze_cmd import run_replay

    _exit_with(lambda: run_replay(log, verify))


@app.command()
def diff(
    a: Annotated[Path, typer.Argument(help="Baseline: run directory, summary.json or log.")],
    b: Annotated[Path, typer.Argument(help="Compared run: directory, summary.json or log.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output: summary or json.")] = (
        "summary"
    ),
    max_regression: Annotated[
        str | None,
        typer.Option(
            "--max-regression",
            help="Exit 1 when a gated metric of B is worse than A's by more than this "
            "percentage (e.g. 10). Without it the comparison never fails.",
        ),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            help="Metrics the --max-regression gate checks, comma-separated (default: "
            "latency_ms.p50, p95, p99, latency_corrected_ms.p99, error_rate, rps; a "
            "request's own: by_name.NAME.latency_ms.p99).",
        ),
    ] = None,
    by_name: Annotated[
        bool,
        typer.Option(
            "--by-name",
            help="Also show each request's rows (by_name.NAME.*; --format json always has them).",
        ),
    ] = False,
) -> None:
    """Compare two runs: totals, rates and latency percentiles with deltas."""
    from z6.cli.analyze_cmd import run_diff
    from z6.cli.options import parse_gate, parse_max_regression

    _exit_with(
        lambda: run_diff(a, b, fmt, parse_max_regression(max_regression), parse_gate(gate), by_name)
    )


def main() -> None:
    """Run the command line (``z6.cli.entry.main``, the console script, calls this).

    typer turns a Ctrl-C during argument parsing or a command's own imports (before
    ``_exit_with`` guards it) into a silent exit 130: such an exit gets the same
    ``z6: interrupted`` line as every other interrupted z6. (``_exit_with`` raises its exit
    ``from None``, so its own, already reported, 130 does not match.)"""
    try:
        app()
    except OSError as exc:
        # click printing its help or a usage error to a full or broken stdout/stderr.
        with contextlib.suppress(OSError, ValueError):
            typer.echo(f"z6: cannot write the output: {exc.strerror or exc}", err=True)
        raise SystemExit(3) from None
    except SystemExit as exc:
        stop = exc.__context__
        if isinstance(stop, typer.Exit) and isinstance(stop.__cause__, KeyboardInterrupt):
            report_interrupted()
        raise
