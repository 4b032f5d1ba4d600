"""The moves that change what serves: a rollout's steps, a rollback, a restore, and the refusal mode.

Each move is a registry transition and a routing change (both in the ledger). Traffic moves first when a model
leaves (the routing row, then its state), and last when one arrives (its state, then the routing row), so the
routing table never names a model in the wrong state. A move changes only the routing row of the model's own
name (`name` of `name:vN`).

A rollback (`Rollouts.rollback`) never leaves a use case without a model:

- with a canary or a shadow, it withdraws them (rolled back); production keeps serving;
- with neither, it swaps production back to the standby: the last production model a promotion replaced
  that was verified good (steward.registry); the production it pulls is rolled back;
- `to=MODEL` restores that former production model (standby, retired or rolled back), withdrawing any canary
  and shadow too;
- with nothing to restore it refuses, naming what is missing and which former production models `to` could
  name. Refusing every decision is a separate, explicit move: `refuse_all`.

A model is restored only after its sign-off is found complete and was production before (Registry.restore),
and its bytes verify against its seal (the `verify` given to `Rollouts`, tasks.model.integrity in Steward's
processes); a model that fails is refused and nothing changes. The restore is one `rollback` routing record
whose payload names the model restored, the manifest digest it was verified against and the request.

Idempotent by request: a rollback's request (its move, `to` and reason) is in its ledger record, and a call
whose request is that of the newest routing change of its model name does nothing and says so
(`RollbackDone.repeated`). So an operator pressing the button twice, or a client retrying /admin/rollback,
withdraws the canary once and never pulls production on the second call; rolling back further is another
request: another reason (say why production must go too). `refuse_all` twice refuses once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine

from steward.ledger import MODEL_REFUSED, REGISTRY_TRANSITION, Ledger
from steward.registry import RESTORABLE, Registry, State
from steward.routing import (
    BAD_WEIGHT,
    NO_PRODUCTION,
    Routing,
    RoutingError,
    RoutingTable,
    last_change,
    model_name_of,
)

NOTHING_TO_RESTORE = (
    "{model_name}: nothing to roll back to: no canary or shadow to withdraw, and no standby (the last production "
    "model a promotion replaced that was verified good){serving}. {hint}"
)
FORMER = "Name one with --to: {refs}; or refuse every decision with --refuse-all"
NO_FORMER = "No former production model to name with --to either; refuse every decision with --refuse-all"
OTHER_NAME = "{ref} is not a version of {model_name}: a rollback restores only its own use case's models"
NO_VERIFIER = (
    "restoring {ref} needs its bytes verified against its seal, and this caller has no verifier: "
    "nothing was changed (use `steward rollback`)"
)


class RollbackError(RoutingError):
    """A rollback Steward refuses: nothing to restore, a model of another use case, no way to verify bytes."""


Verify = Callable[[str], Any]  # raises ModelRefused (steward.model_integrity) unless `ref`'s bytes verify


@dataclass(frozen=True)
class RollbackDone:
    """What a rollback did: the routing now, the models taken out (rolled back), the model restored, and, when the
    same request had already been done, the seq of its ledger record (nothing was changed)."""

    routing: Routing
    pulled: tuple[str, ...] = ()
    restored: str | None = None
    repeated: int | None = None


class Rollouts:
    """The moves a rollout, a rollback and an operator make (see the module docstring)."""

    def __init__(self, engine: Engine, ledger: Ledger, *, verify: Verify | None = None) -> None:
        self.engine = engine
        self.ledger = ledger
        self.table = RoutingTable(engine, ledger)
        self.registry = Registry(engine, ledger=ledger)
        self.verify = verify

    def to_shadow(self, ref: str, *, actor: str) -> Routing:
        name = model_name_of(ref)
        current = self.table.get(name)
        _behind_production(current, role="shadow", model_name=name)  # before the state changes
        self.registry.transition(ref, State.SHADOW, actor=actor)
        return self.table.set(name, replace(current, shadow=ref), actor=actor, reason=f"{ref} mirrors production")

    def to_canary(self, ref: str, weight: float, *, actor: str) -> Routing:
        if not 0.0 <= weight <= 1.0:  # before the state changes: else a shadow would be left named in state canary
            raise RoutingError(BAD_WEIGHT.format(weight=weight))
        name = model_name_of(ref)
        current = self.table.get(name)
        _behind_production(current, role="canary", model_name=name)
        if self.registry.get(ref).state is not State.CANARY:
            self.registry.transition(ref, State.CANARY, actor=actor)
        shadow = None if current.shadow == ref else current.shadow
        routing = replace(current, canary=ref, canary_weight=weight, shadow=shadow)
        return self.table.set(name, routing, actor=actor, reason=f"{ref} takes {weight:.0%} of applicants")

    def promote(self, ref: str, *, actor: str, reason: str) -> Routing:
        """`ref` (canary) becomes production; the production it replaces becomes the standby if it was verified
        good (and the standby before it retires), else it retires."""
        name = model_name_of(ref)
        current = self.table.get(name)
        for state in _path_to_production(self.registry.get(ref).state):
            self.registry.transition(ref, state, actor=actor)
        after = replace(current, production=ref, canary=None, canary_weight=0.0, mode="serve")
        done = self.table.set(
            name, replace(after, shadow=None if current.shadow == ref else current.shadow), actor=actor, reason=reason
        )
        if current.production and current.production != ref:
            self._stand_down(current.production, actor=actor)
        return done

    def withdraw(self, ref: str, *, actor: str, reason: str) -> Routing:
        """Take `ref` (canary or shadow) out of routing at once and mark it rolled back."""
        name = model_name_of(ref)
        current = self.table.get(name)
        routing = current
        if current.canary == ref:
            routing = replace(routing, canary=None, canary_weight=0.0)
        if current.shadow == ref:
            routing = replace(routing, shadow=None)
        changed = routing != current
        done = (
            self.table.set(name, routing, actor=actor, reason=reason, rollback=True, subject=ref)
            if changed
            else current
        )
        if self.registry.get(ref).state in (State.SHADOW, State.CANARY):
            self.registry.transition(ref, State.ROLLED_BACK, actor=actor)
        return done

    def standby(self, model_name: str) -> str | None:
        """The model a rollback swaps production back to (None: there is none)."""
        found = self.registry.list(state=State.STANDBY, name=model_name)
        return found[0].ref if found else None

    def former_production(self, model_name: str) -> list[str]:
        """Every version of `model_name` a restore could take back to production by its state and history, newest
        first (its sign-off and bytes are checked when it is named)."""
        versions = [v for v in self.registry.list(name=model_name) if v.state in RESTORABLE]
        return [v.ref for v in versions if self.registry.was_production(v.ref)]

    def rollback(self, model_name: str, *, actor: str, reason: str, to: str | None = None) -> RollbackDone:
        """Withdraw the canary and shadow; with neither, swap production back to the standby; with `to`, restore
        that former production model. Raises `RollbackError` when there is nothing to restore, and what Registry
        .restore and the verifier raise when the model to restore is refused (nothing changes then)."""
        to = self.registry.get(to).ref if to is not None else None  # `name:vN` whichever way it was named
        request = {"move": "rollback", "to": to, "reason": reason}
        current = self.table.get(model_name)
        if (seq := self._repeated(model_name, request)) is not None:
            return RollbackDone(current, repeated=seq)
        if to is None and (current.canary or current.shadow):
            return self._withdraw_all(model_name, current, actor=actor, reason=reason, request=request)
        target = to or self.standby(model_name)
        if target is None:
            raise RollbackError(self._nothing_to_restore(model_name, current))
        if model_name_of(target) != model_name:
            raise RollbackError(OTHER_NAME.format(ref=target, model_name=model_name))
        if target == current.production:
            if current.canary or current.shadow:
                return self._withdraw_all(model_name, current, actor=actor, reason=reason, request=request)
            return RollbackDone(current)  # it serves already: nothing to do, nothing recorded
        return self._restore(model_name, current, target, actor=actor, reason=reason, request=request)

    def refuse_all(self, model_name: str, *, actor: str, reason: str) -> RollbackDone:
        """The explicit kill switch: canary, shadow and production out of routing (rolled back) and the use case's
        service refuses every decision (503, `referred`) until a rollback restores a model or a rollout promotes
        one. Refusing again while nothing is routed changes nothing."""
        request = {"move": "refuse_all", "to": None, "reason": reason}
        current = self.table.get(model_name)
        pulled = tuple(ref for ref in (current.canary, current.shadow, current.production) if ref)
        if not pulled and current.mode == "refuse" and (found := last_change(self.engine, model_name)):
            return RollbackDone(current, repeated=found.seq)
        done = self.table.set(
            model_name,
            Routing(mode="refuse"),
            actor=actor,
            reason=reason,
            rollback=True,
            subject=", ".join(pulled) or None,
            details={"request": request, "pulled": list(pulled)},
        )
        self._roll_back(pulled, actor=actor)
        return RollbackDone(done, pulled=pulled)

    def _withdraw_all(
        self, model_name: str, current: Routing, *, actor: str, reason: str, request: dict[str, Any]
    ) -> RollbackDone:
        pulled = tuple(ref for ref in (current.canary, current.shadow) if ref)
        after = Routing(production=current.production, mode="serve" if current.production else "refuse")
        done = self.table.set(
            model_name,
            after,
            actor=actor,
            reason=reason,
            rollback=True,
            subject=", ".join(pulled),
            details={"request": request, "pulled": list(pulled)},
        )
        self._roll_back(pulled, actor=actor)
        return RollbackDone(done, pulled=pulled)

    def _restore(
        self, model_name: str, current: Routing, target: str, *, actor: str, reason: str, request: dict[str, Any]
    ) -> RollbackDone:
        """`target` back in production (checks first, then its state, then the routing), and what it replaces
        (production, canary, shadow) out and rolled back."""
        version = self.registry.restorable(target)  # sign-off and history: the cheap refusals first
        if self.verify is None:
            raise RollbackError(NO_VERIFIER.format(ref=target))
        self.verify(target)  # its bytes against its seal; a refusal is in the ledger (model.refused)
        sealed = self.registry.seal(version.id)
        previous = version.state
        self.registry.restore(target, actor=actor)
        pulled = tuple(ref for ref in (current.production, current.canary, current.shadow) if ref)
        details = {
            "request": request,
            "pulled": list(pulled),
            "restored": target,
            "restored_from": previous.value,
            "verified_manifest": sealed.manifest if sealed is not None else None,
        }
        try:
            done = self.table.set(
                model_name,
                Routing(production=target, mode="serve"),
                actor=actor,
                reason=reason,
                rollback=True,
                subject=", ".join(pulled) or target,
                details=details,
            )
        except Exception:  # the routing refused it (another use case's demo model...): back where it was
            self.registry.transition(target, previous, actor=actor)
            raise
        self._roll_back(pulled, actor=actor)
        return RollbackDone(done, pulled=pulled, restored=target)

    def _roll_back(self, refs: tuple[str, ...], *, actor: str) -> None:
        for ref in refs:
            if self.registry.get(ref).state in (State.SHADOW, State.CANARY, State.PRODUCTION):
                self.registry.transition(ref, State.ROLLED_BACK, actor=actor)

    def _stand_down(self, ref: str, *, actor: str) -> None:
        """A production model a promotion replaced: the standby when verified good, else retired."""
        if not self._verified_good(ref):
            self.registry.transition(ref, State.RETIRED, actor=actor)
            return
        for older in self.registry.list(state=State.STANDBY, name=model_name_of(ref)):
            self.registry.transition(older.ref, State.RETIRED, actor=actor)
        self.registry.transition(ref, State.STANDBY, actor=actor)

    def _verified_good(self, ref: str) -> bool:
        """No `model.refused` record about `ref` since it last became production."""
        became, refused = 0, 0
        for record in self.ledger.records(subject=ref, actions=(REGISTRY_TRANSITION, MODEL_REFUSED)):
            if record.action == MODEL_REFUSED:
                refused = record.seq
            elif isinstance(record.payload, dict) and record.payload.get("to") == State.PRODUCTION.value:
                became = record.seq
        return became > 0 and refused < became

    def _repeated(self, model_name: str, request: dict[str, Any]) -> int | None:
        """The seq of the newest routing change of `model_name` when it was this very request."""
        found = last_change(self.engine, model_name)
        return found.seq if found is not None and found.payload.get("request") == request else None

    def _nothing_to_restore(self, model_name: str, current: Routing) -> str:
        former = [ref for ref in self.former_production(model_name) if ref != current.production]
        serving = f"; {current.production} keeps serving" if current.production else "; nothing serves"
        hint = FORMER.format(refs=", ".join(former)) if former else NO_FORMER
        return NOTHING_TO_RESTORE.format(model_name=model_name, serving=serving, hint=hint)


def _behind_production(current: Routing, *, role: str, model_name: str) -> None:
    if not current.production:
        raise RoutingError(NO_PRODUCTION.format(role=role, model_name=model_name))


def _path_to_production(state: State) -> list[State]:
    """The states a model walks from `state` to production (an approved first model walks them all)."""
    walk = [State.APPROVED, State.SHADOW, State.CANARY, State.PRODUCTION]
    return walk[walk.index(state) + 1 :] if state in walk else [State.PRODUCTION]
