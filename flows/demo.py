"""`steward run`: the whole lifecycle on generated data, with live traffic against the real service.

The story is the same for every use case; what is planted comes from its usecase.yaml `demo` section, and the
rows from its generator plug-in or the resampler (tasks/demo/synthesize.py):
1. Three synthetic snapshots: A and B plain draws, C with the use case's shortcut (a spurious pattern no
   offline check can see: it is spread evenly over every group). Each is trained, audited, gated and signed
   off by the demo approvers.
2. A becomes production (with no production model there is nothing to compare it with) and the service
   starts (`bentoml serve`, a free loopback port); ordinary requests arrive from four threads, and each
   decision's true outcome is sent back to /feedback at once (in life it takes months).
3. B is rolled out: shadow, each canary weight, production, with the analysis after every step.
4. C is rolled out. When its canary starts, so does the use case's campaign, in which the shortcut's pattern
   becomes a proxy of a group. The canary declines that group; production does not; the analysis rolls C back.

The rollouts are judged at a family-wise false-alarm rate of DEMO_ALPHA, not params.yaml's 0.05: B is as fair as A
(on the live applicants their approval, TPR and FPR agree within 0.02 in every group), yet at 0.05 each canary step
of a fair candidate ends in a false alarm about one time in fifty (measured with the analysis on the demo's own
traffic), so one demo in twenty or so would roll B back and never show a promotion. C's breach is large enough to be
caught either way, on a few more of its decisions.
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
from steward.feedback_auth import feedback_key
from steward.governance import GovernanceParams
from steward.ledger import Ledger
from steward.params import load_params
from steward.routing import RoutingTable, model_name_of
from steward.settings import Settings
from steward.usecase import UseCase
from steward.workspace import prepare_workspace, select_usecase
from tasks.demo.synthesize import demo_scenarios, synthesize, write_snapshot
from tasks.demo.traffic import LOOPBACK_PROXY, Tally, Traffic, requests_of
from tasks.document.facts import plural
from tasks.signoff.approvals import answer_as_demo

SNAPSHOTS = {"A": (5, "plain"), "B": (6, "plain"), "C": (7, "shortcut")}  # name → (seed, population)
LIVE_SEED, CAMPAIGN_SEED, LIVE_ROWS = 50, 51, 20_000
DEMO_ALPHA = 0.001  # the rollouts' family-wise false-alarm rate (module docstring)


@dataclass
class DemoResult:
    trained: dict[str, TrainResult]
    rollouts: dict[str, RolloutResult]
    traffic: Tally | None
    service_url: str | None


def demo_settings(settings: Settings, usecase: str | None = None) -> Settings:
    """The demo trains in a workspace of its own (STEWARD_HOME/workspaces/demo, or demo-<usecase> for another
    use case than params.yaml's; see steward/workspace.py), so `steward run` leaves the checkout as it found
    it; the flows and the service it starts look there too."""
    workspace = prepare_workspace(settings.project_dir, settings.state_dir, f"demo-{usecase}" if usecase else "demo")
    if usecase is not None:
        select_usecase(workspace, usecase)
    os.environ["STEWARD_PROJECT_DIR"] = str(workspace)
    os.environ["STEWARD_HOME"] = str(settings.state_dir)
    return Settings()


def demo_usecase(settings: Settings) -> UseCase:
    return load_params(settings.project_dir / "params.yaml").usecase


def snapshot_paths(settings: Settings, usecase: UseCase) -> dict[str, str]:
    folder = settings.state_dir / "demo"
    scenarios = demo_scenarios(usecase)
    rows = usecase.demo.rows if usecase.demo else 0
    return {
        name: str(
            write_snapshot(
                folder / f"{usecase.name}-{name}-{rows}.csv",
                usecase,
                settings.project_dir,
                n=rows,
                seed=seed,
                scenario=scenarios[population],
            )
        )
        for name, (seed, population) in SNAPSHOTS.items()
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
            "settings": settings,
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
    usecase = demo_usecase(settings)
    paths = snapshot_paths(settings, usecase)
    assert usecase.demo is not None  # snapshot_paths refused a use case without a demo section
    scenarios = demo_scenarios(usecase)
    rows, subjects = usecase.demo.rows, plural(usecase.words.subject)
    trained: dict[str, TrainResult] = {}
    for name, path in paths.items():
        seed, population = SNAPSHOTS[name]
        kind = f"with {usecase.demo.shortcut.story}" if population == "shortcut" else "plain"
        say(
            f"\n[{name}] training on snapshot {name}: {rows:,} synthetic {subjects} of {usecase.name}, "
            f"seed {seed}, {kind}"
        )
        trained[name] = train(path)
        say(f"[{name}] {trained[name].model.ref}: {trained[name].model.state.value}")
    result = DemoResult(trained=trained, rollouts={}, traffic=None, service_url=None)
    if any(t.rejected for t in trained.values()):
        say("a candidate was rejected by its gate: no rollout (see the gate report above)")
        return result

    first = trained["A"].model.ref
    result.rollouts["A"] = rollout_flow(first, alpha=DEMO_ALPHA)
    say(f"\n[A] {first}: {result.rollouts['A'].outcome} ({result.rollouts['A'].reason})")
    env = {**os.environ, **settings.tool_env(), **LOOPBACK_PROXY}  # the traffic stands for a load balancer
    with served(env, cwd=settings.project_dir, log=settings.state_dir / "demo" / "service.log") as service:
        url = service.url
        result.service_url = url
        say(f"serving at {url}: ordinary {subjects} arrive, outcomes are fed back to /feedback")
        live = synthesize(usecase, settings.project_dir, n=LIVE_ROWS, seed=LIVE_SEED, scenario=scenarios["plain"])
        requests = requests_of(live, label=usecase.label.column)
        key = feedback_key(settings)  # the outcomes come back signed, as from the system of record
        traffic = Traffic(url, requests, id_column=usecase.id_column, threads=4, feedback_key=key).start()
        try:
            for name in ("B", "C"):
                ref = trained[name].model.ref
                done = threading.Event()
                if name == "C":
                    _campaign_with_canary(settings, usecase, ref, traffic, say, done=done)
                say(
                    f"\n[{name}] rollout of {ref}: shadow, canary weights, production "
                    f"(false-alarm rate {DEMO_ALPHA:g} per step, for the demo; params.yaml's is the rollouts' default)"
                )
                try:
                    result.rollouts[name] = rollout_flow(ref, alpha=DEMO_ALPHA)
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
    settings: Settings,
    usecase: UseCase,
    ref: str,
    traffic: Traffic,
    say: Callable[[str], None],
    *,
    done: threading.Event,
) -> None:
    """Swap the live traffic for the use case's campaign the moment `ref` takes canary traffic."""
    engine = make_engine(settings.db_url)
    table = RoutingTable(engine, Ledger(engine))
    scenario = demo_scenarios(usecase)["campaign"]
    rows = synthesize(usecase, settings.project_dir, n=LIVE_ROWS, seed=CAMPAIGN_SEED, scenario=scenario)
    campaign = requests_of(rows, label=usecase.label.column)
    story = usecase.demo.campaign.story if usecase.demo else "the campaign"

    def watch() -> None:
        while table.get(model_name_of(ref)).canary != ref:
            if done.wait(0.1):
                return
        traffic.swap(campaign)
        say(f"[C]   the canary meets {story}")

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
