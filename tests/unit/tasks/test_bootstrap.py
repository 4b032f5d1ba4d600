import json

import numpy as np
import pandas as pd
import pytest

from tasks.bootstrap import (
    CI_UNDEFINED,
    MISSING_ATTRIBUTE,
    NO_ROWS,
    NOT_BINARY,
    UNDEFINED_RATE,
    attribute_name,
    attribute_rng,
    bootstrap_groups,
    build_cells,
    check_attributes,
    group_labels,
    metric,
    percentile_ci,
)

N_BOOT = 4000
LEVEL = 0.95


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Three groups with different approval behaviour and continuous scores."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = (rng.uniform(size=n) < np.where(group == "a", 0.7, 0.55)).astype(int)
    proba = np.clip(0.35 * y + rng.uniform(0, 0.65, n) + np.where(group == "c", -0.1, 0.0), 0, 1)
    return pd.DataFrame({"group": group, "y": y, "proba": proba, "decision": (proba >= 0.5).astype(int)})


def _row_stats(df: pd.DataFrame, index: np.ndarray) -> dict[str, np.ndarray]:
    """The audited figures of each resample (rows `index[b]`), by plain masking: the independent computation."""
    g, y, d, p = (df[c].to_numpy()[index] for c in ("group", "y", "decision", "proba"))
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = {}
        for name in ("a", "b", "c"):
            m = g == name
            stats[name] = {
                "selection_rate": (d * m).sum(1) / m.sum(1),
                "tpr": (d * m * y).sum(1) / (m * y).sum(1),
                "fpr": (d * m * (1 - y)).sum(1) / (m * (1 - y)).sum(1),
                "brier": ((p - y) ** 2 * m).sum(1) / m.sum(1),
            }
        out = {f"{r}[a]": stats["a"][r] for r in ("selection_rate", "tpr", "fpr", "brier")}
        rate = {r: np.stack([s[r] for s in stats.values()]) for r in ("selection_rate", "tpr", "fpr")}
        gap = {r: v.max(0) - v.min(0) for r, v in rate.items()}
        out["demographic_parity_difference"] = gap["selection_rate"]
        out["demographic_parity_ratio"] = rate["selection_rate"].min(0) / rate["selection_rate"].max(0)
        out["equalized_odds_difference"] = np.maximum(gap["tpr"], gap["fpr"])
    return out


def _point(df: pd.DataFrame) -> dict[str, float]:
    return {k: float(v[0]) for k, v in _row_stats(df, np.arange(len(df))[None, :]).items()}


def _engine(df: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, tuple[float, np.ndarray]]:
    boot = bootstrap_groups(
        df.group,
        df.y.to_numpy(),
        decision=df.decision.to_numpy(),
        proba=df.proba.to_numpy(),
        n_boot=n_boot,
        min_group_size=1,
        rng=np.random.default_rng(seed),
    )
    a = boot.groups.index("a")
    out = {f"{r}[a]": (boot.point[r][a], boot.draws[r][:, a]) for r in ("selection_rate", "tpr", "fpr", "brier")}
    for name in ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference"):
        out[name] = (boot.summary_point[name], boot.summary_draws[name])
    return out


@pytest.fixture(scope="module")
def naive_bootstrap():
    """Plain row bootstrap: resample the rows themselves and recompute every figure with pandas."""
    df = _frame(300, seed=1)
    index = np.random.default_rng(99).integers(0, len(df), (N_BOOT, len(df)))
    return df, pd.DataFrame(_row_stats(df, index))


def test_point_values_equal_a_plain_computation():
    df = _frame(2000, seed=0)
    expected = _point(df)
    for name, (value, _) in _engine(df, n_boot=10, seed=0).items():
        assert value == pytest.approx(expected[name], rel=1e-12), name


@pytest.mark.parametrize(
    "name",
    [
        "selection_rate[a]",
        "tpr[a]",
        "fpr[a]",
        "brier[a]",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
    ],
)
def test_multinomial_bootstrap_matches_a_row_bootstrap(naive_bootstrap, name):
    """Same distribution: bootstrap SDs within 12 % and CI bounds within 0.35 SD.

    With 4000 resamples each, the Monte Carlo SE of an SD is about 1.1 % and of a 2.5 % quantile about
    0.06 SD per method, so these limits are about 5 standard errors of the difference.
    """
    df, naive = naive_bootstrap
    value, draws = _engine(df, n_boot=N_BOOT, seed=7)[name]
    ours_sd, naive_sd = np.nanstd(draws), naive[name].std()
    assert ours_sd == pytest.approx(naive_sd, rel=0.12)
    ours = np.nanquantile(draws, [0.025, 0.975])
    theirs = naive[name].quantile([0.025, 0.975]).to_numpy()
    assert np.abs(ours - theirs).max() < 0.35 * naive_sd
    assert value == pytest.approx(_point(df)[name], rel=1e-12)


def test_brier_bins_approximate_a_row_bootstrap_when_cells_are_large():
    """2000 rows in two groups: every cell has far more rows than bins, so the binning is in play."""
    rng = np.random.default_rng(5)
    n = 2000
    group = rng.choice(["a", "b"], n)
    y = rng.integers(0, 2, n)
    proba = rng.beta(2, 2, n)
    decision = (proba >= 0.5).astype(int)
    cells = build_cells(group, y, decision=decision, proba=proba)
    assert len(cells.counts) == 2 * 2 * 2 * 64  # each of the 8 cells (about 250 rows) split into 64 bins
    boot = bootstrap_groups(
        group, y, decision=decision, proba=proba, n_boot=N_BOOT, min_group_size=1, rng=np.random.default_rng(1)
    )
    sq = (proba - y) ** 2
    in_a = group == "a"
    index = rng.integers(0, n, (N_BOOT, n))
    naive = (sq[index] * in_a[index]).sum(axis=1) / in_a[index].sum(axis=1)
    ours = boot.draws["brier"][:, boot.groups.index("a")]
    assert boot.point["brier"][0] == pytest.approx(sq[in_a].mean(), rel=1e-12)
    assert ours.std() == pytest.approx(naive.std(), rel=0.12)
    assert np.abs(np.quantile(ours, [0.025, 0.975]) - np.quantile(naive, [0.025, 0.975])).max() < 0.35 * naive.std()


def test_cells_are_exact_when_no_cell_exceeds_the_bins():
    df = _frame(200, seed=3)
    cells = build_cells(df.group, df.y.to_numpy(), decision=df.decision.to_numpy(), proba=df.proba.to_numpy())
    assert cells.n == 200
    assert len(cells.counts) == 200 - df.duplicated(["group", "y", "decision", "proba"]).sum()


def test_base_rate_cells_have_no_decision():
    boot = bootstrap_groups(
        ["x", "x", "y", "y", "y"], np.array([1, 0, 1, 1, 0]), n_boot=50, min_group_size=1, rng=np.random.default_rng(0)
    )
    assert boot.point["base_rate"].tolist() == [0.5, pytest.approx(2 / 3)]
    assert boot.summary_point["base_rate_ratio"] == pytest.approx(0.75)
    assert "tpr" not in boot.point


def test_a_group_without_positives_has_undefined_tpr_everywhere():
    group = np.array(["a"] * 40 + ["b"] * 40)
    y = np.array([0] * 40 + [0, 1] * 20)
    decision = np.tile([0, 1], 40)
    boot = bootstrap_groups(group, y, decision=decision, n_boot=200, min_group_size=30, rng=np.random.default_rng(0))
    assert np.isnan(boot.point["tpr"][0]) and np.isnan(boot.draws["tpr"][:, 0]).all()
    assert np.isnan(boot.summary_point["equal_opportunity_difference"])
    got = metric(boot.point["tpr"][0], boot.draws["tpr"][:, 0], ci_level=LEVEL, note=UNDEFINED_RATE["tpr"])
    assert got == {"value": None, "ci": None, "note": UNDEFINED_RATE["tpr"]}
    json.dumps(got, allow_nan=False)


@pytest.mark.parametrize(("undefined", "ci_is_null"), [(0.4, False), (0.5, False), (0.6, True)])
def test_ci_ignores_undefined_draws_and_is_null_past_half(undefined, ci_is_null):
    draws = np.linspace(0, 1, 1000)
    draws[: int(undefined * 1000)] = np.nan
    got = metric(0.5, draws, ci_level=LEVEL, note="n/a")
    json.dumps(got, allow_nan=False)
    if ci_is_null:
        assert got == {"value": 0.5, "ci": None, "note": CI_UNDEFINED.format(share=undefined)}
    else:
        assert got["ci"] == pytest.approx(np.quantile(draws[~np.isnan(draws)], [0.025, 0.975]).tolist())
        assert percentile_ci(draws, ci_level=LEVEL)[2] == pytest.approx(undefined)


def test_small_groups_are_left_out_of_summaries():
    group = np.array(["big1"] * 50 + ["big2"] * 50 + ["tiny"] * 5)
    y = np.array([1, 0] * 50 + [1] * 5)
    decision = np.array([1] * 50 + [0, 1] * 25 + [0] * 5)
    boot = bootstrap_groups(group, y, decision=decision, n_boot=100, min_group_size=30, rng=np.random.default_rng(0))
    assert boot.small.tolist() == [False, False, True]
    assert boot.summary_point["demographic_parity_difference"] == pytest.approx(0.5)  # not 1.0 with "tiny"


def test_draws_are_reproducible_from_the_seed():
    df = _frame(500, seed=2)
    first, second = (_engine(df, n_boot=100, seed=11) for _ in range(2))
    for name, (_, draws) in first.items():
        np.testing.assert_array_equal(draws, second[name][1])
    a, b = attribute_rng(0, "sex").random(3), attribute_rng(0, "age_group").random(3)
    assert not np.array_equal(a, b)


def test_group_labels_and_names_of_intersections():
    frame = pd.DataFrame({"sex": ["female", "male", None], "age_group": ["under 25", "25 and over", "under 25"]})
    assert attribute_name(["sex", "age_group"]) == "sex \u00d7 age_group"
    assert group_labels(frame, ["sex", "age_group"]).tolist() == [
        "female | under 25",
        "male | 25 and over",
        "(missing) | under 25",
    ]


def test_missing_attribute_is_named():
    with pytest.raises(KeyError, match="race") as caught:
        check_attributes(["sex", "age_group"], [["sex"], ["race"], ["sex", "age_group"]])
    assert MISSING_ATTRIBUTE.format(names="race") in str(caught.value)


@pytest.mark.parametrize(
    ("y", "decision", "message"),
    [
        (np.array([0, 1, 2]), None, NOT_BINARY.format(what="labels")),
        (np.array([0, 1, 1]), np.array([0, 1, -1]), NOT_BINARY.format(what="decisions")),
        (np.array([], dtype=int), None, NO_ROWS),
    ],
)
def test_bad_inputs_are_refused(y, decision, message):
    with pytest.raises(ValueError) as caught:
        build_cells(["a"] * len(y), y, decision=decision)
    assert str(caught.value) == message
