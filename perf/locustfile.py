"""Locust peer of the ``throughput`` case: one GET / per iteration, no think time.

Run by ``perf/run.py`` from the separate venv ``perf/.venv-locust`` (``perf/setup.sh``):
``locust -f perf/locustfile.py --headless -u 50 -r 50 -t 10s --host http://127.0.0.1:PORT``.
FastHttpUser (geventhttpclient) is Locust's fastest client, so the comparison is fair to it.
"""

from locust import FastHttpUser, constant, task  # type: ignore[import-not-found]


class GetRoot(FastHttpUser):  # type: ignore[misc]
    """A user that requests ``/`` back to back over its keep-alive connection."""

    wait_time = constant(0)

    @task
    def root(self) -> None:
        """One request; the response body is read and discarded."""
        self.client.get("/")
