"""Command-line overrides of a loaded scenario (``--duration``, ``--vus``, demo base URL)."""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from z6.engine.errors import ConfigError
from z6.engine.loader import MAX_DURATION_SECONDS, MAX_VUS, base_url_problem
from z6.engine.scenario import Scenario
from z6.engine.schedule import ArrivalPlan, schedule_length_s


def apply_overrides(
    sc: Scenario,
    *,
    duration: float | None = None,
    vus: int | None = None,
    base_url: str | None = None,
    check_connections: bool = True,
) -> Scenario:
    """Return ``sc`` with the run's command-line overrides applied.

    ``duration`` (``--duration``) replaces duration/iterations; a shaped schedule is cut at
    the new end. ``vus`` (``--vus``) sets the VUs of a constant schedule or the pool of an
    arrival_rate one. ``base_url`` (``--base-url``, ``z6 demo``) re-aims the target, checked
    as the loader checks ``target.base_url``. The same function rebuilds
    a logged run's scenario for ``z6 analyze`` and ``z6 replay``. Raises ``ConfigError``.
    ``check_connections=False`` skips the ``--vus`` vs ``max_connections`` bound: a log that
    an older z6 recorded past it must still be analyzed.
    """
    runtime = sc.runtime
    schedule = sc.schedule
    target = sc.target
    if duration is not None:
        # ``not 0 < d <= max`` also rejects NaN and infinity.
        if not 0 < duration <= MAX_DURATION_SECONDS:
            raise ConfigError(
                f"--duration must be a positive number of seconds up to "
                f"{int(MAX_DURATION_SECONDS)}, got {duration}"
            )
        runtime = msgspec.structs.replace(runtime, duration_seconds=duration, iterations=None)
    if vus is not None:
        if not 1 <= vus <= MAX_VUS:
            raise ConfigError(f"--vus must be between 1 and {MAX_VUS}, got {vus}")
        if schedule.type == "constant":
            schedule = msgspec.structs.replace(schedule, vus=vus)
        elif schedule.type == "arrival_rate":
            schedule = msgspec.structs.replace(schedule, max_vus=vus)
        else:
            raise ConfigError(
                f"--vus applies to constant and arrival_rate schedules, not '{schedule.type}'"
            )
        runtime = msgspec.structs.replace(runtime, vus=vus)
        limit = sc.limits.max_vus
        if limit is not None and vus > limit:
            raise ConfigError(f"--vus {vus} exceeds limits.max_vus = {limit}")
        # One connection per VU: the same bounds the loader puts on the file's own VU count.
        bounds = (
            ("limits.max_connections", sc.limits.max_connections),
            ("target.max_connections", target.max_connections),
        )
        for key, bound in bounds if check_connections else ():
            if bound is not None and vus > bound:
                raise ConfigError(
                    f"--vus {vus} needs {vus} connections (one per VU), above {key} = {bound}"
                )
    if base_url is not None:
        problem = base_url_problem(base_url)
        if problem is not None:
            raise ConfigError(f"--base-url {problem}")
        https = urlsplit(base_url).scheme == "https"
        if target.tls is not None and target.tls != https:
            raise ConfigError(
                f"--base-url {base_url!r} disagrees with the scenario's target.tls = "
                f"{str(target.tls).lower()}"
            )
        if target.ca_bundle is not None and not https:
            raise ConfigError(
                f"--base-url {base_url!r} is not https://, and the scenario's target.ca_bundle "
                "applies only to https:// targets"
            )
        target = msgspec.structs.replace(target, base_url=base_url.rstrip("/"))
    if schedule.type == "arrival_rate" and runtime.duration_seconds is None:
        raise ConfigError("arrival_rate needs a duration (runtime.duration_seconds or --duration)")
    if (
        duration is not None
        and schedule.type == "arrival_rate"
        and ArrivalPlan.of(schedule).total(duration) == 0
    ):
        # The loader refuses such a file; a shorter run must not pass with nothing sent.
        first = ArrivalPlan.of(schedule).instant_ns(0) / 1e9
        raise ConfigError(
            f"--duration {duration:g} s ends the run before the first arrival is due (at "
            f"{first:g} s, where the stages' rate first rises above 0)"
        )
    return msgspec.structs.replace(sc, runtime=runtime, schedule=schedule, target=target)


def duration_cut_note(sc: Scenario, duration: float | None) -> str | None:
    """The note for a ``--duration`` that ends a shaped schedule (ramp, spike, steps, arrival
    rate stages) before
    the shape's own end, or ``None``: the shape is cut there, which the file itself could not
    ask for (the loader refuses a shape longer than the run). In iterations mode too: the
    override replaces the iterations, and VUs a ramp would start later never run."""
    length = schedule_length_s(sc.schedule)
    if duration is None or length is None or duration >= length:
        return None
    return (
        f"--duration {duration:g} s ends the run before the end of its {sc.schedule.type} "
        f"schedule ({length:g} s long): the shape is cut at {duration:g} s"
    )
