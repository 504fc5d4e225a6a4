"""The exceptions z6 raises on purpose.

Every error a user can cause maps to one of these classes; the CLI turns them into one line on
stderr and the documented exit code (see ``docs/cli.md``). Anything else is a bug (exit 4).
"""

from __future__ import annotations


class Z6Error(Exception):
    """Base class of every error z6 raises deliberately."""

    exit_code: int = 4


class ConfigError(Z6Error):
    """Raised for bad command-line usage or settings outside a scenario file (exit 2)."""

    exit_code = 2


class ScenarioError(ConfigError):
    """Raised when a scenario file cannot be read, parsed or validated (exit 2).

    ``file`` is the scenario path, ``key`` the dotted key path (``runtime.vus``,
    ``requests[2].method``) or ``None`` for whole-file problems, ``line`` the 1-based line
    when TOML reports one, ``hint`` an optional 'did you mean' suggestion.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """Return the one-line form: ``file:line: key: message (did you mean 'x'?)``."""
        where = self.file or "<scenario>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" (did you mean '{self.hint}'?)"
        return text


class UnsupportedFeatureError(ScenarioError):
    """Raised when a scenario asks for something z6 declares 'not supported yet' (exit 2)."""


class InvalidTransitionError(Z6Error):
    """Raised when a state machine is asked for a transition its table does not allow.

    This is always a bug in z6, never a user error (exit 4).
    """


class RunError(Z6Error):
    """Raised when z6 itself fails during a run: a worker died, output not writable (exit 3)."""

    exit_code = 3


class LogFormatError(Z6Error):
    """Raised when a file is not a z6 event log at all (bad magic or unreadable header).

    Damage *after* a good header is not raised: the reader stops and reports it instead.
    Exit code 2, since it is bad input from the user.
    """

    exit_code = 2


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf exception of a (possibly nested) group, or None when there are more."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
