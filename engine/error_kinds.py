"""Kinds of failed requests, as recorded in the ``error`` field of a request event.

The integer values are part of the event-log format (``docs/event-log.md``): never renumber,
only append.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.IntEnum):
    """Why a request did not succeed. ``NONE`` means it did."""

    NONE = 0
    CONNECT_REFUSED = 1  # nothing listening / refused, or reset while connecting
    CONNECT_TIMEOUT = 2  # connection_timeout_ms passed while connecting (incl. TLS handshake)
    TIMEOUT = 3  # timeout_ms passed before the whole response was read
    RESET = 4  # connection reset by peer (RST) or broken pipe
    CLOSED_EARLY = 5  # server closed the connection before the response was complete
    PROTOCOL_ERROR = 6  # malformed response: garbage, bad framing, oversized headers
    TLS_ERROR = 7  # certificate or handshake failure (a reset or EOF during the handshake too)
    DNS_ERROR = 8  # the target host name did not resolve
    STATUS = 9  # complete response whose status failed the check (expect_status or >= 400)
    INTERRUPTED = 10  # still in flight after graceful stop; cancelled by z6
    OTHER = 11  # any other OS-level socket error (the message is not kept)
    BODY_CHECK = 12  # complete response, status passed, body failed expect_body_(not_)contains

    @property
    def label(self) -> str:
        """The lower-case name used in summaries (``connect_refused``)."""
        return self.name.lower()


ERROR_LABELS: tuple[str, ...] = tuple(k.label for k in ErrorKind)

CONNECT_FAILURES: frozenset[int] = frozenset(
    {
        ErrorKind.CONNECT_REFUSED,
        ErrorKind.CONNECT_TIMEOUT,
        ErrorKind.DNS_ERROR,
        ErrorKind.TLS_ERROR,
        ErrorKind.OTHER,  # EMFILE, EADDRNOTAVAIL... when the socket could not be set up
    }
)
"""Kinds a failed connection attempt can end in (a request failing so has zero request time
when its connect failed, and its start is the failure, after the connect's wait)."""
