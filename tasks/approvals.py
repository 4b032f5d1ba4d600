"""The approver's side of a sign-off: find the runs waiting, answer one through the Prefect API, see the outcome.

`steward approvals`, `steward approve`, `steward reject` and `steward run`'s demo approver all go through
here, and so through the same door the Prefect UI form uses (`resume_flow_run` with typed input). The run
itself decides whether an answer counts (`tasks.signoff.refusal`) and writes that to the ledger; this side
waits for that record and reports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from threading import Event

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelled

from steward.ledger import APPROVAL_DECLINED, APPROVAL_EXPIRED, APPROVAL_GRANTED, APPROVAL_REFUSED, Ledger, Record
from steward.params import GovernanceParams
from steward.registry import Registry, State
from tasks.signoff import SIGNOFF_ACTOR, Approval, Decision, Tally, open_requests, record_timeout

ANSWERS = (APPROVAL_GRANTED, APPROVAL_DECLINED, APPROVAL_REFUSED)
NO_SUCH_RUN = "no run waiting for sign-off matches {run!r} (see `steward approvals`)"
AMBIGUOUS_RUN = "{run!r} matches several waiting runs: {matches}; give more of the id"
NOT_WAITING = "run {run} is {state}, not waiting for an answer right now; try again in a few seconds"
UNKNOWN_DIGEST = "evidence digest {given!r} is not a prefix of this sign-off's evidence digest {current}"
DEMO_COMMENT = "demo approval by `steward run` (a scripted identity, not a human review)"


class AnswerError(ValueError):
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
        for t in open_requests(ledger.records())
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


def resolve_digest(given: str | None, current: str) -> str:
    """The full evidence digest an answer names: the current one by default, or the one a prefix names.

    A prefix of another digest is sent as given, so the run refuses it as stale and records that.
    """
    if not given:
        return current
    if current.startswith(given.lower()):
        return current
    if len(given) < 8 or any(c not in "0123456789abcdef" for c in given.lower()):
        raise AnswerError(UNKNOWN_DIGEST.format(given=given, current=current))
    return given.lower()


def answer(
    item: Pending,
    *,
    approver: str,
    decision: Decision,
    comment: str,
    evidence_digest: str | None,
    ledger: Ledger,
    wait_seconds: float,
    poll_seconds: float = 1.0,
) -> Record | None:
    """Resume the paused run with an answer, then wait (bounded) for the ledger record the run writes about it.

    Returns that record (granted, declined or refused), or None if the run has not processed the answer
    within `wait_seconds` (a suspended run first has to be started again by its worker).
    """
    if not item.waiting_for_input:
        raise AnswerError(NOT_WAITING.format(run=item.run_id, state=item.run.state.name if item.run.state else "?"))
    digest = resolve_digest(evidence_digest, item.tally.request.evidence_digest)
    form = Approval(decision=decision, approver=approver, comment=comment, evidence_digest=digest)
    head = max((r.seq for r in ledger.records(subject=item.tally.request.model)), default=0)
    try:
        resume_flow_run(item.run.id, run_input=form.model_dump(mode="json"))
    except (RuntimeError, ObjectNotFound) as exc:
        raise AnswerError(f"Prefect did not take the answer: {exc}") from None
    deadline = time.monotonic() + wait_seconds
    while True:
        for record in ledger.records(subject=item.tally.request.model, since_seq=head, actions=ANSWERS):
            if record.actor == approver and record.payload.get("flow_run_id") == item.run_id:
                return record
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_seconds)


# --- deadlines of suspended sign-offs ---------------------------------------------------------------------


def enforce_deadlines(*, ledger: Ledger, registry: Registry, at: datetime) -> list[Record]:
    """Apply the timeout policy to suspended sign-offs past their deadline, which no process is watching.

    Escalate: an `approval.escalated` record and a `steward.approval.escalated` event; the run keeps waiting
    for the same answer. Reject: an `approval.expired` record with its reason, the model rejected, and the
    run cancelled with that reason. (A run paused in place watches its own deadline.)
    """
    done = []
    for item in pending(ledger=ledger):
        if not item.suspended or at < item.tally.deadline:
            continue
        record = record_timeout.fn(item.tally, ledger=ledger, pause_key=None)
        model = item.tally.request.model
        resource = {"prefect.resource.id": f"steward.model.{model}", "prefect.resource.name": model}
        if record.action == APPROVAL_EXPIRED:
            registry.transition(model, State.REJECTED, actor=SIGNOFF_ACTOR)
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(item.run.id, Cancelled(message=record.payload["reason"]), force=True)
            emit_event(event="steward.approval.expired", resource=resource, payload=record.payload)
        else:
            emit_event(event="steward.approval.escalated", resource=resource, payload=record.payload)
        done.append(record)
    return done


# --- the demo approver of `steward run` -----------------------------------------------------------------


def demo_approver_for(item: Pending, governance: GovernanceParams) -> str | None:
    """A configured demo identity whose approval the sign-off still needs, or None."""
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


def answer_as_demo(*, ledger: Ledger, governance: GovernanceParams, since_seq: int, author: str, stop: Event) -> None:
    """Approve, as configured demo identities, each sign-off `author` requests after `since_seq`, until `stop`.

    It answers through `answer`, as a person at a terminal would, one pause at a time.
    """
    answered: set[tuple[str, str | None]] = set()  # (run, pause key) and (run, approver): each once
    while not stop.is_set():
        ours = {t.request.flow_run_id for t in open_requests(ledger.records(since_seq=since_seq))}
        for item in pending(ledger=ledger) if ours else []:
            name = demo_approver_for(item, governance)
            keys = {(item.run_id, item.pause_key), (item.run_id, name)}
            if item.run_id not in ours or item.tally.request.author != author or name is None or keys & answered:
                continue
            if item.waiting_for_input:
                answered |= keys
                answer(
                    item,
                    approver=name,
                    decision="approve",
                    comment=DEMO_COMMENT,
                    evidence_digest=None,
                    ledger=ledger,
                    wait_seconds=0,
                )
        stop.wait(1)
