"""The ``z6`` console script's entry point (and ``python -m z6.cli``'s).

Loading typer and z6 takes 0.1-0.3 s. A Ctrl-C in that time used to print a
``KeyboardInterrupt`` traceback from inside some import, or end in typer's silent exit 130; a
SIGTERM or SIGHUP killed z6 without a word. This module imports nothing that Python's start-up
has not loaded already, and guards everything after its first line: an interrupt that no
command handles itself ends as ``z6: interrupted`` on stderr and exit 130
(docs/reliability.md). Python's own start-up before this module runs cannot be covered: a
signal in those first few tens of milliseconds kills the interpreter (SIGTERM, SIGHUP, or a
SIGINT before Python installs its handler) or prints Python's traceback (a SIGINT while
``site`` runs).
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING: typing is not loaded yet at start-up, and importing it would be
# the first unguarded thing z6 does (mypy treats any TYPE_CHECKING name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

INTERRUPTED_EXIT = 130  # docs/reliability.md: interrupted by SIGINT, SIGTERM or SIGHUP
_stop_signal_seen = False  # set by the SIGTERM/SIGHUP handler below


def main() -> None:
    """Run the z6 command line; an interrupt that no command reported exits 130 with one
    line."""
    try:
        _steady_std_streams()
        # Inside the try: a Ctrl-C during these imports is reported like any other.
        import signal

        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _like_ctrl_c)
        from z6.cli.app import main as app_main

        app_main()
    except KeyboardInterrupt:
        _exit_interrupted(INTERRUPTED_EXIT, report=True)
    except SystemExit as exc:
        code = INTERRUPTED_EXIT  # kept only if a signal lands before the next line is done
        try:
            code = exit_code(exc)
            interrupted = _after_interrupt(exc)
            end_quietly(code)
        except KeyboardInterrupt:
            interrupted = True  # a signal just as the command ended: its code stands
        if interrupted:
            _exit_interrupted(code, report=False)  # the command has said so already
        raise
    except Exception as exc:
        # A KeyboardInterrupt raised inside C code can come out as another exception: Python
        # 3.11 wraps one raised in ``__set_name__`` (class creation, some import) in a
        # RuntimeError, and one that lands while an ImportError is being made has come out
        # as a TypeError ("expected a message argument"). After a stop signal, such an
        # error is the interrupt.
        if not (_after_interrupt(exc) or _stop_signal_seen):
            raise
        _exit_interrupted(INTERRUPTED_EXIT, report=True)


def _steady_std_streams() -> None:
    """Make standard input, output and error safe to use, whatever z6 was started with.

    A closed descriptor 0, 1 or 2 (``z6 run ... 2>&-``) gets ``/dev/null``: Python leaves the
    stream ``None`` (the progress display then failed with exit 4), and the next file z6
    opened (the event log) would have taken that number, so a stray write to "stdout" would
    land in it. Output and error also replace characters their encoding lacks (a scenario
    named in Unicode under ``LC_ALL=C``) with escapes instead of failing the command after
    the run."""
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        stream = getattr(sys, name)
        if stream is None:
            # Lives as long as the process, like the stream Python would have made.
            setattr(sys, name, open(fd, "w" if fd else "r", encoding="utf-8", closefd=False))  # noqa: SIM115
        elif fd and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def drop_stdout() -> None:
    """Point descriptor 1 at ``/dev/null`` after a write to stdout failed: what is still
    buffered would fail again when Python flushes it at exit, print "Exception ignored" and
    turn the exit code into 120."""
    import contextlib
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _after_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised because of, or while handling, a KeyboardInterrupt."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc.__cause__, exc.__context__]
    while todo:
        link = todo.pop()
        if link is None or id(link) in seen:
            continue
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        todo += (link.__cause__, link.__context__)
    return False


def _exit_interrupted(code: int, *, report: bool) -> NoReturn:
    """End an interrupted z6 with ``code``, the line said once, whatever Python would do.

    ``os._exit`` rather than ``SystemExit``: once a KeyboardInterrupt has crossed an
    ``eval``/``exec`` of a string (typer evaluates annotations, dataclasses build methods
    that way), CPython 3.11-3.13 remember it as unhandled even though z6 caught it, and
    ``python -m z6.cli`` then kills itself with SIGINT at exit instead of exiting 130.
    Nothing is left to clean up: the command's own ``finally`` blocks have run, and
    ``end_quietly`` flushes stdout and stderr."""
    import os

    try:
        end_quietly(code)
    except KeyboardInterrupt:
        end_quietly(code)  # one more signal came before the handlers were all in place
    if report:
        report_interrupted()
    os._exit(code)


def _like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP before ``z6 run`` installs its own handlers: act as SIGINT would.

    Calling the current SIGINT handler rather than raising ``KeyboardInterrupt`` here keeps
    trio's protection: inside ``trio.run`` that handler is trio's, which delivers the
    interrupt where trio can take it (``z6 serve`` starting), and z6's own SIGINT handlers
    (``z6 serve --procs N``) see the stop they expect."""
    import signal

    global _stop_signal_seen
    _stop_signal_seen = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
        return
    # SIGINT ignored (a background job of a non-interactive shell): SIGTERM must still stop.
    raise KeyboardInterrupt


def report_interrupted() -> None:
    """Print the one line of an interrupted z6 (``z6: interrupted``) on stderr."""
    import contextlib

    # The terminal may be gone (SIGHUP) or stderr closed: the exit code still says it.
    with contextlib.suppress(OSError, ValueError):
        print("z6: interrupted", file=sys.stderr, flush=True)


def exit_code(exc: SystemExit) -> int:
    """The process exit status ``exc`` ends the interpreter with."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    return 1  # a message: Python prints it and exits 1


def end_quietly(code: int) -> None:
    """The command is over and its exit code ``code`` decided: from now on SIGINT, SIGTERM
    and SIGHUP must neither print a traceback nor change the code.

    Left as they are, a signal during the interpreter's shutdown raises ``KeyboardInterrupt``
    in an atexit callback (a traceback) or, once the shutdown has put the default actions
    back, kills z6 and its exit code. Python leaves an ignored signal ignored through the
    shutdown, so: flush what the command printed while a signal still exits at once with
    ``code`` (a flush blocked on a full pipe cannot hang z6), then ignore them for the few
    milliseconds of the shutdown, which has nothing left to write."""
    import contextlib
    import os
    import signal

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def exit_now(signum: int, frame: FrameType | None) -> NoReturn:
        os._exit(code)

    for signum in stops:
        signal.signal(signum, exit_now)
    for stream in (sys.stdout, sys.stderr):
        # A broken stdout: Python's shutdown reports it itself, as it always did.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    for signum in stops:
        signal.signal(signum, signal.SIG_IGN)
