"""Anytime-valid tests of a candidate against production: e-processes, so a test may be looked at after every
request (or stopped whenever) and its error rate still holds, with neither side's rate known.

An e-process E_t is a running product of factors whose expectation given the past is at most 1 whenever the null
hypothesis holds; Ville's inequality then gives P(E_t >= 1/alpha at any time) <= alpha. Each test here has two:

* a **breach** e-process, null "the candidate treats the group no worse than production", tuned to the breach
  effect (`Effect`); a breach is declared when it reaches 1/alpha_i;
* a **pass** e-process, null "the candidate is at the breach effect or worse", tuned to "as good as production";
  a pass is declared when it reaches 1/beta, so a harmful candidate passes with probability at most beta.

A canary (a `weight` share of applicants, chosen by a hash of their id) is tested by **allocation**: given that a
group member was approved (or declined), which side decided is a coin with P(candidate) = weight exactly when both
sides approve the group at the same rate, whatever that rate is and however it moves over time (Lindon and Malek,
"Anytime-valid inference for multinomial count data", NeurIPS 2022, use the same conditioning for canary counts).
Under the breach effect, with production's rate p and the candidate's h(p), that probability is

    q1 = w h / (w h + (1 - w) p)                 for an approval,
    q0 = w (1 - h) / (w (1 - h) + (1 - w) (1 - p))  for a decline,

and the breach factor of one observation is q/w if the candidate decided it, (1 - q)/(1 - w) if production did, with
p estimated from production's earlier observations (a predictable plug-in: it never sees the observation it scores).
Because q1 <= w <= q0 always (h is on the worse side of p), each factor has expectation at most 1 under any
sequence of rates where the candidate is no worse, so the guarantee needs neither rate known nor steady.

A shadow sees every request production sees, so it is tested **paired**: among the requests where the two decided
differently, the share where the shadow is the worse one is at most 1/2 under the null (a sign test, tuned by a
plug-in estimate of that share, kept on the worse side).

All functions take arrays whose last axis is time (leading axes are independent runs, as the bench simulates) and
an optional `member` mask (observations outside it count for nothing), and return the log e-process after each
observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Worse = Literal["lower", "higher"]
SHIFT_FLOOR = 0.25  # a shifted breach rate stays within a quarter of production's distance to 0 (or 1)
INTERVAL_PRIOR = 0.5  # Beta(1/2, 1/2) mixture for the confidence sequences (Jeffreys)
_EPS = 1e-12


@dataclass(frozen=True)
class Effect:
    """The breach hypothesis of one test: the candidate's rate h(p) when production's is p.

    `ratio`: h = size x p (a group approved at half production's rate: size 0.5); `shift`: h = p + size (a TPR 0.2
    lower: -0.2, an FPR 0.2 higher: +0.2), kept within SHIFT_FLOOR of the way to 0 or 1 so that h stays a rate on
    the worse side of p; `level`: h = size whatever p is (a quarter of requests slow), never better than p."""

    kind: Literal["ratio", "shift", "level"]
    size: float

    @property
    def worse(self) -> Worse:
        if self.kind == "ratio":
            return "lower" if self.size < 1 else "higher"
        if self.kind == "shift":
            return "lower" if self.size < 0 else "higher"
        return "higher"

    def rate(self, p: NDArray[np.float64] | float) -> NDArray[np.float64]:
        p = np.asarray(p, dtype=float)
        if self.kind == "ratio":
            return np.clip(p * self.size, 0.0, 1.0)
        if self.kind == "shift" and self.size < 0:
            return np.maximum(p + self.size, p * SHIFT_FLOOR)
        if self.kind == "shift":
            return np.minimum(p + self.size, 1 - (1 - p) * SHIFT_FLOOR)
        return np.maximum(np.full_like(p, self.size), p)


def _as(values: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(values, dtype=float)


def _mask(shape: tuple[int, ...], member: ArrayLike | None) -> NDArray[np.float64]:
    return np.ones(shape) if member is None else _as(member)


def _before(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The running sum of `values` along time, excluding each observation itself."""
    return np.cumsum(values, axis=-1) - values


def _kt(successes: NDArray[np.float64], n: NDArray[np.float64]) -> NDArray[np.float64]:
    """The Krichevsky-Trofimov estimate (s + 1/2) / (n + 1): a rate never 0 or 1."""
    return (successes + 0.5) / (n + 1.0)


def allocation_probabilities(
    p: NDArray[np.float64] | float, *, weight: float, effect: Effect
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(q1, q0): P(the candidate decided | approved), P(the candidate decided | declined) under the breach effect
    at production's rate p, with the candidate taking a `weight` share of applicants."""
    p = np.clip(_as(p), _EPS, 1 - _EPS)
    h = np.clip(effect.rate(p), _EPS, 1 - _EPS)
    q1 = weight * h / (weight * h + (1 - weight) * p)
    q0 = weight * (1 - h) / (weight * (1 - h) + (1 - weight) * (1 - p))
    return q1, q0


def allocation_breach(
    candidate: ArrayLike,
    success: ArrayLike,
    *,
    weight: float,
    effect: Effect,
    member: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """log E_t of the canary breach test (module docstring): `candidate` marks the candidate's observations (its
    weight share of applicants), `success` the approvals (or, for latency, slow requests)."""
    c, x = _as(candidate), _as(success)
    m = _mask(c.shape, member)
    production = m * (1 - c)
    p = _kt(_before(production * x), _before(production))
    q1, q0 = allocation_probabilities(p, weight=weight, effect=effect)
    q = np.where(x > 0, q1, q0)
    step = np.where(c > 0, np.log(q / weight), np.log((1 - q) / (1 - weight)))
    return np.cumsum(m * step, axis=-1)


def allocation_pass(
    candidate: ArrayLike,
    success: ArrayLike,
    *,
    weight: float,
    effect: Effect,
    member: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """log E_t of the canary pass test for a `ratio` effect: null "the candidate approves the group at most
    effect.size x production's rate". Under it an approval is the candidate's with probability at most
    q1* = w r / (w r + 1 - w), whatever production's rate, so each approval's factor w/q1* (the candidate's) or
    (1 - w)/(1 - q1*) (production's) has expectation at most 1; declines carry no factor."""
    if effect.kind != "ratio" or effect.size >= 1:
        raise ValueError(f"a canary pass test needs a ratio effect below 1, got {effect}")
    c, x = _as(candidate), _as(success)
    m = _mask(c.shape, member) * (x > 0)
    r = effect.size
    bound = weight * r / (weight * r + 1 - weight)
    step = np.where(c > 0, math.log(weight / bound), math.log((1 - weight) / (1 - bound)))
    return np.cumsum(m * step, axis=-1)


def level_pass(success: ArrayLike, *, level: float, member: ArrayLike | None = None) -> NDArray[np.float64]:
    """log E_t of a one-sample test of "the rate is at least `level`" (for latency: at least that share of the
    candidate's requests slow) against lower rates, with a plug-in estimate kept below `level`."""
    x = _as(success)
    m = _mask(x.shape, member)
    q = np.minimum(_kt(_before(m * x), _before(m)), level * (1 - 1e-3))
    step = np.where(x > 0, np.log(q / level), np.log((1 - q) / (1 - level)))
    return np.cumsum(m * step, axis=-1)


def paired_breach(
    candidate: ArrayLike, reference: ArrayLike, *, worse: Worse, member: ArrayLike | None = None
) -> NDArray[np.float64]:
    """log E_t of the paired sign test (a shadow): over requests where the two decided differently, null "the
    candidate is the worse one at most half the time", with a plug-in estimate of that share kept at 1/2 or above."""
    a, b = _as(candidate), _as(reference)
    m = _mask(a.shape, member) * (a != b)
    bad = (a < b) if worse == "lower" else (a > b)
    share = np.maximum(_kt(_before(m * bad), _before(m)), 0.5)
    step = np.where(bad, np.log(2 * share), np.log(2 * (1 - share)))
    return np.cumsum(m * step, axis=-1)


def paired_pass(
    candidate: ArrayLike, reference: ArrayLike, *, effect: Effect, member: ArrayLike | None = None
) -> NDArray[np.float64]:
    """log E_t of the paired pass test for a `ratio` effect r: null "the candidate's rate is at most r x
    production's", i.e. E[Z] <= 0 for Z = candidate - r x reference in [-r, 1]. A bet of a predictable fraction
    of wealth on Z (capital 1 + lambda Z, lambda in [0, 1/(2r)]) cannot grow in expectation under that null."""
    if effect.kind != "ratio" or effect.size >= 1:
        raise ValueError(f"a paired pass test needs a ratio effect below 1, got {effect}")
    m = _mask(np.shape(candidate), member)
    z = m * (_as(candidate) - effect.size * _as(reference))
    n = _before(m)
    mean = (_before(z) + 0.5) / (n + 1.0)  # shrunk towards 1/2 before any data, as the bet's first guess
    second = (_before(z * z) + 0.25) / (n + 1.0)
    bet = np.clip(mean / np.maximum(second, _EPS), 0.0, 0.5 / effect.size)
    return np.cumsum(m * np.log1p(bet * z), axis=-1)


def rate_interval(successes: float, n: float, *, alpha: float) -> tuple[float, float]:
    """An always-valid (1 - alpha) confidence sequence for a Bernoulli rate after `successes` in `n`: the rates p
    whose Beta(1/2, 1/2)-mixture likelihood ratio against p is below 1/alpha (Robbins' mixture; valid at every n
    at once for a steady rate)."""
    if n <= 0:
        return 0.0, 1.0
    a = INTERVAL_PRIOR
    log_mix = math.lgamma(successes + a) + math.lgamma(n - successes + a) - math.lgamma(n + 2 * a)
    log_mix -= math.lgamma(a) * 2 - math.lgamma(2 * a)
    limit = math.log(1 / alpha)

    def inside(p: float) -> bool:
        log_p = (successes * math.log(p) if successes else 0.0) + (
            (n - successes) * math.log1p(-p) if n - successes else 0.0
        )
        return log_mix - log_p < limit

    centre = successes / n
    return _edge(inside, centre, 0.0), _edge(inside, centre, 1.0)


def _edge(inside, centre: float, outward: float) -> float:
    """Bisect between `centre` (inside the interval) and `outward` (0 or 1) for the interval's edge."""
    if inside(min(max(outward, _EPS), 1 - _EPS)):
        return outward
    lo, hi = centre, outward
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if inside(mid) else (lo, mid)
    return lo


def difference_interval(
    candidate: tuple[float, float], reference: tuple[float, float], *, alpha: float
) -> tuple[float, float]:
    """An always-valid (1 - alpha) interval for the candidate's rate minus production's, from each side's
    (successes, n), each side's sequence at alpha / 2."""
    c_low, c_high = rate_interval(*candidate, alpha=alpha / 2)
    r_low, r_high = rate_interval(*reference, alpha=alpha / 2)
    return c_low - r_high, c_high - r_low


def bernoulli_kl(a: float, b: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(b)) in nats."""
    out = 0.0
    if a > 0:
        out += a * math.log(a / b)
    if a < 1:
        out += (1 - a) * math.log((1 - a) / (1 - b))
    return out


def breach_information(p: float, *, weight: float, effect: Effect) -> float:
    """The canary breach e-process's expected growth (nats) per group member served by either side, when the
    candidate is at the breach effect and production's rate is p: approvals and declines each move it by the
    divergence of their allocation from `weight`."""
    h = float(effect.rate(p))
    q1, q0 = (float(q) for q in allocation_probabilities(p, weight=weight, effect=effect))
    approvals = weight * h + (1 - weight) * p
    return approvals * bernoulli_kl(q1, weight) + (1 - approvals) * bernoulli_kl(q0, weight)


def pass_information(p: float, *, weight: float, effect: Effect) -> float:
    """The canary pass e-process's expected growth (nats) per group member when the candidate is as good as
    production (rate p on both sides): each approval moves it by KL(w || q1*)."""
    r = effect.size
    bound = weight * r / (weight * r + 1 - weight)
    return p * bernoulli_kl(weight, bound)


def wald_expected_sample_size(p0: float, p1: float, *, alpha: float, beta: float) -> float:
    """Wald's approximation of E[N] under H1 for the SPRT of p0 against p1 with p0 known (the oracle yardstick)."""
    upper, lower = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    return ((1 - beta) * upper + beta * lower) / bernoulli_kl(p1, p0)
