"""The BentoML service: the production model, and a canary and a shadow when the routing table says so.

    bentoml serve deployments.service:Steward --host 127.0.0.1 --port 3000     (or `steward serve`)

One service per use case: a process serves the use case params.yaml names (`usecase:`). Its request model
(`Application`, the /predict and /explain body) is derived at import from that use case's raw suite
(tasks/serving/schema.py), /feedback accepts exactly its label values, and reasons, counterfactuals and the
monitored groups follow its usecase.yaml. A client may name the use case it means in an `X-Steward-Usecase`
header (optional; /predict's body is unchanged): a request naming another use case is answered 421 Misdirected
Request before its body is read, so it never gets a decision from the wrong model. Serving two use cases means
two services (two project folders or params files), each on its own port.

Outcomes are trusted only from the system of record: a /feedback must be signed with the feedback key
(steward/feedback_auth.py), or it is refused 401 before its body is parsed and nothing is recorded. A decision
may have at most `serve.max_open_contests` open contest cases at once (409 past that).

Each /predict goes to the canary or production by the person's bucket (sticky, `steward.routing`),
is copied to the shadow (whose answer is logged, never returned), and is logged with its model and data
version. The routing is re-read every 250 ms, so a weight change or a rollback needs no restart. A canary
that raises is taken out of routing at once (weight 0, a `rollback` ledger record) and the request is
answered by production.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any, cast

import bentoml
import pandas as pd
from scipy.special import expit

from deployments.guards import Guards
from deployments.openapi import OpenAPIDocument
from steward.anchor import anchored
from steward.db import make_engine
from steward.errors import StewardError
from steward.feedback_auth import feedback_key
from steward.layout import Layout
from steward.leases import expire
from steward.model_integrity import ModelRefused
from steward.params import load_params
from steward.personal import Pseudonyms, check_key
from steward.predictions import ERROR, LogUnavailable, PredictionLog
from steward.predictions import Decision as Logged
from steward.registry import Registry
from steward.replicas import STALE_SECONDS, beat
from steward.reviews import ReviewError, ReviewQueue
from steward.routing import Routing, RoutingTable, newest
from steward.settings import Settings
from tasks.data.suites import read_suite, serving_suite
from tasks.model.integrity import verified_or_withdrawn, verifying_rollouts
from tasks.serving.attribution import Explainer, aggregate, build_explainer, encoded_sources, explain_rows
from tasks.serving.counterfactual import actionable_spaces, counterfactual
from tasks.serving.decision import REFERRED, Decision, assign, decide, refusal
from tasks.serving.openapi import document
from tasks.serving.reasons import never_cited, reason_codes
from tasks.serving.requests import Contest, NoFields, Rollback, outcome_model
from tasks.serving.responses import (
    Change,
    ContestCase,
    Counterfactual,
    Error,
    Explanation,
    OutcomeRecorded,
    Prediction,
    Reason,
    Refusal,
    RollbackResult,
    RoutingState,
)
from tasks.serving.schema import request_model, to_frame

REFRESH_SECONDS = 0.25
RETRY_AFTER = "2"  # seconds, when the decision log cannot take a decision or the routing is stale
BEAT_SECONDS = 1.0  # how often a replica reports the routing revision it serves (steward/replicas.py)
ROUTING_STALE = "this replica has not read the routing table for {seconds:.1f} s: it may serve a withdrawn model"
FEEDBACK = "/feedback"  # the route whose requests must be signed (deployments/guards.py checks them)
UNKNOWN_REQUEST = "no decision with request id {request_id} was served here"
OUTCOME_CONFLICT = "request {request_id} already has the outcome {outcome!r} on record"
NO_COUNTERFACTUAL = "no change of at most two things you can act on would change this {decision}"
COUNTERFACTUAL_NOTE = (
    "the smallest change to what you can act on that changes the {decision} ({favourable} at P(favourable) >= "
    "threshold)"
)
REFERRAL = "P(favourable) {probability:.3f} in band"
CANARY_TRIPPED = "circuit breaker: canary {model} raised {error}"
_SERVING = {"where": "service", "actor": "steward-serving"}  # who refuses a model that does not verify here
logger = logging.getLogger("steward.serving")
_settings = Settings()
_params = load_params(Layout(_settings.project_dir).params_file)
_usecase = _params.usecase  # the one use case this process serves
_pseudonym = Pseudonyms.of(_settings, model_name=_usecase.model_name)  # who a decision is about, as logged
_raw_suite = read_suite(_settings.project_dir / _usecase.raw_suite)
_usecase.require_suite(_raw_suite)  # refuse to start on a use case its suite contradicts, every mismatch named
Application = request_model(serving_suite(_raw_suite, _usecase))
Outcome = outcome_model(_usecase)
_spaces = actionable_spaces(_usecase, _raw_suite)  # what a counterfactual may change, and how
_words = _usecase.words


@dataclass
class Loaded:
    """A registry model loaded for serving, with its SHAP explainer."""

    ref: str
    model: Any
    data_md5: str
    explainer: Explainer

    def score(self, frame: pd.DataFrame) -> float:
        return float(self.model.predict_proba(frame[list(self.model.feature_names_in_)])[0, 1])

    def decide(self, frame: pd.DataFrame) -> tuple[float, dict[str, float]]:
        """P(favourable) and each column's SHAP contribution, from one pass through the preprocessing."""
        attribution = explain_rows(self.model, frame, explainer=self.explainer)
        summed = aggregate(attribution.values, self.sources)
        return float(expit(attribution.log_odds[0])), {str(k): float(v) for k, v in summed.iloc[0].items()}

    @cached_property
    def sources(self) -> list[str]:
        return encoded_sources(self.model[0])


@bentoml.service(name="steward", workers=1, threads=4, traffic={"timeout": 30})
class Steward:
    def __init__(self) -> None:
        self.engine = make_engine(_settings.db_url)
        self.ledger = anchored(self.engine, _settings)  # checkpoints of the head: steward/anchor.py
        self.registry = Registry(self.engine, ledger=self.ledger)
        self.table = RoutingTable(self.engine, self.ledger)
        self.moves = verifying_rollouts(
            self.engine, self.ledger, _settings, where="service /admin/rollback", actor="steward-serving"
        )
        self._trip_lock = threading.Lock()
        self.reviews = ReviewQueue(self.engine)
        check_key(self.engine, _settings)  # every replica of a database pseudonymises under one key
        self.log = PredictionLog(
            self.engine,
            self.ledger,
            flush_seconds=_params.serve.log_flush_seconds,
            journal=_settings.journal_dir(_usecase.model_name),  # answered only once journalled: steward/journal.py
            replica=_settings.replica,
            backlog=_params.serve.log_backlog,
            stall_seconds=_params.serve.log_stall_seconds,
            ledger_interval_seconds=_params.serve.ledger_interval_seconds,  # one decisions.interval record each
            journal_segment_seconds=_params.serve.journal_segment_seconds,
        )
        self.replica = self.log.journal.path.name if self.log.journal else "0"  # its journal's folder names it
        self.models: dict[str, Loaded] = {}
        self.refused: dict[str, str] = {}  # refs refused this process, and why: never loaded, never retried
        self._load_lock = threading.Lock()
        self.routing = Routing()
        self._row_revision = 0  # the routing row's revision last checked
        self._routing_read = 0.0  # when the routing table was last read and taken up (monotonic)
        self._routing_refused: str | None = None  # why that row was refused, if it was (recorded once)
        self._first_routing()
        self._stop = threading.Event()
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        threading.Thread(target=self._watch, name="routing-watch", daemon=True).start()
        self.log.start()

    # --- routing -------------------------------------------------------------------------------------

    def _load(self, ref: str) -> Loaded:
        """`ref`, loaded only once its bytes and records verify (tasks/model/integrity.py). A refused model is never
        unpickled nor retried by this process; a refused canary or shadow is withdrawn, and a refused production
        leaves the service on the last routing it took up (`_refresh` takes up one only once all its models load)."""
        if ref in self.models:
            return self.models[ref]
        with self._load_lock:
            if ref in self.refused:
                raise ModelRefused(self.refused[ref])
            if ref not in self.models:
                try:
                    version = verified_or_withdrawn(ref, moves=self.moves, settings=_settings, **_SERVING)
                except ModelRefused as refused:
                    self.refused[ref] = str(refused)
                    raise
                model = bentoml.sklearn.load_model(version.model_tag)
                explainer = build_explainer(model, background=self._background)
                self.models[ref] = Loaded(ref, model, version.data_md5, explainer)
        return self.models[ref]

    @property
    def _background(self) -> pd.DataFrame | None:
        """Training rows for explainers that need a reference (linear, permutation): a sample of the prepared split."""
        path = Layout(_settings.project_dir).prepared_train
        if not path.is_file():
            return None
        frame = pd.read_parquet(path)
        return frame.sample(n=min(len(frame), _params.explain.background_size), random_state=_params.explain.seed)

    def _refresh(self, *, force: bool = False) -> None:
        """Take up the routing table's newest revision (`force`: re-read it even if the revision is known).

        Only a routing the ledger recorded is served: a row changed around `RoutingTable.set` (no matching
        ledger record) is refused, once logged and recorded, and the last recorded routing stays served."""
        name = _params.usecase.model_name  # this service serves params.yaml's use case
        if not force and newest(self.engine, name) == self._row_revision:
            self._routing_read = time.monotonic()
            return
        checked = self.table.checked(name)
        if checked.refused and checked.refused != self._routing_refused:
            logger.error(checked.refused)
            try:
                self.table.refuse(name, checked, actor="steward-serving")
            except Exception:  # a busy database must not stop the recorded routing being served
                logger.exception("the refusal of routing revision %s was not recorded", checked.row_revision)
        self._routing_refused = checked.refused
        routing = checked.routing
        for ref in (routing.production, routing.canary, routing.shadow):
            if ref:
                self._load(ref)
        self.routing = routing  # one assignment: a request sees the old table or the new one, whole
        self._row_revision = checked.row_revision
        self._routing_read = time.monotonic()

    def _first_routing(self) -> None:
        """The routing at start, read again if a refused canary or shadow was withdrawn. A refused production is not
        replaced here (what serves is the routing's call: `steward rollback` restores the standby): the service
        refuses decisions (503, referred) until the routing names a model that verifies."""
        for _ in range(2):
            try:
                return self._refresh(force=True)
            except ModelRefused:
                continue

    def _watch(self) -> None:
        beaten = (0, 0.0)  # the revision last reported, and when
        while not self._stop.wait(REFRESH_SECONDS):
            try:  # a dead rollout's candidate out of routing (steward/leases.py), served from this same tick
                expire(self.moves, model_name=_usecase.model_name)
            except Exception:  # another replica withdrew it first, or a busy database: the next tick looks again
                logger.debug("lease expiry skipped this tick", exc_info=True)
            try:
                self._refresh()
            except Exception:  # a busy database or a model that will not load: keep serving (not ready once stale)
                continue
            if beaten[0] != self._row_revision or time.monotonic() - beaten[1] >= BEAT_SECONDS:
                try:
                    beat(self.engine, _usecase.model_name, self.replica, revision=self._row_revision, pid=os.getpid())
                    beaten = (self._row_revision, time.monotonic())
                except Exception:
                    continue

    def unready(self) -> str | None:
        """Why this replica cannot take a decision now: routing not read for too long (it may serve a withdrawn
        model), or a decision log that cannot record it."""
        unread = time.monotonic() - self._routing_read
        if unread > STALE_SECONDS:
            return ROUTING_STALE.format(seconds=unread)
        return self.log.unready()

    def _trip(self, routing: Routing, error: BaseException) -> None:
        """Take a failing canary out of routing and mark it rolled back (ledger records), without waiting for
        any analysis; the first request to fail does it, the others find it done."""
        if not routing.canary:
            return
        reason = CANARY_TRIPPED.format(model=routing.canary, error=type(error).__name__)
        with self._trip_lock:
            self.routing = self.moves.withdraw(routing.canary, actor="steward-serving", reason=reason)

    # --- endpoints -----------------------------------------------------------------------------------

    @bentoml.api(input_spec=Application, output_spec=Prediction)
    def predict(self, ctx: bentoml.Context, **fields: Any) -> Prediction | Refusal:
        started = time.perf_counter()
        application = Application(**fields).model_dump()  # validated again: the service's own contract
        routing = self.routing
        subject = _pseudonym(application[_usecase.id_column])  # routed and logged: the id as sent is never kept
        assigned = assign(routing, subject)
        behind = self.unready()
        if assigned is None or behind is not None:
            ctx.response.status_code = 503
            if behind is not None:
                ctx.response.headers["Retry-After"] = RETRY_AFTER
            return Refusal(error=behind or refusal(routing), decision=REFERRED)
        frame = _frame(application)
        role, chosen = assigned.role, self._load(assigned.ref)
        request_id = uuid.uuid4().hex
        try:
            probability, contributions = chosen.decide(frame)
        except Exception as error:
            # monitoring counts errors; nobody is answered this one, so it need not wait for the disk
            self._log(request_id, role, chosen, subject, application, ERROR, 0.0, started, durable=False)
            if role != "canary":
                raise
            self._trip(routing, error)
            role, chosen = "production", self._load(assigned.production)
            probability, contributions = chosen.decide(frame)
        decision, reasons = _decision(probability), _reasons(contributions, frame, probability)
        review = REFERRAL.format(probability=probability) if decision == REFERRED else None  # opened as it is written
        try:
            self._log(request_id, role, chosen, subject, application, decision, probability, started, review=review)
        except LogUnavailable as unrecorded:  # never answer a decision that is not on record
            ctx.response.status_code = 503
            ctx.response.headers["Retry-After"] = RETRY_AFTER
            return Refusal(error=str(unrecorded), decision=REFERRED)
        if routing.shadow and routing.shadow != chosen.ref:
            self._shadow_pool.submit(self._shadow, routing.shadow, request_id, subject, application, frame)
        return Prediction(
            request_id=request_id,
            decision=decision,
            probability=round(probability, 6),
            model_version=chosen.ref,
            data_version=chosen.data_md5,
            reasons=reasons,
        )

    def _shadow(
        self, ref: str, request_id: str, subject: str, application: dict[str, Any], frame: pd.DataFrame
    ) -> None:
        started = time.perf_counter()
        try:
            shadow = self._load(ref)
            probability = shadow.score(frame)
            decision = _decision(probability)
            self._log(request_id, "shadow", shadow, subject, application, decision, probability, started, durable=False)
        except Exception:  # a shadow's failure (or a log that cannot take it) is logged by its absence, never surfaced
            return

    def _log(
        self,
        request_id: str,
        role: str,
        loaded: Loaded,
        subject: str,
        application: dict[str, Any],
        decision: str,
        probability: float,
        started: float,
        *,
        review: str | None = None,
        durable: bool = True,
    ) -> None:
        """Log one answer about `subject` (a pseudonym); `durable`: return only once it is journalled
        (LogUnavailable if it cannot be). The protected attributes and proxies go apart from the inputs."""
        groups = _usecase.logged_groups(application)
        hidden = {*groups, _usecase.id_column}
        inputs = {} if role == "shadow" else {k: v for k, v in application.items() if k not in hidden}
        self.log.add(
            Logged(
                request_id=request_id,
                role=role,
                ts=datetime.now(UTC).isoformat(timespec="microseconds"),
                model_name=_params.usecase.model_name,
                model=loaded.ref,
                data_md5=loaded.data_md5,
                subject_id=subject,
                decision=decision,
                probability=round(probability, 6),
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                groups=groups,
                inputs=inputs,
            ),
            review=review,
            durable=durable,
        )

    @bentoml.api(route=FEEDBACK, input_spec=Outcome, output_spec=OutcomeRecorded)
    def feedback(self, ctx: bentoml.Context, request_id: str, outcome: str) -> OutcomeRecorded | Error:
        """The true outcome of a served decision, once known (it feeds the error-rate fairness checks and the
        retraining labels): only from the system of record, whose signature the guards checked."""
        if not self.log.served(request_id):
            ctx.response.status_code = 404
            return Error(error=UNKNOWN_REQUEST.format(request_id=request_id))
        stored = self.log.record_outcome(request_id, outcome, ts=datetime.now(UTC).isoformat(timespec="seconds"))
        if stored != outcome:
            ctx.response.status_code = 409
            return Error(error=OUTCOME_CONFLICT.format(request_id=request_id, outcome=stored))
        return OutcomeRecorded(request_id=request_id, outcome=stored)

    @bentoml.api(route="/contest", input_spec=Contest, output_spec=ContestCase)
    def contest(self, ctx: bentoml.Context, request_id: str, reason: str) -> ContestCase | Error:
        """Contest a decision: a person reviews it (the case number is the requester's receipt). A decision has at
        most `serve.max_open_contests` open cases at once, so one request id cannot flood the reviewers."""
        if not self.log.served(request_id):
            ctx.response.status_code = 404
            return Error(error=UNKNOWN_REQUEST.format(request_id=request_id))
        try:
            case = self.reviews.open(
                kind="contest", request_id=request_id, reason=reason, at_most=_params.serve.max_open_contests
            )
        except ReviewError as refused:
            ctx.response.status_code = 409
            return Error(error=str(refused))
        return ContestCase(case=case.id, request_id=request_id, status=case.status)

    @bentoml.api(input_spec=Application, output_spec=Explanation, route="/explain")
    def explain(self, ctx: bentoml.Context, **fields: Any) -> Explanation | Error:
        """What the model serving this person would decide, why (reason codes), and the smallest change to what
        they can act on that would flip it (the use case's `actionable`; never a protected attribute, a group
        derived from one, a proxy or an immutable feature). Nothing is logged as a decision."""
        application = Application(**fields).model_dump()
        routing = self.routing
        assigned = assign(routing, _pseudonym(application[_usecase.id_column]))  # the model /predict would use
        if assigned is None:
            ctx.response.status_code = 503
            return Error(error=refusal(routing))
        frame = _frame(application)
        chosen = self._load(assigned.ref)
        probability, contributions = chosen.decide(frame)
        found = counterfactual(
            chosen.model,
            frame,
            actionable=_spaces,
            threshold=_params.evaluate.threshold,
            protected=_usecase.never_changed,
            phrases=_usecase.reasons,
        )
        return Explanation(
            decision=_decision(probability),
            probability=round(probability, 6),
            model_version=chosen.ref,
            reasons=_reasons(contributions, frame, probability),
            counterfactual=None
            if found is None
            else Counterfactual(
                decision=found.decision,
                probability=round(found.probability, 6),
                changes=[Change.model_validate({k: c[k] for k in ("feature", "from", "to")}) for c in found.changes],
                text=found.text,
            ),
            counterfactual_note=NO_COUNTERFACTUAL.format(decision=_words.decision)
            if found is None
            else COUNTERFACTUAL_NOTE.format(decision=_words.decision, favourable=_words.favourable),
        )

    @bentoml.api(route="/admin/routing", input_spec=NoFields, output_spec=RoutingState)
    def admin_routing(self) -> RoutingState:
        """What this process serves right now (it re-reads the routing table every 250 ms)."""
        return RoutingState(**self.routing.as_dict())

    @bentoml.api(route="/admin/reload", input_spec=NoFields, output_spec=RoutingState)
    def admin_reload(self) -> RoutingState:
        """Re-read the routing table now and load any model it names (normally within 250 ms on its own)."""
        self._refresh(force=True)
        return RoutingState(**self.routing.as_dict())

    @bentoml.api(route="/admin/rollback", input_spec=Rollback, output_spec=RollbackResult)
    def admin_rollback(
        self,
        ctx: bentoml.Context,
        reason: str,
        actor: str = "admin-api",
        to: str | None = None,
        refuse_all: bool = False,
    ) -> RollbackResult | Error:
        """`steward rollback` (steward/rollouts.py): canary and shadow out; with neither, production back to the standby
        (or `to`, re-verified); `refuse_all`: every model out. A rollback Steward refuses answers 409 naming why."""
        name = _usecase.model_name
        try:
            if refuse_all:
                done = self.moves.refuse_all(name, actor=actor, reason=reason)
            else:
                done = self.moves.rollback(name, actor=actor, reason=reason, to=to)
        except StewardError as refused:
            ctx.response.status_code = 409
            return Error(error=str(refused))
        self._refresh(force=True)
        return RollbackResult(
            rolled_back=list(done.pulled),
            restored=done.restored,
            repeated=done.repeated,
            routing=RoutingState(**done.routing.as_dict()),
        )

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._shadow_pool.shutdown(wait=True)
        self.log.stop()

    def __is_ready__(self) -> bool:
        """Ready when production is loaded, the routing was read lately and the decision log can take decisions."""
        served = bool(self.routing.production) and self.routing.production in self.models
        return served and self.unready() is None


def _frame(application: dict[str, Any]) -> pd.DataFrame:
    """The request as the raw one-row frame, with the use case's derived group columns."""
    frame = to_frame(Application(**application))
    for name, group in _usecase.groups.items():
        frame[name] = group.assign(frame[group.column])
    return frame


def _decision(probability: float) -> Decision:
    return decide(probability, threshold=_params.evaluate.threshold, review_band=_params.serve.review_band)


def _reasons(contributions: dict[str, float], frame: pd.DataFrame, probability: float) -> list[Reason]:
    """The reason codes toward the model's own verdict (the review band aside): what pushed the score that way."""
    verdict = decide(probability, threshold=_params.evaluate.threshold)
    found = reason_codes(
        contributions,
        frame.iloc[0].to_dict(),
        decision=verdict,
        top_k=_params.explain.top_k_reasons,
        protected=never_cited(_usecase),
        phrases=_usecase.reasons,
    )
    return [Reason(feature=r["feature"], text=r["text"]) for r in found]


_service = cast(Any, Steward)  # bentoml.service returns a Service; mypy sees the class
_service.add_asgi_middleware(  # outermost of the two: /docs.json is rate limited like any other path
    Guards,
    max_body_bytes=_params.serve.max_body_bytes,
    rate_per_second=_params.serve.rate_per_second,
    burst=_params.serve.burst,
    admin_token=_settings.admin_token,
    usecase=_usecase.name,
    trusted_proxies=_settings.trusted_proxies,
    signed_paths=(FEEDBACK,),
    signing_key=partial(feedback_key, _settings),  # read (or made) when the worker builds its middleware
)
_service.add_asgi_middleware(
    OpenAPIDocument,
    build=lambda: document(
        _service.openapi_spec.asdict(), requests={api.route: api.input_spec for api in _service.apis.values()}
    ),
)
