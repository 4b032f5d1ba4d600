"""How a rollout step ends: the analysis's ending, and for a shadow the agreement rule on top of it."""

import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.params import AnalysisParams, RolloutParams, StepParams
from steward.predictions import Decision, PredictionLog
from steward.rollouts import Rollouts
from steward.routing import bucket
from steward.settings import Settings
from tasks.rollout.canary import Analysis
from tasks.rollout.watch import StepResult, verdict, watch
from tests.usecases import SHIPPED, params_for, usecase


def _step(ending: str, *, agreement: float | None, n_paired: int = 400, note: str = "") -> StepResult:
    analysis = Analysis(
        verdict="pass",
        candidate="m-v2",
        reference="m-v1",
        n_candidate=n_paired,
        n_reference=n_paired,
        alpha_per_test=0.01,
        threshold=100.0,
        method="paired",
        agreement=agreement,
        n_paired=n_paired,
    )
    return StepResult(ending=ending, analysis=analysis, seconds=1.0, decisive_ts=None, note=note)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("agreement", "expected"), [(0.95, "pass"), (0.90, "pass"), (0.8999, "breach"), (None, "breach")]
)
def test_a_passing_shadow_breaches_below_the_minimum_agreement(agreement, expected):
    ending, why = verdict(_step("pass", agreement=agreement), shadow_min_agreement=0.90)
    assert ending == expected
    if expected == "breach":
        shown = f"{(agreement or 0.0) * 100:.1f}%"
        assert why == f"shadow agreed with production on {shown} of 400 decisions, below 90%"


def test_a_canary_is_not_judged_on_agreement():
    assert verdict(_step("pass", agreement=0.1), shadow_min_agreement=None)[0] == "pass"


@pytest.mark.parametrize("ending", ["breach", "inconclusive", "withdrawn"])
def test_an_ending_other_than_pass_stands_with_its_note(ending):
    assert verdict(_step(ending, agreement=0.99, note="why it ended"), shadow_min_agreement=0.9) == (
        ending,
        "why it ended",
    )


def test_without_a_note_the_reason_is_the_analysis_summary():
    step = _step("pass", agreement=0.99)
    assert verdict(step, shadow_min_agreement=0.9) == ("pass", step.analysis.summary())


# --- watching one use case's step on a real log: its routing row, its rows, its label's words -----------------


def _canary_of(moves: Rollouts, model_name: str) -> tuple[str, str]:
    """(production, canary at 50%) of `model_name`, each signed off and walked along the registry."""
    from scripts.serving_fixture import approved

    production, canary = (approved(moves, model_name, n) for n in (1, 2))
    moves.promote(production, actor="t", reason="first")
    moves.to_shadow(canary, actor="t")
    moves.to_canary(canary, 0.5, actor="t")
    return production, canary


def _served(log: PredictionLog, model_name: str, ref: str, role: str, approved: int, n: int, outcome: str) -> None:
    """n decisions of `ref` in `role`, each for an applicant its routing bucket sends there at weight 0.5."""
    for i in range(n):
        request_id = f"{ref}-{role}-{outcome}-{i}"
        subject = next(s for j in range(1000) if (bucket(s := f"{request_id}-{j}") < 0.5) == (role == "canary"))
        log.add(
            Decision(
                request_id=request_id,
                role=role,
                ts=f"2026-01-01T00:00:{i % 60:02d}+00:00",
                model_name=model_name,
                model=ref,
                data_md5="d",
                subject_id=subject,
                decision="approve" if i < approved else "decline",
                probability=0.6,
                latency_ms=10.0,
                groups={"sex": "female"},
            )
        )
    log.flush()
    for i in range(n):
        log.record_outcome(f"{ref}-{role}-{outcome}-{i}", outcome, ts="t")


@pytest.mark.parametrize("name", SHIPPED)
def test_a_step_is_judged_on_its_use_cases_rows_routing_row_and_favourable_outcome(tmp_path, name):
    spec = usecase(name)
    good, bad = str(spec.label.favourable), str(spec.label.unfavourable)
    settings = Settings(home=tmp_path, project_dir=tmp_path)
    engine = make_engine(settings.db_url)
    moves = Rollouts(engine, Ledger(engine))
    production, canary = _canary_of(moves, spec.model_name)
    other_production, other_canary = _canary_of(moves, "someone-else")
    log = PredictionLog(engine, moves.ledger)
    # the canary approves 10 of 50 people whose outcome was favourable; production approved 40 of 50
    _served(log, spec.model_name, production, "production", 40, 50, good)
    _served(log, spec.model_name, canary, "canary", 10, 50, good)
    _served(log, spec.model_name, canary, "canary", 50, 50, bad)  # unfavourable outcomes: FPR, never TPR
    _served(log, "someone-else", other_canary, "canary", 50, 50, good)  # another use case: never read
    analysis = AnalysisParams(metrics=("tpr", "latency"), min_samples=20)  # latency: an empty window has a test
    params = params_for(name, rollout=RolloutParams(poll_seconds=0.05, analysis=analysis))
    limits = StepParams(requests=1, seconds=5)

    step = watch.fn(
        candidate=canary,
        reference=production,
        role="canary",
        since="",
        limits=limits,
        params=params,
        settings=settings,
        weight=0.5,
    )

    assert step.ending == "breach"
    (breach,) = step.analysis.breaches()
    assert (breach.metric, breach.group, breach.successes, breach.n, breach.n_reference) == (
        "tpr",
        "sex=female",
        10,
        50,
        50,
    )
    assert step.analysis.n_candidate == 100  # its own canary rows, not the other model name's
    # the other use case's rollback leaves this step running; this one's own withdrawal ends it
    moves.withdraw(other_canary, actor="t", reason="theirs")
    quiet = watch.fn(
        candidate=canary,
        reference=production,
        role="canary",
        since="2027",
        limits=StepParams(requests=1, seconds=0.2),
        params=params,
        settings=settings,
        weight=0.5,
    )
    assert quiet.ending == "inconclusive"
    moves.withdraw(canary, actor="t", reason="ours")
    gone = watch.fn(
        candidate=canary,
        reference=production,
        role="canary",
        since="2027",
        limits=limits,
        params=params,
        settings=settings,
        weight=0.5,
    )
    assert gone.ending == "withdrawn" and "ours" in gone.note
    assert moves.table.get("someone-else").production == other_production


# --- the watch keeps the rollout's lease: renewed while it looks, and a lapsed lease ends it ------------------


def test_the_watch_renews_a_lease_shorter_than_its_step_and_stops_once_the_lease_was_expired(tmp_path):
    from datetime import UTC, datetime, timedelta

    from steward.leases import LeaseLost, Leases, expire

    spec = usecase(SHIPPED[0])
    settings = Settings(home=tmp_path, project_dir=tmp_path)
    engine = make_engine(settings.db_url)
    moves = Rollouts(engine, Ledger(engine))
    production, canary = _canary_of(moves, spec.model_name)
    params = params_for(SHIPPED[0], rollout=RolloutParams(poll_seconds=0.05, lease_seconds=1))
    leases = Leases(engine)
    lease = leases.acquire(spec.model_name, canary, 0.3)  # below the setting's floor: renewed every 0.1 s
    kept = {
        "candidate": canary,
        "reference": production,
        "role": "canary",
        "since": "2027",
        "params": params,
        "settings": settings,
        "weight": 0.5,
        "lease": lease,
    }
    step = watch.fn(limits=StepParams(requests=1, seconds=1.0), **kept)  # three times the lease
    assert step.ending == "inconclusive"
    assert (found := leases.get(spec.model_name)) is not None and found.live()
    assert moves.table.get(spec.model_name).canary == canary

    assert expire(moves, now=datetime.now(UTC) + timedelta(seconds=1))  # as if the watch had stalled
    with pytest.raises(LeaseLost):
        watch.fn(limits=StepParams(requests=1, seconds=5.0), **kept)
    assert moves.table.get(spec.model_name).canary is None
