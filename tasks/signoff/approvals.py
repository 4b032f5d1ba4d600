"""The approver's side of a sign-off: find the runs waiting, answer one through the Prefect API, see the outcome.

`steward approvals`, `steward approve`, `steward reject` and `steward run`'s demo approver all go through
here, and so through the same door the Prefect UI form uses (`resume_flow_run` with typed input). The run
itself decides whether an answer counts (`tasks.signoff.policy.refusal`) and writes that to the ledger; this side
waits for that record and reports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Event
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events import emit_event
from prefect.exceptions import PrefectException, PrefectHTTPStatusError
from prefect.logging import get_logger
from prefect.states import Cancelled

from steward.errors import StewardError
from steward.governance import GovernanceParams
from steward.keys import Signer
from steward.ledger import APPROVAL_DECLINED, APPROVAL_EXPIRED, APPROVAL_GRANTED, APPROVAL_REFUSED, Ledger, Record
from steward.registry import Registry, RegistryError, State
from steward.settings import Settings
from steward.signoff import ANSWER, SIGNOFF_ACTIONS, Tally, answer_statement, latest, open_sign_offs, signature_token
from tasks.signoff.keys import demo_key
from tasks.signoff.policy import SIGNOFF_ACTOR, Approval, Decision, resource
from tasks.signoff.record import record_timeout, record_withdrawn

ANSWERS = (APPROVAL_GRANTED, APPROVAL_DECLINED, APPROVAL_REFUSED)
NO_SUCH_RUN = "no run waiting for sign-off matches {run!r} (see `steward approvals`)"
AMBIGUOUS_RUN = "{run!r} matches several waiting runs: {matches}; give more of the id"
NOT_WAITING = "run {run} is {state}, not waiting for an answer right now; try again in a few seconds"
SHORT_DIGEST = (
    "--evidence {given!r}: name the evidence digest you reviewed by at least {count} hex characters "
    "(`steward approvals` shows it)"
)
NOT_DELIVERED = "Prefect did not take the answer for run {run}: {reason}"
RUN_ENDED = "its run ended ({state}) before the sign-off was decided"
MIN_DIGEST = 12
DEMO_COMMENT = "demo approval by `steward run` (a scripted identity, not a human review)"


class AnswerError(StewardError, ValueError):
    """An answer that could not be delivered (unknown run, not paused, a form Prefect refused)."""


@dataclass(frozen=True)
class Pending:
    """A sign-off whose run is paused (or suspended) in Prefect right now."""

    tally: Tally
    run: FlowRun

    @property
    def run_id(self) -> str:
        return str(self.run.id)

    @property
    def suspended(self) -> bool:
        return bool(self.run.state and self.run.state.state_details.pause_reschedule)

    @property
    def pause_key(self) -> str | None:
        return self.run.state.state_details.pause_key if self.run.state else None

    @property
    def waiting_for_input(self) -> bool:
        state = self.run.state
        return bool(state and state.type is StateType.PAUSED and state.state_details.run_input_keyset)


def _paused_runs() -> dict[str, FlowRun]:
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=state), sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200
        )
    return {str(run.id): run for run in runs}


def pending(*, ledger: Ledger) -> list[Pending]:
    """Open sign-offs whose run Prefect holds paused, oldest request first."""
    runs = _paused_runs()
    return [
        Pending(t, runs[t.request.flow_run_id])
        for t in open_sign_offs(ledger.records(actions=SIGNOFF_ACTIONS))
        if t.request.flow_run_id in runs
    ]


def find(run: str, *, ledger: Ledger) -> Pending:
    """The waiting sign-off named by a flow run id, a unique id prefix, or the run's name (e.g. `brave-otter`)."""
    waiting = pending(ledger=ledger)
    matches = [p for p in waiting if p.run_id == run or p.run.name == run]
    matches = matches or [p for p in waiting if len(run) >= 4 and p.run_id.startswith(run)]
    if not matches:
        raise AnswerError(NO_SUCH_RUN.format(run=run))
    if len(matches) > 1:
        raise AnswerError(AMBIGUOUS_RUN.format(run=run, matches=", ".join(p.run_id for p in matches)))
    return matches[0]


def resolve_digest(given: str, current: str) -> str:
    """The full evidence digest an approver names by a prefix of at least 12 hex characters.

    Naming it is the approver's attestation of what they reviewed, so there is no default. A prefix of
    another digest is sent as given: the run refuses it as stale and records that.
    """
    given = given.strip().lower()
    if len(given) < MIN_DIGEST or any(c not in "0123456789abcdef" for c in given):
        raise AnswerError(SHORT_DIGEST.format(given=given, count=MIN_DIGEST))
    return current if current.startswith(given) else given


def sign(item: Pending, *, key: Signer, decision: Decision, comment: str, evidence_digest: str) -> str:
    """The signature token of an answer to `item`'s sign-off (what the form's signature field takes), signed now."""
    signed_at = datetime.now(UTC).isoformat(timespec="seconds")
    digest = resolve_digest(evidence_digest, item.tally.request.evidence_digest)
    statement = answer_statement(
        item.tally.request, decision=decision, comment=comment, evidence_digest=digest, signed_at=signed_at
    )
    return signature_token(signed_at, key.sign(ANSWER, statement))


def answer(
    item: Pending,
    *,
    approver: str,
    key: Signer,
    decision: Decision,
    comment: str,
    evidence_digest: str,
    ledger: Ledger,
    wait_seconds: float,
    poll_seconds: float = 1.0,
) -> Record | None:
    """Sign an answer with `key`, resume the paused run with it, then wait (bounded) for the ledger record the
    run writes about it.

    Returns that record (granted, declined or refused), or None if the run has not processed the answer
    within `wait_seconds` (a suspended run first has to be started again by its worker).
    """
    if not item.waiting_for_input:
        raise AnswerError(NOT_WAITING.format(run=item.run_id, state=item.run.state.name if item.run.state else "?"))
    digest = resolve_digest(evidence_digest, item.tally.request.evidence_digest)
    token = sign(item, key=key, decision=decision, comment=comment, evidence_digest=digest)
    form = Approval(decision=decision, approver=approver, comment=comment, evidence_digest=digest, signature=token)
    head = (ledger.head() or (0, ""))[0]  # its answer is recorded after this
    try:
        with get_client(sync_client=True) as client:
            result = client.resume_flow_run(item.run.id, run_input=form.model_dump(mode="json"))
    except (PrefectException, PrefectHTTPStatusError) as exc:
        raise AnswerError(NOT_DELIVERED.format(run=item.run_id, reason=exc)) from None
    if result.status is not SetStateStatus.ACCEPT:
        reason = getattr(result.details, "reason", None) or result.status.value
        raise AnswerError(NOT_DELIVERED.format(run=item.run_id, reason=reason))
    deadline = time.monotonic() + wait_seconds
    while True:
        for record in ledger.records(subject=item.tally.request.model, since_seq=head, actions=ANSWERS):
            if record.actor == approver and record.payload.get("flow_run_id") == item.run_id:
                return record
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_seconds)


# --- the sweep: deadlines of suspended sign-offs, and sign-offs whose run ended --------------------------


def sweep(*, ledger: Ledger, registry: Registry, at: datetime) -> list[Record]:
    """Close what no waiting process will: a suspended sign-off past its deadline is escalated (it keeps
    waiting) or expired (model rejected, run cancelled with the reason), and an open sign-off whose run has
    ended (crashed, cancelled, failed) is withdrawn. Each sign-off is handled on its own: one that fails is
    reported in the log and does not stop the others."""
    open_ = open_sign_offs(ledger.records(actions=SIGNOFF_ACTIONS))
    if not open_:
        return []
    with get_client(sync_client=True) as client:
        runs = {str(r.id): r for r in client.read_flow_runs(flow_run_filter=_by_ids(open_), limit=len(open_) + 1)}
    done = []
    for current in open_:
        flow_run = runs.get(current.request.flow_run_id)
        try:
            record = _sweep_one(current, flow_run, ledger=ledger, registry=registry, at=at)
        except (RegistryError, PrefectException, PrefectHTTPStatusError) as exc:
            get_logger("steward.sweep").warning("sign-off of %s not swept: %s", current.request.model, exc)
            continue
        if record is not None:
            done.append(record)
    return done


def _by_ids(open_: list[Tally]) -> FlowRunFilter:
    return FlowRunFilter(id=FlowRunFilterId(any_=[UUID(t.request.flow_run_id) for t in open_]))


def _sweep_one(
    current: Tally, flow_run: FlowRun | None, *, ledger: Ledger, registry: Registry, at: datetime
) -> Record | None:
    state = flow_run.state if flow_run else None
    if state is None or state.is_final():
        ended = state.name if state else "gone from Prefect"
        return record_withdrawn.fn(current, ledger=ledger, reason=RUN_ENDED.format(state=ended))
    if not (state.type is StateType.PAUSED and state.state_details.pause_reschedule) or at < current.deadline:
        return None  # running, or paused in place (that process watches its own deadline), or not yet due
    model = current.request.model
    now_ = latest(
        ledger.records(subject=model, actions=SIGNOFF_ACTIONS), model=model, flow_run_id=current.request.flow_run_id
    )
    if now_ is None or now_.outcome is not None or now_.escalations != current.escalations:
        return None  # the run (or another sweep) moved it on meanwhile
    record = record_timeout.fn(current, ledger=ledger, pause_key=None)
    if record.action == APPROVAL_EXPIRED:
        registry.transition(model, State.REJECTED, actor=SIGNOFF_ACTOR)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(current.request.flow_run_id, Cancelled(message=record.payload["reason"]))
    event = "steward.approval.expired" if record.action == APPROVAL_EXPIRED else "steward.approval.escalated"
    emit_event(event=event, resource=resource(model), payload=record.payload)
    return record


# --- the demo approver of `steward run` -----------------------------------------------------------------


def demo_approver_for(item: Pending, governance: GovernanceParams) -> str | None:
    """A configured demo identity whose approval the demo sign-off still needs, or None."""
    request, progress = item.tally.request, item.tally.progress
    missing = set(progress.missing_roles(request.policy))
    candidates = [
        name
        for name, a in sorted(governance.approvers.items())
        if a.demo and name != request.author and name not in progress.granted
    ]
    if request.policy.roles:
        candidates = [n for n in candidates if set(governance.approvers[n].roles) & set(request.policy.roles)]
    preferred = [n for n in candidates if set(governance.approvers[n].roles) & missing]
    return next(iter(preferred or candidates), None)


def answer_as_demo(
    *, ledger: Ledger, governance: GovernanceParams, settings: Settings, since_seq: int, author: str, stop: Event
) -> None:
    """Approve, as configured demo identities, each demo sign-off `author` opens after `since_seq`, until `stop`.

    It answers through `answer`, as a person at a terminal would, one pause at a time, each identity signing with
    its key in this demo home.
    """
    answered: set[tuple[str, str | None]] = set()  # (run, pause key) and (run, approver): each once
    while not stop.is_set():
        ours = {
            t.request.flow_run_id
            for t in open_sign_offs(ledger.records(since_seq=since_seq, actions=SIGNOFF_ACTIONS))
            if t.request.demo and t.request.author == author
        }
        for item in pending(ledger=ledger) if ours else []:
            name = demo_approver_for(item, governance)
            keys = {(item.run_id, item.pause_key), (item.run_id, name)}
            if item.run_id not in ours or name is None or keys & answered or not item.waiting_for_input:
                continue
            answered |= keys
            answer(
                item,
                approver=name,
                key=demo_key(settings, name),
                decision="approve",
                comment=DEMO_COMMENT,
                evidence_digest=item.tally.request.evidence_digest,
                ledger=ledger,
                wait_seconds=0,
            )
        stop.wait(1)
