"""`steward run`: the whole lifecycle on generated data, with live traffic against the real service.

1. Three snapshots of 150,000 synthetic applications each (tasks/demo/synthetic.py): A and B unbiased draws,
   C with the education shortcut (a spurious pattern no offline check can see: education is spread evenly
   over every group). Each is trained, audited, gated and signed off by the demo approvers.
2. A becomes production (with no production model there is nothing to compare it with) and the service
   starts (`bentoml serve`, a free loopback port); ordinary applicants arrive from four threads, and each
   decision's true outcome is sent back to /feedback at once (in life it takes months).
3. B is rolled out: shadow, each canary weight, production, with the analysis after every step.
4. C is rolled out. When its canary starts, so does a student-loan campaign: most young applicants now
   borrow for education. The canary declines them; production does not; the analysis rolls C back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deployments.local.bento_server import served
from flows.rollout import RolloutResult, rollout_flow
from flows.train import TrainResult
from steward.db import make_engine
from steward.layout import Layout
from steward.ledger import Ledger
from steward.params import GovernanceParams, load_params
from steward.routing import RoutingTable, model_name_of
from steward.settings import Settings
from steward.workspace import prepare_workspace
from tasks.demo.synthetic import generate_applications, write_demo_snapshot
from tasks.demo.traffic import Tally, Traffic, requests_of
from tasks.signoff.approvals import answer_as_demo

ROWS = 150_000
SNAPSHOTS = {"A": (5, 0.0), "B": (6, 0.0), "C": (7, 1.0)}  # name → (seed, education shortcut)
LIVE_SEED, CAMPAIGN_SEED, LIVE_ROWS = 50, 51, 20_000


@dataclass
class DemoResult:
    trained: dict[str, TrainResult]
    rollouts: dict[str, RolloutResult]
    traffic: Tally | None
    service_url: str | None


def demo_settings(settings: Settings) -> Settings:
    """The demo trains in a workspace of its own (STEWARD_HOME/workspaces/demo, see steward/workspace.py), so
    `steward run` leaves the checkout as it found it; the flows and the service it starts look there too."""
    workspace = prepare_workspace(settings.project_dir, settings.state_dir, "demo")
    os.environ["STEWARD_PROJECT_DIR"] = str(workspace)
    os.environ["STEWARD_HOME"] = str(settings.state_dir)
    return Settings()


def snapshot_paths(settings: Settings) -> dict[str, str]:
    folder = settings.state_dir / "demo"
    return {
        name: str(write_demo_snapshot(folder / f"applications-{name}-{ROWS}.csv", n=ROWS, seed=seed, shortcut=cut))
        for name, (seed, cut) in SNAPSHOTS.items()
    }


@contextmanager
def demo_approvers(settings: Settings, governance: GovernanceParams, *, since_seq: int) -> Iterator[None]:
    """While inside, a thread answers the demo sign-offs opened after ledger record `since_seq` as the demo
    approvers params.yaml names (their answers are recorded as demo identities), then stops."""
    stop = threading.Event()
    approver = threading.Thread(
        target=answer_as_demo,
        kwargs={
            "ledger": Ledger(make_engine(settings.db_url)),
            "governance": governance,
            "since_seq": since_seq,
            "author": settings.user,
            "stop": stop,
        },
        name="demo-approver",
        daemon=True,
    )
    approver.start()
    try:
        yield
    finally:
        stop.set()
        approver.join(timeout=30)


def run_demo(settings: Settings, *, train: Callable[[str], TrainResult], say: Callable[[str], None]) -> DemoResult:
    """The story in the module docstring; `train(path)` runs the training flow with demo sign-off."""
    paths = snapshot_paths(settings)
    trained: dict[str, TrainResult] = {}
    for name, path in paths.items():
        seed, cut = SNAPSHOTS[name]
        kind = "with the education shortcut" if cut else "unbiased"
        say(f"\n[{name}] training on snapshot {name}: {ROWS:,} synthetic applications, seed {seed}, {kind}")
        trained[name] = train(path)
        say(f"[{name}] {trained[name].model.ref}: {trained[name].model.state.value}")
    result = DemoResult(trained=trained, rollouts={}, traffic=None, service_url=None)
    if any(t.rejected for t in trained.values()):
        say("a candidate was rejected by its gate: no rollout (see the gate report above)")
        return result

    first = trained["A"].model.ref
    result.rollouts["A"] = rollout_flow(first)
    say(f"\n[A] {first}: {result.rollouts['A'].outcome} ({result.rollouts['A'].reason})")
    env = {**os.environ, **settings.tool_env()}
    with served(env, cwd=settings.project_dir, log=settings.state_dir / "demo" / "service.log") as service:
        url = service.url
        result.service_url = url
        say(f"serving at {url}: ordinary applicants arrive, outcomes are fed back to /feedback")
        usecase = load_params(Layout(settings.project_dir).params_file).usecase  # the one the demo trained
        live = requests_of(generate_applications(LIVE_ROWS, seed=LIVE_SEED), label=usecase.label.column)
        traffic = Traffic(url, live, id_column=usecase.id_column, threads=4).start()
        try:
            for name in ("B", "C"):
                ref = trained[name].model.ref
                done = threading.Event()
                if name == "C":
                    _campaign_with_canary(settings, ref, traffic, say, done=done)
                say(f"\n[{name}] rollout of {ref}: shadow, canary weights, production")
                try:
                    result.rollouts[name] = rollout_flow(ref)
                finally:
                    done.set()
                for step in result.rollouts[name].steps:
                    say(f"[{name}]   {step['step']}: {step['ending']}: {step['summary']}")
                if result.rollouts[name].steps and result.rollouts[name].outcome != "production":
                    _approval_rates(result.rollouts[name].steps[-1], name, say)
                say(f"[{name}] {ref}: {result.rollouts[name].outcome}")
        finally:
            result.traffic = traffic.stop()
    tally = result.traffic
    say(
        f"\ntraffic: {tally.sent} requests, {tally.failed} failed; decisions {dict(tally.decisions)}; "
        f"served by {dict(tally.models)}; {tally.feedback} outcomes fed back"
    )
    return result


def _campaign_with_canary(
    settings: Settings, ref: str, traffic: Traffic, say: Callable[[str], None], *, done: threading.Event
) -> None:
    """Swap the live traffic for the student-loan campaign's the moment `ref` takes canary traffic."""
    engine = make_engine(settings.db_url)
    table = RoutingTable(engine, Ledger(engine))
    label = load_params(Layout(settings.project_dir).params_file).usecase.label.column
    campaign = requests_of(generate_applications(LIVE_ROWS, seed=CAMPAIGN_SEED, proxy=0.8), label=label)

    def watch() -> None:
        while table.get(model_name_of(ref)).canary != ref:
            if done.wait(0.1):
                return
        traffic.swap(campaign)
        say("[C]   a student-loan campaign starts with the canary: 80% of young applicants borrow for education")

    threading.Thread(target=watch, name="campaign", daemon=True).start()


def _approval_rates(step: dict[str, Any], name: str, say: Callable[[str], None]) -> None:
    """Each group's approval rate, candidate vs production, as the deciding look saw it."""
    say(f"[{name}]   approval rates at that look (candidate vs production, the candidate's decisions):")
    for test in step["tests"]:
        if test["metric"] == "selection_rate" and test["candidate_rate"] is not None:
            say(
                f"[{name}]     {test['group']:<24} {test['candidate_rate']:.2f} vs {test['reference_rate']:.2f}"
                f"  (n={test['n']}, {test['verdict']})"
            )
