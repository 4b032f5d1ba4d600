"""Benchmark: the canary analysis's anytime-valid allocation tests (tasks/rollout/sequential.py), simulated.

(a) False alarms. --runs (10,000) fair canaries per configuration, canary weight w in {5%, 20%, 50%} x production
base rate in {0.05, 0.5, 0.95}, each looked at after every request until the canary has served --canary-decisions
(500) decisions. Each request has a group of attribute A (shares 60/35/5%: one small group) and of attribute B
(80/20%), a side (the canary with probability w), an outcome (favourable with probability 0.7) and a slow flag
(5%). Both sides approve with the same probability, clip(base + group offsets + outcome offset, 0.02, 0.98), so
every alarm is false. The family is the analysis's: selection rate, TPR and FPR for each of the 5 groups and
latency, k = 16, a breach at e-value k/alpha. Goal: the share of runs with any alarm at most alpha = 0.05, shown
with its 95% Clopper-Pearson interval. Beside it, the plug-in SPRT it replaced (production's smoothed rate moved
1.645 standard errors towards p1, Wald's bound at alpha/16, no verdict before 20 production observations) on the
5 selection-rate tests of the same runs; it has no guarantee, the column shows what it does.

(b) Sample sizes until breach, in the canary's decisions in the affected group (its other members go to
production): a halved approval rate (Effect("ratio", 0.5)) and a TPR 0.2 lower (Effect("shift", -0.2)), at
production rates p0 and weights w, per-test alpha 0.05/19 (the German credit family: 6 groups x 3 metrics +
latency), --ess-runs (4,000) runs per configuration, each --horizon (10) x the larger of the oracle's and the
planned size (members: / w) long; runs that never breach within it are counted as misses. Methods:
  new       allocation_breach, breach at 1/alpha_i
  oracle    Wald's SPRT of p0 (known) against h on the canary's decisions, stopped at either of Wald's bounds
  plug-in   the plug-in SPRT (before), as in (a), until its breach (its "pass" bound is not applied)
  savvi     savvi 0.3.1's Multinomial test (Lindon and Malek's canary test) of the approvals' sides against
            [1 - w, w], k = 100, breach at p <= alpha_i; pure Python per update, so only the first --peer-runs
            (500) runs of each configuration (the same streams the others see). It runs in its own virtual
            environment, .bench/savvi, created on first use (savvi is no dependency of Steward's).
Goal: the new test's mean at most 1.5x the oracle's. "planned" is tasks/rollout/plan.py's figure,
ln(1/alpha_i) / breach_information x w. "bound" = w KL(h || p0) / breach_information: breach_information is the
smallest divergence between the breach alternative (h on the canary, p0 on production) and any fair pair (r, r),
reached at r = w h + (1 - w) p0, so a test valid whatever the common rate needs about ln(1/alpha) / that many
members, while the oracle needs ln(1/alpha) / (w KL(h || p0)). No test that does not know p0 beats that ratio to
the oracle as alpha -> 0; at large weights it exceeds 1.5 and the goal cannot be met there.
Usage: .venv/bin/python bench/canary_stats.py [--runs 10000] [--ess-runs 4000] [--peer-runs 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta as beta_distribution

from tasks.rollout.canary import Design
from tasks.rollout.sequential import (
    Effect,
    allocation_breach,
    bernoulli_kl,
    breach_information,
    wald_expected_sample_size,
)

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]
Sizes = tuple[Floats, Bools]  # per run: the canary's decisions until breach (or to the horizon); did it breach
ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".bench/savvi"
PEER_PACKAGES = ("savvi==0.3.1", "matplotlib")  # savvi.utils imports matplotlib without declaring it
DESIGN = Design()
GOAL = 1.5
CHUNK = 1_000_000  # runs x time elements simulated at once (each array a few MB)
PLUG_IN_Z, RATE_FLOOR = 1.645, 1e-3  # the plug-in SPRT's (HEAD~1 tasks/rollout/canary.py)
SHARES_A, OFFSETS_A = (0.60, 0.35, 0.05), np.array([-0.1, 0.0, 0.1])
SHARES_B, OFFSETS_B = (0.8, 0.2), np.array([0.05, -0.05])
FAVOURABLE, OUTCOME_OFFSET, SLOW = 0.7, 0.1, 0.05
FAMILY_A, FAMILY_B = 16, 19
PEER_SOURCE = """
import sys
import numpy as np
from savvi.multinomial import Multinomial

data, first = np.load(sys.argv[1]), {}
for key in sorted({name.split("_")[0] for name in data.files}):
    candidate, success = data[key + "_candidate"], data[key + "_success"]
    weight, alpha = data[key + "_setting"]
    first[key] = np.full(len(candidate), -1)
    for run in range(len(candidate)):
        test = Multinomial(alpha, np.array([1 - weight, weight]), k=100)
        for t in np.flatnonzero(success[run]):
            test.update(np.array([0, 1]) if candidate[run, t] else np.array([1, 0]))
            if test.calculate_p_value() <= alpha:
                first[key][run] = t
                break
np.savez(sys.argv[2], **first)
"""


def first_true(crossed: Bools) -> NDArray[np.int64]:
    """The index of each row's first True, -1 where there is none."""
    return np.where(crossed.any(axis=-1), crossed.argmax(axis=-1), -1)


def members_first(member: Bools, *arrays: Bools) -> tuple[Bools, ...]:
    """`arrays` with each row's members moved to the front in order (a test ignores the rest), cut to the longest
    row, and the mask of the members: the same e-process values at the members, in a fraction of the work."""
    counts = member.sum(axis=-1)
    order = np.argsort(~member, axis=-1, kind="stable")[:, : max(int(counts.max()), 1)]
    kept = np.arange(order.shape[1]) < counts[:, None]
    return kept, *(np.take_along_axis(a, order, axis=-1) for a in arrays)


def plug_in_breach(candidate: Bools, success: Bools, member: Bools, *, effect: Effect, alpha_i: float) -> Bools:
    """Where the plug-in SPRT (before) declares a breach, recomputed after every observation."""
    production, ours = member & ~candidate, member & candidate
    n_ref, s_ref = np.cumsum(production, axis=-1), np.cumsum(production & success, axis=-1)
    n, s = np.cumsum(ours, axis=-1), np.cumsum(ours & success, axis=-1)
    estimate = np.clip((s_ref + 0.5) / (n_ref + 1.0), RATE_FLOOR, 1 - RATE_FLOOR)
    alternative = estimate * effect.size if effect.kind == "ratio" else estimate + effect.size
    p1 = np.clip(alternative, RATE_FLOOR, 1 - RATE_FLOOR)
    margin = PLUG_IN_Z * np.sqrt(estimate * (1 - estimate) / np.maximum(n_ref, 1))
    p0 = estimate + np.sign(p1 - estimate) * np.minimum(margin, np.abs(p1 - estimate) / 2)
    llr = s * np.log(p1 / p0) + (n - s) * np.log((1 - p1) / (1 - p0))
    return (n_ref >= DESIGN.min_samples) & (llr >= math.log((1 - DESIGN.beta) / alpha_i))


def false_alarms(rng: np.random.Generator, *, runs: int, weight: float, base: float, horizon: int) -> tuple[int, int]:
    """Runs (of `runs` fair canaries) with any breach in the family: (new tests, plug-in SPRT on selection rate)."""
    threshold, alpha_i = math.log(FAMILY_A / DESIGN.alpha), DESIGN.alpha / FAMILY_A
    new = old = 0
    chunk = max(1, CHUNK // horizon)
    for start in range(0, runs, chunk):
        u = rng.random((6, min(chunk, runs - start), horizon))
        a = (u[0] >= SHARES_A[0]).astype(np.int8) + (u[0] >= SHARES_A[0] + SHARES_A[1])
        b = (u[1] >= SHARES_B[0]).astype(np.int8)
        favourable, candidate, slow = u[2] < FAVOURABLE, u[3] < weight, u[5] < SLOW
        rate = base + OFFSETS_A[a] + OFFSETS_B[b] + np.where(favourable, OUTCOME_OFFSET, -OUTCOME_OFFSET)
        approve = u[4] < np.clip(rate, 0.02, 0.98)
        latency = allocation_breach(candidate, slow, weight=weight, effect=DESIGN.effect("latency"))
        alarm, alarm_old = latency.max(axis=-1) >= threshold, np.zeros(len(a), bool)
        for group in [a == 0, a == 1, a == 2, b == 0, b == 1]:
            tests = (("selection_rate", group), ("tpr", group & favourable), ("fpr", group & ~favourable))
            for metric, member in tests:
                kept, c, x = members_first(member, candidate, approve)
                effect = DESIGN.effect(metric)
                log_e = allocation_breach(c, x, weight=weight, effect=effect, member=kept)
                alarm |= log_e.max(axis=-1) >= threshold
                if metric == "selection_rate":
                    alarm_old |= plug_in_breach(c, x, kept, effect=effect, alpha_i=alpha_i).any(axis=-1)
        new, old = new + int(alarm.sum()), old + int(alarm_old.sum())
    return new, old


def clopper_pearson(x: int, n: int, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    low = float(beta_distribution.ppf(tail, x, n - x + 1)) if x else 0.0
    high = float(beta_distribution.ppf(1 - tail, x + 1, n - x)) if x < n else 1.0
    return low, high


@dataclass(frozen=True)
class Case:
    """One configuration of (b): the affected group's stream at production rate p0 and canary weight w."""

    label: str
    effect: Effect
    p0: float
    weight: float
    alpha_i: float = DESIGN.alpha / FAMILY_B

    @property
    def h(self) -> float:
        return float(self.effect.rate(self.p0))

    @property
    def oracle_wald(self) -> float:
        return wald_expected_sample_size(self.p0, self.h, alpha=self.alpha_i, beta=DESIGN.beta)

    @property
    def planned(self) -> float:
        members = math.log(1 / self.alpha_i) / breach_information(self.p0, weight=self.weight, effect=self.effect)
        return members * self.weight

    @property
    def bound(self) -> float:
        information = breach_information(self.p0, weight=self.weight, effect=self.effect)
        return bernoulli_kl(self.h, self.p0) * self.weight / information


def cases() -> list[Case]:
    halved, tpr = Effect("ratio", DESIGN.selection_ratio), Effect("shift", -DESIGN.rate_gap)
    chosen = [("halved approval", halved, p0) for p0 in (0.3, 0.5, 0.7, 0.9)]
    chosen += [("TPR 0.2 lower", tpr, p0) for p0 in (0.5, 0.7, 0.9)]
    return [Case(label, effect, p0, w) for label, effect, p0 in chosen for w in (0.05, 0.2, 0.5)]


def stream(rng: np.random.Generator, runs: int, horizon: int, case: Case) -> tuple[Bools, Bools]:
    """The group's members in order: which went to the canary, and which were approved. Drawn run by run, so the
    first r runs are the same whatever the chunk size (the peer gets exactly the others' first runs)."""
    u = rng.random((runs, horizon, 2))
    candidate = u[..., 0] < case.weight
    return candidate, u[..., 1] < np.where(candidate, case.h, case.p0)


def until(candidate: Bools, first: NDArray[np.int64]) -> Sizes:
    """The canary's decisions up to and including index `first` of each run (where it never crossed, -1: all of
    them, to the horizon), and whether it crossed."""
    counts = np.cumsum(candidate, axis=-1)[np.arange(len(first)), first]
    return counts.astype(float), first >= 0


def sample_sizes(rng: np.random.Generator, case: Case, *, runs: int, horizon: int) -> dict[str, Sizes]:
    upper, lower = math.log((1 - DESIGN.beta) / case.alpha_i), math.log(DESIGN.beta / (1 - case.alpha_i))
    steps = np.log([[(1 - case.h) / (1 - case.p0), case.h / case.p0]])  # [failure, success] of the canary's
    found: dict[str, list[Sizes]] = {"new": [], "oracle": [], "plug-in": []}
    chunk = max(1, CHUNK // horizon)
    for start in range(0, runs, chunk):
        candidate, success = stream(rng, min(chunk, runs - start), horizon, case)
        log_e = allocation_breach(candidate, success, weight=case.weight, effect=case.effect)
        llr = np.cumsum(np.where(candidate, steps[0, success.astype(int)], 0.0), axis=-1)
        everyone = np.ones_like(candidate)
        crossings = {
            "new": log_e >= math.log(1 / case.alpha_i),
            "oracle": (llr >= upper) | (llr <= lower),
            "plug-in": plug_in_breach(candidate, success, everyone, effect=case.effect, alpha_i=case.alpha_i),
        }
        for method, crossed in crossings.items():
            found[method].append(until(candidate, first_true(crossed)))
    return {m: (np.concatenate([n for n, _ in p]), np.concatenate([c for _, c in p])) for m, p in found.items()}


def horizon_of(case: Case, factor: float) -> int:
    """Group members simulated per run: `factor` x the larger of the oracle's and the plan's expected size."""
    return min(math.ceil(factor * max(case.oracle_wald, case.planned) / case.weight), 200_000)


def peer_python() -> tuple[Path | None, str]:
    """The savvi environment's interpreter, created on first use; or None and why not."""
    python = PEER / "bin/python"
    check = [str(python), "-c", "import savvi.multinomial"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    print(f"creating {PEER.relative_to(ROOT)} with {', '.join(PEER_PACKAGES)} ...", flush=True)
    install = [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES]
    for command in ([sys.executable, "-m", "venv", str(PEER)], install):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return python, ""


def start_peer(
    python: Path, folder: Path, chosen: list[Case], horizons: list[int], *, runs: int, seed: int
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start savvi on the first `runs` streams of each case (drawn as sample_sizes draws them); returns the process
    and the streams."""
    data: dict[str, Any] = {}
    for i, (case, horizon) in enumerate(zip(chosen, horizons, strict=True)):
        rng = np.random.default_rng([seed, 2, i])
        data[f"c{i}_candidate"], data[f"c{i}_success"] = stream(rng, runs, horizon, case)
        data[f"c{i}_setting"] = np.array([case.weight, case.alpha_i])
    np.savez(folder / "in.npz", **data)
    command = [str(python), "-c", PEER_SOURCE, str(folder / "in.npz"), str(folder / "out.npz")]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), data


def rate_row(name: str, x: int, n: int) -> str:
    low, high = clopper_pearson(x, n)
    return f"{name:>8} {x:>6} {x / n:>7.4f} [{low:.4f}, {high:.4f}]"


def summary(sizes: Sizes | None) -> str:
    """Mean and p95 of canary decisions until breach; a miss counts its decisions to the horizon in the mean,
    which is then a lower bound ('>'), and as infinite in the p95."""
    if sizes is None:
        return f"{'-':>7}{'-':>7}"
    n, crossed = sizes
    p95 = np.percentile(np.where(crossed, n, np.inf), 95, method="higher")
    return f"{'>' * (not crossed.all()) + f'{n.mean():.0f}':>7}{p95:>7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--canary-decisions", type=int, default=500)
    parser.add_argument("--ess-runs", type=int, default=4_000)
    parser.add_argument("--peer-runs", type=int, default=500)
    parser.add_argument("--horizon", type=float, default=10.0, help="(b): members x the larger expected size / w")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    chosen = cases()
    horizons = [horizon_of(case, args.horizon) for case in chosen]
    python, reason = peer_python()
    with tempfile.TemporaryDirectory() as tmp:
        peer: subprocess.Popen[str] | None = None
        peer_data: dict[str, Any] = {}
        if python is not None:  # the peer runs on the other core while (a) and (b) are simulated here
            peer, peer_data = start_peer(python, Path(tmp), chosen, horizons, runs=args.peer_runs, seed=args.seed)

        print(f"(a) false alarms: {args.runs:,} fair canaries per row, looked at after every request until the canary")
        print(f"    has made {args.canary_decisions} decisions; k = {FAMILY_A} tests, alpha = {DESIGN.alpha}")
        print(f"{'w':>5} {'base':>5} {'requests':>8} {'method':>8} {'alarms':>6} {'rate':>7} {'95% interval':<17} goal")
        met_a = True
        for i, (weight, base) in enumerate((w, b) for w in (0.05, 0.2, 0.5) for b in (0.05, 0.5, 0.95)):
            horizon = math.ceil(args.canary_decisions / weight)
            rng = np.random.default_rng([args.seed, 1, i])
            new, old = false_alarms(rng, runs=args.runs, weight=weight, base=base, horizon=horizon)
            met_a &= new / args.runs <= DESIGN.alpha
            goal = "met" if new / args.runs <= DESIGN.alpha else "NOT met"
            print(f"{weight:>5.2f} {base:>5.2f} {horizon:>8} {rate_row('new', new, args.runs)} {goal}")
            print(f"{'':>20} {rate_row('plug-in', old, args.runs)} (before; no guarantee)", flush=True)

        print(f"\n(b) the canary's decisions in the affected group until breach; alpha_i = {DESIGN.alpha}/{FAMILY_B},")
        print(f"    {args.ess_runs:,} runs per row (savvi: the first {args.peer_runs}); mean and 95th percentile")
        head = f"{'effect':<16}{'p0':>5}{'h':>6}{'w':>6}"
        head += "".join(f"{m:>14}" for m in ("new", "oracle", "plug-in", "savvi"))
        print(head + f"{'Wald':>6}{'new/or':>8}{'goal':>8}{'planned':>8}{'bound':>6}  misses")
        results = []
        for i, (case, horizon) in enumerate(zip(chosen, horizons, strict=True)):
            rng = np.random.default_rng([args.seed, 2, i])
            results.append(sample_sizes(rng, case, runs=args.ess_runs, horizon=horizon))
        if peer is not None:
            _, err = peer.communicate()
            if peer.returncode == 0:
                with np.load(Path(tmp) / "out.npz") as out:
                    for i, found in enumerate(results):
                        found["savvi"] = until(peer_data[f"c{i}_candidate"], out[f"c{i}"])
            else:
                reason = f"peer failed: {(err.strip().splitlines() or ['?'])[-1]}"
    met: list[str] = []
    missed: list[str] = []
    for case, horizon, found in zip(chosen, horizons, results, strict=True):
        ratio = found["new"][0].mean() / found["oracle"][0].mean()
        name = f"{case.label} p0={case.p0} w={case.weight}"
        (met if ratio <= GOAL else missed).append(f"{name} ({ratio:.2f}x, bound {case.bound:.2f}x)")
        cells = "".join(f"{summary(found.get(m)):>14}" for m in ("new", "oracle", "plug-in", "savvi"))
        misses = ", ".join(f"{m} {int((~c).sum())}" for m, (_, c) in found.items() if not c.all())
        line = f"{case.label:<16}{case.p0:>5.2f}{case.h:>6.3f}{case.weight:>6.2f}{cells}{case.oracle_wald:>6.0f}"
        line += f"{ratio:>7.2f}x{'met' if ratio <= GOAL else 'NOT met':>8}{case.planned:>8.0f}{case.bound:>5.2f}x"
        print(line + (f"  {misses} (of {horizon:,} members)" if misses else ""))
    if python is None or "savvi" not in results[0]:
        print(f"savvi: not installed ({reason})" if python is None else f"savvi: {reason}")
    print("new/or: the means' ratio (goal <= 1.5x). Wald: the oracle's E[N] by Wald's approximation. planned:")
    print("  ln(1/alpha_i) / breach_information x w (tasks/rollout/plan.py). bound: w KL(h||p0) / breach_information,")
    print("  the ratio to the oracle below which no test valid without knowing p0 can go as alpha -> 0 (docstring).")
    print("  misses: runs that never crossed within the horizon; the mean counts them at the horizon ('>', a lower")
    print("  bound) and the p95 as infinite (inf: more than 5% missed).")
    print(f"\nsummary: (a) false-alarm goal {'met in every' if met_a else 'NOT met in some'} configuration;")
    for title, items in (("met 1.5x", met), ("did not", missed)):
        print(textwrap.fill(f"(b) {title} ({len(items)} of {len(chosen)}): {'; '.join(items) or 'none'}", 118))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
