"""Live traffic for a running service: synthetic applications POSTed to /predict from a few threads, each
decision's true outcome sent back to /feedback, signed as the system of record signs it. `steward run`,
bench/rollback.py and the rollout tests use it against a real `bentoml serve` on 127.0.0.1.

Traffic stands for the applicants' devices behind a load balancer on loopback, which names each device in
`X-Client-Id`; the service believes that header only from a trusted proxy, so a service Traffic is sent to is
started with `LOOPBACK_PROXY` in its environment. An outcome refused for the rate limit (429, the key's holder
is one client) is sent again after the `Retry-After` the service asks for, as a system of record would.

Every response to /predict is counted by status; a transport error or a 5xx is a failed request (a rollback
must not cause any).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from steward.feedback_auth import signed_json

CLIENTS = 64  # distinct X-Client-Id values, so the per-client rate limit sees many applicants' devices
LOOPBACK_PROXY = {"STEWARD_TRUSTED_PROXIES": "127.0.0.1"}  # the environment of a service Traffic is sent to
FEEDBACK_ATTEMPTS = 5  # an outcome refused 429 is sent at most this many times in all


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    feedback: int = 0
    acknowledged: list[tuple[str, float]] = field(default_factory=list)  # (request id, wall-clock time of the 200)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(v for k, v in self.statuses.items() if k >= 500) + sum(self.errors.values())


def requests_of(frame: pd.DataFrame, *, label: str) -> list[tuple[dict[str, Any], str | None]]:
    """(request body, true outcome as /feedback takes it: a string) per row of a frame in the use case's raw
    schema; `label` is its label column (`usecase.label.column`)."""
    bodies = frame.drop(columns=[label], errors="ignore").to_dict("records")
    outcomes = [str(o) for o in frame[label]] if label in frame else [None] * len(frame)
    return [({k: _plain(v) for k, v in b.items()}, o) for b, o in zip(bodies, outcomes, strict=True)]


def _plain(value: Any) -> Any:
    """A cell as JSON carries it: a gap (NaN, None, pd.NA) is null, a numpy scalar its Python value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


class Traffic:
    """Send `requests` (cycling, each pass with fresh ids in `id_column`, the use case's) until stopped or
    `limit` are sent; with `feedback_key` (steward.feedback_auth.feedback_key of the service's settings), each
    decision's true outcome goes to /feedback signed with it."""

    def __init__(
        self,
        url: str,
        requests: list[tuple[dict[str, Any], str | None]],
        *,
        id_column: str,
        threads: int = 4,
        feedback_key: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.tally = Tally()
        self._requests = requests
        self._id_column = id_column
        self._threads = threads
        self._feedback_key = feedback_key
        self._limit = limit
        self._counter = itertools.count()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> Traffic:
        for k in range(self._threads):
            worker = threading.Thread(target=self._run, name=f"traffic-{k}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return self.tally

    def swap(self, requests: list[tuple[dict[str, Any], str | None]]) -> None:
        """Send these requests from now on (the traffic changed: a campaign, a new market)."""
        self._requests = requests

    def wait(self, timeout: float) -> bool:
        """Wait for `limit` requests to be sent; True if they were."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(w.is_alive() for w in self._workers):
            time.sleep(0.05)
        return not any(w.is_alive() for w in self._workers)

    def _next(self) -> tuple[dict[str, Any], str | None, int] | None:
        i = next(self._counter)
        if self._stop.is_set() or (self._limit is not None and i >= self._limit):
            return None
        requests = self._requests
        body, outcome = requests[i % len(requests)]
        passes = i // len(requests)
        if passes:
            body = {**body, self._id_column: f"{body[self._id_column]}-{passes}"}
        return body, outcome, i

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while (item := self._next()) is not None:
                body, outcome, i = item
                headers = {"X-Client-Id": f"traffic-{i % CLIENTS}"}
                try:
                    response = client.post("/predict", json=body, headers=headers)
                except (httpx.HTTPError, ValueError) as error:  # ValueError: a body JSON cannot carry
                    with self.tally.lock:
                        self.tally.errors[type(error).__name__] += 1
                    continue
                with self.tally.lock:
                    self.tally.statuses[response.status_code] += 1
                if response.status_code != 200:
                    continue
                answer = response.json()
                with self.tally.lock:
                    self.tally.acknowledged.append((answer["request_id"], time.time()))
                    self.tally.decisions[answer["decision"]] += 1
                    self.tally.models[answer["model_version"]] += 1
                if self._feedback_key is not None and outcome is not None:
                    recorded = self._feed_back(client, answer["request_id"], outcome, key=self._feedback_key)
                    with self.tally.lock:
                        self.tally.feedback += recorded

    def _feed_back(self, client: httpx.Client, request_id: str, outcome: str, *, key: str) -> bool:
        """Send one signed outcome, again after each 429's Retry-After (at most FEEDBACK_ATTEMPTS in all, and not
        once stopped); True if it was recorded."""
        body, headers = signed_json({"request_id": request_id, "outcome": outcome}, key=key)
        for _ in range(FEEDBACK_ATTEMPTS):
            sent = client.post("/feedback", content=body, headers=headers)
            if sent.status_code != 429 or self._stop.wait(float(sent.headers.get("Retry-After", "1"))):
                return sent.status_code == 200
        return False
