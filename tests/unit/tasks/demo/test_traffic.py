"""Live traffic: its request bodies (what JSON can carry, gaps as null: Adult has them), and its outcomes, signed
as the system of record signs them and sent again when the rate limit asks."""

import hmac
import json
from hashlib import sha256

import httpx
import numpy as np
import pandas as pd

from tasks.data.features import read_snapshot
from tasks.demo.traffic import FEEDBACK_ATTEMPTS, Traffic, requests_of
from tests.conftest import PROJECT_DIR
from tests.usecases import usecase


def test_gaps_become_null_and_numbers_plain_python():
    frame = pd.DataFrame(
        {"id": ["a", "b"], "job": ["x", np.nan], "n": np.array([1, 2], dtype="int64"), "y": ["yes", "no"]}
    )
    assert requests_of(frame, label="y") == [
        ({"id": "a", "job": "x", "n": 1}, "yes"),
        ({"id": "b", "job": None, "n": 2}, "no"),
    ]


def test_every_adult_row_with_a_gap_is_a_body_json_can_carry():
    spec = usecase("adult_income")
    frame = read_snapshot(PROJECT_DIR / spec.dataset.file)
    gaps = frame[frame.isna().any(axis=1)].head(50)
    assert len(gaps) == 50
    for body, outcome in requests_of(gaps, label=spec.label.column):
        json.dumps(body, allow_nan=False)
        assert outcome in {">50K", "<=50K"} and None in body.values()


KEY = "f" * 64


def _service(answers: list[int], seen: list[httpx.Request]) -> httpx.Client:
    """A client whose /feedback answers the given statuses in turn (429s asking for no wait), recording requests."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers[len(seen) - 1]
        return httpx.Response(status, headers={"Retry-After": "0"} if status == 429 else {}, json={})

    return httpx.Client(transport=httpx.MockTransport(answer), base_url="http://service")


def test_an_outcome_is_sent_signed_over_the_exact_bytes_and_again_after_a_429():
    seen: list[httpx.Request] = []
    traffic = Traffic("http://service", [], id_column="id", feedback_key=KEY)

    with _service([429, 429, 200], seen) as client:
        assert traffic._feed_back(client, "ab12", "bad", key=KEY)

    assert len(seen) == 3 and len({(r.content, r.headers["x-steward-signature"]) for r in seen}) == 1
    sent = seen[0]
    assert json.loads(sent.content) == {"request_id": "ab12", "outcome": "bad"}
    assert sent.headers["x-steward-signature"] == "sha256=" + hmac.new(KEY.encode(), sent.content, sha256).hexdigest()
    assert sent.headers["content-type"] == "application/json"


def test_an_outcome_refused_for_another_reason_or_too_often_is_given_up():
    traffic = Traffic("http://service", [], id_column="id", feedback_key=KEY)
    for answers, tries in (([401], 1), ([409], 1), ([429] * FEEDBACK_ATTEMPTS, FEEDBACK_ATTEMPTS)):
        seen: list[httpx.Request] = []
        with _service(answers, seen) as client:
            assert not traffic._feed_back(client, "ab12", "bad", key=KEY)
        assert len(seen) == tries


def test_a_stopped_traffic_sends_an_outcome_no_more_after_a_429():
    traffic = Traffic("http://service", [], id_column="id", feedback_key=KEY)
    traffic._stop.set()
    seen: list[httpx.Request] = []

    with _service([429, 200], seen) as client:
        assert not traffic._feed_back(client, "ab12", "bad", key=KEY)

    assert len(seen) == 1
