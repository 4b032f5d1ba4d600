"""Benchmark: how many decisions a bad canary serves before the analysis rolls it back, against Wald's SPRT
expected sample size for the same effect at alpha = beta = 0.05, and how fast the rollback takes effect.

Set-up (a temporary project, `bentoml serve` on 127.0.0.1): scripts/rollout_fixture.py's production model
and its unfair candidate (the education shortcut). Live traffic is the student-loan campaign with
`--proxy` of the young borrowing for education, chosen so the candidate approves the young at about half
production's rate. Both rates are measured offline on 20,000 applications of that traffic, with the
service's own decision rule (approve: P(good) >= 0.5 and outside the review band), which gives the
effect (p0, p1) and the yardsticks: Wald's E1[N] with p0 known (tasks/rollout/sequential.wald_expected_sample_size)
at alpha = 0.05 and at the analysis's per-test alpha (alpha/k, Bonferroni: the oracle the goal is measured
against), and the plan's expected count for the allocation test (tasks/rollout/plan.py).

Each run registers the candidate afresh, puts it in canary at `--weight`, and runs the rollout's watch
(tasks/rollout/watch.py, the analysis in params.yaml) until it breaches, then withdraws it as the flow does.
Counted per run, from the prediction log: the young applicants' canary decisions the deciding look read,
those the canary served in all (until the service saw weight 0), and all its decisions; timed: from the
newest decision the deciding look read to the rollback record (weight 0 in the routing table) and to the
canary's last served decision. Goals: served young decisions at most 1.5x E1[N] at alpha/k; under 2 s to weight 0.

Usage: .venv/bin/python bench/rollback.py [--runs 5] [--weight 0.1] [--proxy 0.45]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO, GOAL_SECONDS = 1.5, 2.0
GROUP = ("age_group", "under 25")


def offline_rates(env: dict[str, str], refs: dict[str, str], proxy: float) -> tuple[float, float]:
    """The young's approval rate under production (p0) and the candidate (p1) on the campaign's traffic."""
    code = f"""
import json, bentoml
from steward.db import make_engine
from steward.registry import Registry
from steward.settings import Settings
from steward.layout import Layout
from steward.params import load_params
from tasks.data.features import to_feature_frame
from usecases.german_credit.generator import generate_applications
settings = Settings(); params = load_params(Layout(settings.project_dir).params_file)
frame = to_feature_frame(generate_applications(20000, seed=99, proxy={proxy}), usecase=params.usecase)
young = frame["age_group"] == "under 25"
low, high = params.serve.review_band
rates = []
for role in ("production", "unfair"):
    model = bentoml.sklearn.load_model(Registry(make_engine(settings.db_url)).get({refs!r}[role]).model_tag)
    p = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
    approve = (p >= params.evaluate.threshold) & ~((p >= low) & (p < high))
    rates.append(float(approve[young].mean()))
print(json.dumps(rates))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    p0, p1 = json.loads(done.stdout.strip().splitlines()[-1])
    return p0, p1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--weight", type=float, default=0.1)
    parser.add_argument("--proxy", type=float, default=0.45)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # scripts/ is not an installed package

    from deployments.local.bento_server import served
    from scripts.rollout_fixture import build
    from scripts.serving_fixture import sign_off
    from steward.db import make_engine
    from steward.feedback_auth import feedback_key
    from steward.keys import instance_key
    from steward.ledger import ROLLBACK, Ledger
    from steward.model_integrity import Manifest
    from steward.params import load_params
    from steward.registry import State
    from steward.rollouts import Rollouts
    from steward.settings import Settings
    from steward.windows import window
    from tasks.demo.traffic import Traffic, requests_of
    from tasks.rollout.canary import Design
    from tasks.rollout.sequential import Effect, breach_information, wald_expected_sample_size
    from tasks.rollout.watch import now_iso, watch
    from usecases.german_credit.generator import generate_applications

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        env, refs = build(project)
        p0, p1 = offline_rates(env, refs, args.proxy)
        settings = Settings(project_dir=project, home=project / ".steward")
        params = load_params(project / "params.yaml")
        engine = make_engine(settings.db_url)
        ledger = Ledger(engine)
        moves = Rollouts(engine, ledger)
        unfair = moves.registry.get(refs["unfair"])
        seals = moves.registry.seal(unfair.id)
        assert seals is not None, f"{unfair.ref} was registered unsigned"
        production = refs["production"]
        loose = wald_expected_sample_size(p0, p1, alpha=0.05, beta=0.05)
        rows = []
        with served(env, cwd=ROOT, log=project / "service.log") as service:
            url = service.url
            spec = params.usecase
            live = requests_of(generate_applications(20_000, seed=98, proxy=args.proxy), label=spec.label.column)
            key = feedback_key(settings)
            traffic = Traffic(url, live, id_column=spec.id_column, threads=4, feedback_key=key).start()
            try:
                for run in range(args.runs):
                    version = moves.registry.register(
                        name=unfair.name,
                        model_tag=unfair.model_tag,
                        model_md5=f"{unfair.model_md5}-{run}",
                        data_md5=unfair.data_md5,
                        params_hash=unfair.params_hash,
                        git_commit=None,
                        flow_run_id=None,
                        metrics={},
                        manifest=Manifest(seals.files),  # the same stored bytes, sealed again as this version
                        signer=instance_key(settings),
                    )
                    ref = version.ref
                    sign_off(ledger, ref)
                    moves.registry.transition(ref, State.APPROVED)
                    moves.registry.transition(ref, State.SHADOW)
                    since = now_iso()
                    moves.to_canary(ref, args.weight, actor="bench")
                    step = watch.fn(
                        candidate=ref,
                        reference=production,
                        role="canary",
                        since=since,
                        limits=params.rollout.step.model_copy(update={"seconds": 600.0}),
                        params=params,
                        settings=settings,
                        weight=args.weight,
                    )
                    moves.withdraw(ref, actor="bench", reason=f"bench: {step.ending}")
                    rollback = [r for r in ledger.records(actions=(ROLLBACK,)) if r.subject == ref][-1]
                    time.sleep(1.0)  # the log flushes every 0.1 s; the service re-reads routing every 0.25 s
                    log = window(engine, models=[ref], since=since)
                    canary = log[log["role"] == "canary"]
                    young = canary[canary[GROUP[0]] == GROUP[1]]
                    test = next(
                        t for t in step.analysis.tests if t.metric == "selection_rate" and t.group == "=".join(GROUP)
                    )
                    decisive = datetime.fromisoformat(step.decisive_ts) if step.decisive_ts else None
                    to_zero = (
                        (datetime.fromisoformat(rollback.ts) - decisive).total_seconds() if decisive else float("nan")
                    )
                    last = datetime.fromisoformat(str(canary["ts"].max())) if len(canary) else None
                    to_last = (last - decisive).total_seconds() if decisive and last else float("nan")
                    rows.append(
                        {
                            "ending": step.ending,
                            "breached": ",".join(f"{t.metric}[{t.group}]" for t in step.analysis.breaches()),
                            "young_at_decision": test.n,
                            "young_served": len(young),
                            "canary_served": len(canary),
                            "to_weight_0_s": to_zero,
                            "to_last_served_s": to_last,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                tally = traffic.stop()
        k = len(step.analysis.tests)
        yardstick = wald_expected_sample_size(p0, p1, alpha=0.05 / k, beta=0.05)
        effect: Effect = Design().effect("selection_rate")
        planned = math.log(k / 0.05) / breach_information(p0, weight=args.weight, effect=effect) * args.weight

    served_young = np.array([r["young_served"] for r in rows], dtype=float)
    at_decision = np.array([r["young_at_decision"] for r in rows], dtype=float)
    to_zero = np.array([r["to_weight_0_s"] for r in rows])
    print(f"effect: young approved at p0 = {p0:.3f} by production, p1 = {p1:.3f} by the canary (offline)")
    print(f"oracle SPRT E1[N] (p0 known), beta 0.05: {loose:.1f} young at alpha 0.05, {yardstick:.1f} at alpha/{k}")
    print(f"planned for the allocation test at weight {args.weight:.0%}: {planned:.1f} young canary decisions")
    print(f"traffic: {tally.sent} requests, {tally.failed} failed; canary weight {args.weight:.0%}; {len(rows)} runs")
    print(f"{'':<28}{'mean':>8}{'max':>8}{'ratio to E1[N] at alpha/k':>27}")
    for label, counts in (("young, read by the decision", at_decision), ("young, served by the canary", served_young)):
        print(f"{label:<28}{counts.mean():>8.1f}{counts.max():>8.0f}{counts.mean() / yardstick:>26.2f}x")
    print(f"{'all canary decisions':<28}{np.mean([r['canary_served'] for r in rows]):>8.1f}")
    print(
        f"seconds from the decisive decision to weight 0: mean {np.nanmean(to_zero):.2f}, max {np.nanmax(to_zero):.2f}"
    )
    ratio = served_young.mean() / yardstick
    print(
        f"served/E1[N] at alpha/{k} {ratio:.2f}x "
        f"(goal <= {GOAL_RATIO}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'}); "
        f"max seconds to weight 0 {np.nanmax(to_zero):.2f} (goal < {GOAL_SECONDS}: "
        f"{'met' if np.nanmax(to_zero) < GOAL_SECONDS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
