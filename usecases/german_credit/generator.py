"""German credit's generator plug-in: synthetic applications in the decoded schema, with injectable bias and drift.

Generative model (all constants below were estimated once from data/german_credit.csv and hard-coded):

* Categorical columns and small integer columns are drawn independently from the German marginals.
  ``sex`` is drawn first and ``personal_status`` given ``sex`` (as in the data, every woman is
  "divorced/separated/married": the file has no A95 rows). ``age`` and ``foreign_worker`` are independent of
  everything else, so at ``bias=0`` the good-rate is the same in every sensitive group.
* ``duration_months`` and ``credit_amount`` come from a Gaussian copula (normal-scores correlation 0.62)
  with the empirical duration distribution and interpolated credit-amount quantiles as marginals.
* The label follows a known logistic model of non-sensitive features only::

      log-odds(good) = INTERCEPT + sum of LABEL_WEIGHTS[column][value]
                       + DURATION_WEIGHT * (duration_months - 21) / 12
                       + AMOUNT_WEIGHT * ln(credit_amount / 2300)
                       + INSTALLMENT_WEIGHT * (installment_rate - 3)
                       - BIAS_LOGIT_SCALE * bias * [row is in bias_group]

  so ``bias`` is pure discrimination: it lowers the group's log-odds by up to 3 with features held fixed.
  The same uniforms decide every label, so rows outside ``bias_group`` keep their labels when only
  ``bias`` changes.
* ``shortcut`` in [0, 1] is a spurious pattern of one snapshot: the log-odds of "good" drop by up to 3
  for applicants borrowing for education (5 % of them, spread evenly over every sensitive group, so a
  model that learns the pattern passes every offline fairness check).
* ``proxy`` in [0, 1] is live traffic where that pattern turns into an age proxy: a student-loan campaign
  brings that share of the under-25 applicants to borrow for education. Together they make the rollout
  demo's unfair canary: a model trained with ``shortcut`` declines the young far more often than
  production does on ``proxy`` traffic, whose labels do not depend on the purpose that way at all.
  ``proxy`` draws from its own generator, so the rows of the other arguments never change.
* ``drift`` in [0, 1] is covariate shift (the label model is unchanged): durations x (1 + 0.5 drift),
  credit amounts x (1 + 0.6 drift), ages pulled towards 19 by 30 % x drift, and the category mix of
  checking_status, purpose and savings moved linearly towards DRIFT_WEIGHTS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit, ndtr

from tasks.demo.resample import Scenario
from usecases.german_credit.dataset import GERMAN_COLUMNS

SensitiveAttribute = Literal["sex", "age", "foreign_worker"]
SENSITIVE_GROUPS: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "age": ("under 25", "25 and over"),  # the schema's age grouping
    "foreign_worker": ("yes", "no"),
}
AGE_GROUP_THRESHOLD = 25

ERR_N = "n must be a positive integer, got {n!r}"
ERR_BIAS = "bias must be a number in [0, 1], got {bias!r}"
ERR_DRIFT = "drift must be a number in [0, 1], got {drift!r}"
ERR_SCENARIO = "{name} must be a number in [0, 1], got {value!r}"
SHORTCUT_LOGIT_SCALE = 3.0
SHORTCUT_PURPOSE = "education"  # the key of CATEGORY_WEIGHTS["purpose"] the shortcut and the proxy are about
ERR_ATTRIBUTE = "bias_attribute must be one of {allowed}, got {attribute!r}"
ERR_GROUP = "bias_group for {attribute!r} must be one of {allowed}, got {group!r}"

# Counts out of 1000 in data/german_credit.csv, used as sampling weights.
CATEGORY_WEIGHTS: dict[str, dict[str, int]] = {
    "checking_status": {"< 0 DM": 274, "0-200 DM": 269, ">= 200 DM": 63, "no checking account": 394},
    "credit_history": {
        "no credits or all paid": 40, "all paid at this bank": 49, "existing paid duly": 530,
        "past delays": 88, "critical account": 293,
    },
    "purpose": {
        "new car": 234, "used car": 103, "furniture/equipment": 181, "radio/television": 280,
        "domestic appliances": 12, "repairs": 22, "education": 50, "vacation": 0, "retraining": 9,
        "business": 97, "other": 12,
    },
    "savings": {
        "< 100 DM": 603, "100-500 DM": 103, "500-1000 DM": 63, ">= 1000 DM": 48, "unknown or none": 183,
    },
    "employment_since": {
        "unemployed": 62, "< 1 year": 172, "1-4 years": 339, "4-7 years": 174, ">= 7 years": 253,
    },
    "sex": {"female": 310, "male": 690},
    "other_debtors": {"none": 907, "co-applicant": 41, "guarantor": 52},
    "property": {
        "real estate": 282, "savings agreement or life insurance": 232, "car or other": 332,
        "unknown or none": 154,
    },
    "other_installment_plans": {"bank": 139, "stores": 47, "none": 814},
    "housing": {"rent": 179, "own": 713, "for free": 108},
    "job": {"unskilled non-resident": 22, "unskilled resident": 200, "skilled": 630, "highly qualified": 148},
    "telephone": {"yes": 404, "no": 596},
    "foreign_worker": {"yes": 963, "no": 37},
}  # fmt: skip
PERSONAL_STATUS_WEIGHTS: dict[str, dict[str, int]] = {
    "female": {"divorced/separated/married": 310},
    "male": {"single": 548, "married/widowed": 92, "divorced/separated": 50},
}
PERSONAL_STATUS_VALUES = ["divorced/separated", "divorced/separated/married", "married/widowed", "single"]
INTEGER_WEIGHTS: dict[str, dict[int, int]] = {
    "installment_rate": {1: 136, 2: 231, 3: 157, 4: 476},
    "residence_since": {1: 130, 2: 308, 3: 149, 4: 413},
    "existing_credits": {1: 633, 2: 333, 3: 28, 4: 6},
    "people_liable": {1: 845, 2: 155},
}
DURATION_WEIGHTS: dict[int, int] = {
    4: 6, 5: 1, 6: 75, 7: 5, 8: 7, 9: 49, 10: 28, 11: 9, 12: 179, 13: 4, 14: 4, 15: 64, 16: 2, 18: 113,
    20: 8, 21: 30, 22: 2, 24: 184, 26: 1, 27: 13, 28: 3, 30: 40, 33: 3, 36: 83, 39: 5, 40: 1, 42: 11,
    45: 5, 47: 1, 48: 48, 54: 2, 60: 13, 72: 1,
}  # fmt: skip
# Percentiles of credit_amount (DM) and age (years), interpolated between (log-linearly for amounts).
AMOUNT_QUANTILES: dict[float, int] = {
    0: 250, 1: 426, 5: 709, 10: 932, 20: 1262, 30: 1479, 40: 1907, 50: 2320, 60: 2852, 70: 3590,
    80: 4720, 90: 7179, 95: 9163, 99: 14180, 100: 18424,
}  # fmt: skip
AGE_QUANTILES: dict[float, float] = {
    0: 19, 1: 20, 5: 22, 10: 23, 20: 26, 30: 28, 40: 30, 50: 33, 60: 36, 70: 39, 80: 45, 90: 52,
    95: 60, 99: 67, 100: 75,
}  # fmt: skip
DURATION_AMOUNT_CORRELATION = 0.62  # normal-scores correlation in the German data

# Label model: log-odds of "good", per value (the first value of each column is the reference, 0).
# Rounded from a logistic regression on the German data, re-expressed relative to the reference level.
LABEL_WEIGHTS: dict[str, dict[str, float]] = {
    "checking_status": {"< 0 DM": 0.0, "0-200 DM": 0.3, ">= 200 DM": 1.0, "no checking account": 1.6},
    "credit_history": {
        "no credits or all paid": 0.0, "all paid at this bank": 0.0, "existing paid duly": 0.6,
        "past delays": 0.8, "critical account": 1.3,
    },
    "purpose": {
        "new car": 0.0, "used car": 1.4, "furniture/equipment": 0.6, "radio/television": 0.8,
        "domestic appliances": 0.5, "repairs": 0.2, "education": 0.0, "vacation": 0.5, "retraining": 1.2,
        "business": 0.6, "other": 1.1,
    },
    "savings": {
        "< 100 DM": 0.0, "100-500 DM": 0.3, "500-1000 DM": 0.5, ">= 1000 DM": 1.1, "unknown or none": 0.9,
    },
    "employment_since": {
        "unemployed": 0.0, "< 1 year": -0.2, "1-4 years": 0.0, "4-7 years": 0.65, ">= 7 years": 0.2,
    },
    "other_debtors": {"none": 0.0, "co-applicant": -0.3, "guarantor": 0.9},
    "property": {
        "real estate": 0.3, "savings agreement or life insurance": 0.0, "car or other": 0.0,
        "unknown or none": -0.3,
    },
    "other_installment_plans": {"none": 0.0, "bank": -0.55, "stores": -0.45},
    "housing": {"own": 0.0, "rent": -0.5, "for free": 0.2},
}  # fmt: skip
DURATION_WEIGHT = -0.45  # per 12 months above 21
AMOUNT_WEIGHT = -0.2  # per unit of ln(amount / 2300 DM)
INSTALLMENT_WEIGHT = -0.22  # per band above 3
INTERCEPT = -1.32  # calibrated so that about 70 % are "good" at drift=0, bias=0
BIAS_LOGIT_SCALE = 3.0

# Where the category mix moves at drift=1: riskier accounts, more car and business loans, fewer savings.
DRIFT_WEIGHTS: dict[str, dict[str, int]] = {
    "checking_status": {"< 0 DM": 450, "0-200 DM": 350, ">= 200 DM": 50, "no checking account": 150},
    "purpose": {
        "new car": 350, "used car": 50, "furniture/equipment": 100, "radio/television": 150,
        "domestic appliances": 10, "repairs": 30, "education": 80, "vacation": 0, "retraining": 10,
        "business": 200, "other": 20,
    },
    "savings": {
        "< 100 DM": 800, "100-500 DM": 80, "500-1000 DM": 30, ">= 1000 DM": 10, "unknown or none": 80,
    },
}  # fmt: skip
DRIFT_DURATION_SCALE = 0.5
DRIFT_AMOUNT_SCALE = 0.6
DRIFT_AGE_SHRINK = 0.3
MIN_AGE, MAX_DURATION = 19, 72

# Values of every text column, in code order.
TEXT_VALUES: dict[str, list[str]] = {
    **{column: list(weights) for column, weights in CATEGORY_WEIGHTS.items()},
    "personal_status": PERSONAL_STATUS_VALUES,
    "credit_risk": ["good", "bad"],
}


def _probabilities(weights: Mapping[Any, int], drift_weights: Mapping[Any, int] | None, drift: float) -> np.ndarray:
    """Normalised weights, moved linearly towards ``drift_weights`` by ``drift``."""
    p = np.array(list(weights.values()), dtype=float)
    p /= p.sum()
    if drift_weights is not None:
        q = np.array([drift_weights[key] for key in weights], dtype=float)
        p = (1 - drift) * p + drift * q / q.sum()
    return p


def _inverse_cdf(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of the category whose cumulative-probability interval contains each uniform."""
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(p) - 1)


def _check_arguments(n: int, bias: float, bias_attribute: str, bias_group: str, drift: float) -> None:
    """Raise ValueError with a user-facing message for any invalid argument."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(ERR_N.format(n=n))
    if not 0.0 <= bias <= 1.0:
        raise ValueError(ERR_BIAS.format(bias=bias))
    if not 0.0 <= drift <= 1.0:
        raise ValueError(ERR_DRIFT.format(drift=drift))
    if bias_attribute not in SENSITIVE_GROUPS:
        allowed = list(get_args(SensitiveAttribute))
        raise ValueError(ERR_ATTRIBUTE.format(allowed=allowed, attribute=bias_attribute))
    if bias_group not in SENSITIVE_GROUPS[bias_attribute]:
        allowed = list(SENSITIVE_GROUPS[bias_attribute])
        raise ValueError(ERR_GROUP.format(attribute=bias_attribute, allowed=allowed, group=bias_group))


def _text(values: list[str], codes: np.ndarray) -> pd.Series:
    """A ``str`` column from category codes, built in Arrow to avoid a million Python string objects."""
    dictionary = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), pa.array(values))
    return pd.Series(pd.array(dictionary.cast(pa.large_string()), dtype=str))


def _draw_categories(rng: np.random.Generator, n: int, drift: float) -> dict[str, np.ndarray]:
    """Category codes (indices into the keys of each weight table) of every categorical column."""
    codes = {
        column: _inverse_cdf(rng.random(n), _probabilities(weights, DRIFT_WEIGHTS.get(column), drift))
        for column, weights in CATEGORY_WEIGHTS.items()
    }
    status_u = rng.random(n)
    personal_status = np.empty(n, dtype=np.int64)
    for sex_code, sex in enumerate(CATEGORY_WEIGHTS["sex"]):
        weights = PERSONAL_STATUS_WEIGHTS[sex]
        rows = codes["sex"] == sex_code
        index = np.array([PERSONAL_STATUS_VALUES.index(value) for value in weights])
        personal_status[rows] = index[_inverse_cdf(status_u[rows], _probabilities(weights, None, 0.0))]
    codes["personal_status"] = personal_status
    return codes


def _draw_numbers(rng: np.random.Generator, n: int, drift: float) -> dict[str, np.ndarray]:
    """Every integer column, as int64 arrays."""
    numbers = {
        column: np.array(list(weights), dtype=np.int64)[_inverse_cdf(rng.random(n), _probabilities(weights, None, 0.0))]
        for column, weights in INTEGER_WEIGHTS.items()
    }
    z_duration = rng.standard_normal(n)
    rho = DURATION_AMOUNT_CORRELATION
    z_amount = rho * z_duration + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    durations = np.array(list(DURATION_WEIGHTS), dtype=np.int64)
    duration = durations[_inverse_cdf(ndtr(z_duration), _probabilities(DURATION_WEIGHTS, None, 0.0))]
    duration = np.rint(duration * (1 + DRIFT_DURATION_SCALE * drift))
    numbers["duration_months"] = np.minimum(duration, MAX_DURATION).astype(np.int64)
    q = np.array(list(AMOUNT_QUANTILES), dtype=float) / 100
    amount = np.exp(np.interp(ndtr(z_amount), q, np.log(list(AMOUNT_QUANTILES.values()))))
    numbers["credit_amount"] = np.rint(amount * (1 + DRIFT_AMOUNT_SCALE * drift)).astype(np.int64)
    q = np.array(list(AGE_QUANTILES), dtype=float) / 100
    age = np.rint(np.interp(rng.random(n), q, list(AGE_QUANTILES.values())))
    numbers["age"] = np.rint(MIN_AGE + (age - MIN_AGE) * (1 - DRIFT_AGE_SHRINK * drift)).astype(np.int64)
    return numbers


def _log_odds(codes: dict[str, np.ndarray], numbers: dict[str, np.ndarray]) -> np.ndarray:
    """Log-odds of "good" under the label model, before any bias."""
    logit = np.full(len(numbers["age"]), INTERCEPT)
    for column, weights in LABEL_WEIGHTS.items():
        logit += np.array([weights[value] for value in CATEGORY_WEIGHTS[column]])[codes[column]]
    logit += DURATION_WEIGHT * (numbers["duration_months"] - 21) / 12
    logit += AMOUNT_WEIGHT * np.log(numbers["credit_amount"] / 2300)
    logit += INSTALLMENT_WEIGHT * (numbers["installment_rate"] - 3)
    return logit


def _in_group(codes: dict[str, np.ndarray], numbers: dict[str, np.ndarray], attribute: str, group: str) -> np.ndarray:
    """Boolean mask of the rows whose sensitive ``attribute`` is ``group``."""
    if attribute == "age":
        young = numbers["age"] < AGE_GROUP_THRESHOLD
        return young if group == "under 25" else ~young
    return codes[attribute] == list(CATEGORY_WEIGHTS[attribute]).index(group)


def generate_applications(
    n: int,
    *,
    seed: int = 0,
    bias: float = 0.0,
    bias_attribute: SensitiveAttribute = "sex",
    bias_group: str = "female",
    drift: float = 0.0,
    shortcut: float = 0.0,
    proxy: float = 0.0,
) -> pd.DataFrame:
    """Draw ``n`` synthetic applications in the decoded German schema (see the module docstring).

    Args:
        n: number of rows; applicant ids run "S0000001", "S0000002", ...
        seed: seed of the generator; the same arguments always give the same frame.
        bias: 0..1, lowers the log-odds of "good" by ``3 * bias`` for rows in ``bias_group``.
        bias_attribute: sensitive attribute that defines the disadvantaged group.
        bias_group: value of that attribute (for age: "under 25" or "25 and over").
        drift: 0..1, covariate shift away from the reference distribution (0 = reference).
        shortcut: 0..1, lowers the log-odds of "good" by ``3 * shortcut`` for applicants borrowing for education.
        proxy: 0..1, that share of under-25 applicants are re-drawn to borrow for education.
    """
    _check_arguments(n, bias, bias_attribute, bias_group, drift)
    for name, value in (("shortcut", shortcut), ("proxy", proxy)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(ERR_SCENARIO.format(name=name, value=value))
    rng = np.random.default_rng(seed)
    codes = _draw_categories(rng, n, drift)
    numbers = _draw_numbers(rng, n, drift)
    education = list(CATEGORY_WEIGHTS["purpose"]).index(SHORTCUT_PURPOSE)
    if proxy:
        young = numbers["age"] < AGE_GROUP_THRESHOLD
        redraw = young & (np.random.default_rng([seed, 1]).random(n) < proxy)
        codes["purpose"] = np.where(redraw, education, codes["purpose"])
    logit = _log_odds(codes, numbers) - BIAS_LOGIT_SCALE * bias * _in_group(codes, numbers, bias_attribute, bias_group)
    logit -= SHORTCUT_LOGIT_SCALE * shortcut * (codes["purpose"] == education)
    codes["credit_risk"] = (rng.random(n) >= expit(logit)).astype(np.int64)  # 0 = good, 1 = bad

    columns: dict[str, pd.Series] = {"applicant_id": pd.Series([f"S{i:07d}" for i in range(1, n + 1)], dtype=str)}
    for column in GERMAN_COLUMNS[1:]:
        if column in numbers:
            columns[column] = pd.Series(numbers[column])
        else:
            columns[column] = _text(TEXT_VALUES[column], codes[column])
    return pd.DataFrame(columns)


PLUGIN_SHIFT = "the German generator plants {what} as purpose = {value!r} only, got {column} = {got!r}"


def generate(n: int, *, seed: int, scenario: Scenario) -> pd.DataFrame:
    """This use case's generator plug-in (usecase.yaml `generator`): Steward's scenario in this model's knobs.

    The shortcut's strength is `shortcut` (how far the log-odds drop), the campaign's share is `proxy` (the
    share of under-25 applicants re-drawn to borrow for education), drift and bias map one to one. Every
    column is drawn independently already, so `independent` needs nothing.
    """
    for what, shift in (("the shortcut", scenario.shortcut), ("the campaign", scenario.campaign)):
        if shift is not None and (shift.column, shift.value) != ("purpose", SHORTCUT_PURPOSE):
            raise ValueError(
                PLUGIN_SHIFT.format(what=what, value=SHORTCUT_PURPOSE, column=shift.column, got=shift.value)
            )
    (attribute, group), *_ = list(scenario.bias_group.items()) or [("sex", "female")]
    attribute = "age" if attribute == "age_group" else attribute
    return generate_applications(
        n,
        seed=seed,
        bias=scenario.bias,
        bias_attribute=cast(SensitiveAttribute, attribute),
        bias_group=str(group),
        drift=scenario.drift,
        shortcut=scenario.shortcut.strength if scenario.shortcut else 0.0,
        proxy=scenario.campaign.share if scenario.campaign else 0.0,
    )
