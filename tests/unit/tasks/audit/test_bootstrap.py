import json
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest

from tasks.audit.bootstrap import (
    CI_UNDEFINED,
    MISSING_ATTRIBUTE,
    NO_ROWS,
    NOT_BINARY,
    UNDEFINED_RATE,
    _a_row_of_each,
    as_categories,
    as_strings,
    attribute_name,
    attribute_rng,
    audited,
    bootstrap_groups,
    build_cells,
    check_attributes,
    error_order,
    group_labels,
    metric,
    percentile_ci,
    summary_note,
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


# Hand-counted confusion tables: every rate and summary below is worked out from the counts.


def _table(counts: dict[str, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of each group from its (TP, FN, FP, TN) counts: (groups, y, decision)."""
    groups, y, decision = [], [], []
    for name, (tp, fn, fp, tn) in counts.items():
        for label, decided, count in ((1, 1, tp), (1, 0, fn), (0, 1, fp), (0, 0, tn)):
            groups += [name] * count
            y += [label] * count
            decision += [decided] * count
    return np.array(groups, dtype=object), np.array(y), np.array(decision)


HAND = {"a": (3, 1, 2, 4), "b": (1, 3, 0, 2)}


def test_every_rate_of_a_hand_counted_table():
    groups, y, decision = _table({"b": HAND["b"], "a": HAND["a"]})
    boot = bootstrap_groups(groups, y, decision=decision, n_boot=20, min_group_size=1, rng=np.random.default_rng(0))
    assert boot.groups == ("a", "b")
    expected = {
        "count": [10, 6],
        "positives": [4, 4],
        "selection_rate": [5 / 10, 1 / 6],
        "tpr": [3 / 4, 1 / 4],
        "fpr": [2 / 6, 0 / 2],
        "fnr": [1 / 4, 3 / 4],
        "precision": [3 / 5, 1 / 1],
    }
    assert set(boot.point) == set(expected)
    for rate, values in expected.items():
        assert boot.point[rate].tolist() == pytest.approx(values), rate
    assert boot.summary_point == pytest.approx(
        {
            "demographic_parity_difference": 1 / 2 - 1 / 6,
            "demographic_parity_ratio": (1 / 6) / (1 / 2),
            "equalized_odds_difference": 1 / 2,  # TPR gap 0.5 beats FPR gap 1/3
            "equal_opportunity_difference": 1 / 2,
            "predictive_parity_difference": 1 - 3 / 5,
        }
    )
    # every resample draws all 16 rows again
    assert (boot.draws["count"].sum(axis=1) == 16).all()
    assert boot.draws["count"].shape == (20, 2)


def test_equalized_odds_takes_the_fpr_gap_when_it_is_larger():
    groups, y, decision = _table({"a": HAND["a"], "b": (3, 1, 0, 2)})
    boot = bootstrap_groups(groups, y, decision=decision, n_boot=20, min_group_size=1, rng=np.random.default_rng(0))
    assert boot.summary_point["equal_opportunity_difference"] == 0.0
    assert boot.summary_point["equalized_odds_difference"] == pytest.approx(2 / 6)
    tpr, fpr = boot.draws["tpr"], boot.draws["fpr"]
    by_hand = np.maximum(np.abs(tpr[:, 0] - tpr[:, 1]), np.abs(fpr[:, 0] - fpr[:, 1]))
    np.testing.assert_allclose(boot.summary_draws["equalized_odds_difference"], by_hand)


def test_brier_score_of_each_group_is_its_mean_squared_error():
    groups, y, decision = _table(HAND)
    proba = np.linspace(0.05, 0.95, len(y))
    boot = bootstrap_groups(
        groups, y, decision=decision, proba=proba, n_boot=20, min_group_size=1, rng=np.random.default_rng(0)
    )
    sq = (proba - y) ** 2
    assert boot.point["brier"].tolist() == pytest.approx([sq[groups == "a"].mean(), sq[groups == "b"].mean()])


def test_cells_split_into_equal_count_bins_of_squared_error():
    """Four rows of one cell in 2 bins: the two smallest squared errors, then the two largest; three rows of
    another cell: two, then one."""
    groups = ["g"] * 7
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    decision = np.array([1, 1, 1, 1, 0, 0, 0])
    proba = np.array([0.5, 0.9, 0.6, 0.8, 0.1, 0.3, 0.2])
    cells = build_cells(groups, y, decision=decision, proba=proba, bins=2)
    assert cells.groups == ("g",)
    assert cells.counts.tolist() == [2, 1, 2, 2]
    assert cells.y.tolist() == [0, 0, 1, 1]
    assert cells.decision.tolist() == [0, 0, 1, 1]
    assert cells.group.tolist() == [0, 0, 0, 0]
    assert cells.sq_error.tolist() == pytest.approx([(0.01 + 0.04) / 2, 0.09, (0.01 + 0.04) / 2, (0.16 + 0.25) / 2])


def test_cells_without_scores_or_decisions():
    cells = build_cells(["b", "a", "b", "b"], np.array([1, 0, 0, 1]))
    assert cells.groups == ("a", "b")
    assert (cells.group.tolist(), cells.y.tolist(), cells.counts.tolist()) == ([0, 1, 1], [0, 0, 1], [1, 1, 2])
    assert cells.decision is None and cells.sq_error is None
    cells = build_cells(["b", "a", "b", "b"], np.array([1, 0, 0, 1]), decision=np.array([1, 1, 0, 0]))
    assert cells.decision.tolist() == [1, 0, 0, 1]
    assert cells.y.tolist() == [0, 0, 1, 1] and cells.counts.tolist() == [1, 1, 1, 1]
    assert cells.sq_error is None


def test_scores_without_decisions_are_refused():
    with pytest.raises(ValueError) as caught:
        build_cells(["a"], np.array([1]), proba=np.array([0.3]))
    assert str(caught.value) == "the Brier score needs decisions too: pass decision with proba"


@pytest.mark.parametrize(("rows", "small"), [(29, True), (30, False), (31, False)])
def test_minimum_group_size_at_its_boundary(rows, small):
    """A group of exactly min_group_size rows is in the summaries; one row fewer and it is left out."""
    groups = np.array(["big"] * 40 + ["edge"] * rows, dtype=object)
    y = np.array([1, 0] * 20 + [1] * rows)
    decision = np.array([1] * 40 + [0] * rows)
    boot = bootstrap_groups(groups, y, decision=decision, n_boot=50, min_group_size=30, rng=np.random.default_rng(0))
    assert boot.small.tolist() == [False, small]
    assert bool(np.isnan(boot.summary_point["demographic_parity_difference"])) is small
    if not small:
        assert boot.summary_point["demographic_parity_difference"] == 1.0


@pytest.mark.parametrize(
    "name", ["demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference"]
)
def test_summary_draws_leave_small_groups_out(name):
    groups = np.array(["big1"] * 50 + ["big2"] * 60 + ["tiny"] * 5, dtype=object)
    y = np.array([1, 0] * 55 + [1, 0, 1, 0, 1])
    rng = np.random.default_rng(3)
    decision = (rng.random(115) < np.r_[np.full(50, 0.7), np.full(60, 0.4), np.full(5, 0.0)]).astype(int)
    boot = bootstrap_groups(groups, y, decision=decision, n_boot=300, min_group_size=30, rng=np.random.default_rng(1))
    big = [0, 1]
    sel, tpr, fpr = (boot.draws[r][:, big] for r in ("selection_rate", "tpr", "fpr"))
    by_hand = {
        "demographic_parity_difference": sel.max(1) - sel.min(1),
        "demographic_parity_ratio": sel.min(1) / sel.max(1),
        "equalized_odds_difference": np.maximum(tpr.max(1) - tpr.min(1), fpr.max(1) - fpr.min(1)),
    }
    np.testing.assert_allclose(boot.summary_draws[name], by_hand[name])
    point_sel = boot.point["selection_rate"][big]
    if name == "demographic_parity_difference":
        assert boot.summary_point[name] == pytest.approx(point_sel.max() - point_sel.min())


def test_base_rate_summaries_by_hand():
    boot = bootstrap_groups(
        ["x"] * 4 + ["y"] * 5 + ["z"] * 2,
        np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 1]),  # x 3/4, y 1/5, z 2/2
        n_boot=30,
        min_group_size=3,
        rng=np.random.default_rng(0),
    )
    assert set(boot.summary_point) == {"base_rate_difference", "base_rate_ratio"}
    assert boot.small.tolist() == [False, False, True]
    assert boot.summary_point["base_rate_difference"] == pytest.approx(3 / 4 - 1 / 5)
    assert boot.summary_point["base_rate_ratio"] == pytest.approx((1 / 5) / (3 / 4))


def _notes(groups, y, decision, *, min_group_size):
    boot = bootstrap_groups(
        np.array(groups, dtype=object),
        np.array(y),
        decision=np.array(decision),
        n_boot=10,
        min_group_size=min_group_size,
        rng=np.random.default_rng(0),
    )
    return boot, {name: summary_note(name, boot, min_group_size=min_group_size) for name in boot.summary_point}


def test_summary_note_with_fewer_than_two_large_groups():
    boot, notes = _notes(["a"] * 5 + ["b"] * 2, [1, 0] * 3 + [1], [1] * 7, min_group_size=4)
    assert np.isnan(boot.summary_point["demographic_parity_difference"])
    assert boot.summary_draws["demographic_parity_ratio"].shape == (10,)
    assert np.isnan(boot.summary_draws["demographic_parity_ratio"]).all()
    assert set(notes.values()) == {"undefined: fewer than 2 groups with at least 4 rows"}


def test_summary_note_names_the_large_groups_whose_rate_is_undefined():
    """b and c have no positive labels, d (too small) neither: TPR is undefined for 'b', 'c' only."""
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 2
    y = [1, 0, 1, 0] + [0] * 10
    decision = [1, 1, 0, 0] * 3 + [1, 0]
    boot, notes = _notes(groups, y, decision, min_group_size=3)
    assert np.isnan(boot.summary_point["equal_opportunity_difference"])
    assert notes["equal_opportunity_difference"] == "undefined: tpr is undefined for group(s) 'b', 'c'"
    assert notes["equalized_odds_difference"] == "undefined: tpr is undefined for group(s) 'b', 'c'"


def test_summary_note_names_the_second_rate_when_the_first_is_defined():
    groups = ["a"] * 4 + ["b"] * 4
    y = [1, 0, 1, 0] + [1] * 4
    boot, notes = _notes(groups, y, [1, 1, 0, 0] * 2, min_group_size=3)
    assert np.isnan(boot.summary_point["equalized_odds_difference"])
    assert notes["equalized_odds_difference"] == "undefined: fpr is undefined for group(s) 'b'"


def test_summary_note_of_a_ratio_of_zeros():
    boot, notes = _notes(["a"] * 4 + ["b"] * 4, [1, 0] * 4, [0] * 8, min_group_size=3)
    assert np.isnan(boot.summary_point["demographic_parity_ratio"])
    assert boot.summary_point["demographic_parity_difference"] == 0.0
    assert notes["demographic_parity_ratio"] == "undefined: selection_rate is 0 in every group (0/0)"


def test_percentile_ci_at_another_level_and_with_nothing_defined():
    draws = np.arange(101.0)
    low, high, undefined = percentile_ci(draws, ci_level=0.9)
    assert (low, high, undefined) == (pytest.approx(5.0), pytest.approx(95.0), 0.0)
    low, high, undefined = percentile_ci(np.array([np.nan, np.inf]), ci_level=0.9)
    assert np.isnan(low) and np.isnan(high) and undefined == 1.0


def test_metric_of_a_defined_value():
    got = metric(0.25, np.arange(101.0) / 100, ci_level=0.8, note="n/a")
    assert got == {"value": 0.25, "ci": [pytest.approx(0.1), pytest.approx(0.9)]}
    assert type(got["value"]) is float
    got = metric(float("nan"), np.arange(101.0), ci_level=0.8, note="why")
    assert got == {"value": None, "ci": None, "note": "why"}
    got = metric(0.25, np.array([np.nan] * 3 + [0.1]), ci_level=0.8, note="n/a")
    assert got == {"value": 0.25, "ci": None, "note": "CI undefined: the value is undefined (0/0) in 75% of resamples"}


def test_every_missing_attribute_is_named_in_order():
    with pytest.raises(KeyError) as caught:
        check_attributes(["sex"], [["sex", "race"], ["age"]])
    assert caught.value.args[0] == (
        "sensitive attribute(s) age, race named in params.yaml data are not columns of the data"
    )
    check_attributes(["sex", "age"], [["sex"], ["sex", "age"]])


def test_audited_lists_attributes_then_intersections():
    assert audited(["sex", "age"], [("sex", "age")]) == [["sex"], ["age"], ["sex", "age"]]
    assert audited([], []) == []


def test_group_labels_of_one_column_with_numbers_and_missing_values():
    frame = pd.DataFrame({"band": [1.0, None, 2.5], "region": ["n", "s", None]})
    assert group_labels(frame, ["band"]).tolist() == ["1.0", "(missing)", "2.5"]
    assert group_labels(frame, ["region", "band"]).tolist() == ["n | 1.0", "s | (missing)", "(missing) | 2.5"]


def test_attribute_rng_depends_on_seed_and_name_only():
    assert attribute_rng(3, "sex").random() == attribute_rng(3, "sex").random()
    assert attribute_rng(3, "sex").random() != attribute_rng(4, "sex").random()
    assert attribute_rng(3, "sex").random() == np.random.default_rng([3, zlib.crc32(b"sex")]).random()


def test_scores_held_as_objects_are_read_as_numbers():
    """A score column of dtype object (say, read from JSON) gives the same cells as one of floats."""
    y, decision = np.array([1, 1, 0]), np.array([1, 1, 0])
    scores = pd.Series([0.9, 0.6, 0.3], dtype=object)
    cells = build_cells(["a", "a", "a"], y, decision=decision, proba=scores, bins=4)
    assert cells.sq_error.tolist() == pytest.approx([0.09, 0.01, 0.16])
    assert cells.counts.tolist() == [1, 1, 1]
    assert cells.counts.dtype == np.int64


def test_one_bin_per_cell_keeps_a_single_cell_groups_brier_fixed():
    """With bins=1 each cell carries only its mean squared error: a group all in one cell has the same Brier
    score in every resample; with a bin per row it varies."""
    groups = np.array(["a"] * 10 + ["b"] * 10, dtype=object)
    y = np.array([1] * 10 + [0, 1] * 5)
    decision = np.array([1] * 10 + [0, 1] * 5)
    proba = np.linspace(0.3, 0.95, 20)
    sq = ((proba - y) ** 2)[:10]
    fixed, varied = (
        bootstrap_groups(
            groups, y, decision=decision, proba=proba, n_boot=50, min_group_size=1, rng=np.random.default_rng(0), bins=b
        ).draws["brier"][:, 0]
        for b in (1, 64)
    )
    np.testing.assert_allclose(fixed, sq.mean())
    assert varied.std() > 0


def test_undefined_rates_are_nan_without_warnings():
    """0/0 is NaN quietly: no RuntimeWarning for a group without positive labels or an all-zero ratio."""
    groups, y, decision = _table({"a": (0, 0, 0, 4), "b": (0, 0, 0, 4)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boot = bootstrap_groups(groups, y, decision=decision, n_boot=20, min_group_size=1, rng=np.random.default_rng(0))
    assert np.isnan(boot.point["tpr"]).all() and np.isnan(boot.point["precision"]).all()
    assert np.isnan(boot.summary_point["demographic_parity_ratio"])


def test_every_group_too_small_leaves_every_summary_undefined():
    groups, y, decision = _table(HAND)
    boot = bootstrap_groups(groups, y, decision=decision, n_boot=25, min_group_size=50, rng=np.random.default_rng(0))
    assert boot.small.tolist() == [True, True]
    for name, value in boot.summary_point.items():
        assert np.isnan(value), name
        assert boot.summary_draws[name].shape == (25,) and np.isnan(boot.summary_draws[name]).all(), name
        assert summary_note(name, boot, min_group_size=50) == "undefined: fewer than 2 groups with at least 50 rows"


def test_base_rate_table_has_counts_positives_and_rates_only():
    boot = bootstrap_groups(
        ["x", "x", "y", "y", "y"], np.array([1, 0, 1, 1, 0]), n_boot=5, min_group_size=1, rng=np.random.default_rng(0)
    )
    assert set(boot.point) == {"count", "positives", "base_rate"}
    assert boot.point["positives"].tolist() == [1, 2]
    assert boot.point["count"].tolist() == [2, 3]


# Columns of every kind a sensitive attribute may come in, with the text each row's value has (str() of it,
# "(missing)" when missing), written out by hand.
KINDS = {
    "text": (pd.Series(["b", None, "a", "b"], dtype="str"), ["b", "(missing)", "a", "b"]),
    "objects that are equal but print differently": (
        pd.Series([1, "1", 1.0, True], dtype=object),
        ["1", "1", "1.0", "True"],
    ),
    "floats with a negative zero and NaN": (pd.Series([0.0, -0.0, np.nan, 2.5]), ["0.0", "-0.0", "(missing)", "2.5"]),
    "float32": (pd.Series([0.5, 0.25, 0.5, np.nan], dtype="float32"), ["0.5", "0.25", "0.5", "(missing)"]),
    "integers": (pd.Series([3, 10, 3, 2]), ["3", "10", "3", "2"]),
    "nullable integers": (pd.Series([3, None, 3, 2], dtype="Int64"), ["3", "(missing)", "3", "2"]),
    "booleans": (pd.Series([True, False, False, True]), ["True", "False", "False", "True"]),
    "categories in another order, one unused": (
        pd.Series(pd.Categorical(["y", None, "x", "y"], categories=["y", "z", "x"])),
        ["y", "(missing)", "x", "y"],
    ),
    "categories that are numbers": (pd.Series(pd.Categorical([2, 1, 2, 1])), ["2", "1", "2", "1"]),
    "dates": (
        pd.Series(pd.to_datetime(["2024-01-02", None, "2024-01-02", "2023-05-06"])),
        ["2024-01-02 00:00:00", "(missing)", "2024-01-02 00:00:00", "2023-05-06 00:00:00"],
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_group_labels_are_each_rows_text_for_every_kind_of_column(kind):
    column, text = KINDS[kind]
    frame = pd.DataFrame({"c": column}).set_index(pd.Index([7, 3, 5, 1]))  # an index that is not 0..n-1
    labels = group_labels(frame, ["c"])
    assert labels.tolist() == text
    assert list(labels.categories) == sorted(set(text))  # the groups in sorted order, each observed
    assert as_strings(frame)["c"].tolist() == text  # the row-by-row definition
    coded = as_categories(frame)
    assert coded.index.tolist() == [7, 3, 5, 1] and coded["c"].astype(str).tolist() == text


def test_intersection_labels_join_each_rows_texts_and_merge_equal_ones():
    """('a | b', 'c') and ('a', 'b | c') read 'a | b | c' both: one group, as their text is one."""
    frame = pd.DataFrame(
        {"x": pd.Series(["a | b", "a", "a", None], dtype="str"), "y": pd.Categorical(["c", "b | c", "c", "c"])}
    )
    text = ["a | b | c", "a | b | c", "a | c", "(missing) | c"]
    labels = group_labels(frame, ["x", "y"])
    assert labels.tolist() == text
    assert list(labels.categories) == sorted(set(text))
    assert group_labels(as_categories(frame), ["x", "y"]).tolist() == text


def test_a_row_of_each_code_whatever_order_codes_are_numbered_in():
    in_order = np.array([0, -1, 1, 0, 2, 1])  # numbered in order of appearance, as pd.factorize does
    assert _a_row_of_each(in_order, 3).tolist() == [0, 2, 4]
    other = np.array([2, -1, 0, 2, 1, 0])
    assert _a_row_of_each(other, 3).tolist() == [2, 4, 0]


def _cells_by_sorting_rows(groups, y, decision, proba, bins):
    """The cells by a sort of the rows on (group, label, decision, squared error) and np.unique: the
    straightforward computation, at O(n log n) per attribute."""
    codes, uniques = pd.factorize(np.asarray(groups, dtype=object), sort=True)
    key = (codes * 2 + y) * 2 + decision
    sq = (proba - y) ** 2
    order = np.lexsort((sq, key))
    sorted_key, sq = key[order], sq[order]
    size = np.bincount(sorted_key)
    start = np.concatenate(([0], np.cumsum(size)[:-1]))
    fine = sorted_key * bins + (np.arange(len(sorted_key)) - start[sorted_key]) * bins // size[sorted_key]
    unique_fine, inverse, counts = np.unique(fine, return_inverse=True, return_counts=True)
    return tuple(map(str, uniques)), unique_fine // bins, counts, np.bincount(inverse, weights=sq) / counts


@pytest.mark.parametrize("bins", [1, 3, 64])
def test_cells_equal_a_sort_of_the_rows_to_the_last_bit(bins):
    """Many tied scores, groups as text or as a Categorical, the error order computed or passed in."""
    rng = np.random.default_rng(4)
    n = 5000
    groups = rng.choice(["c", "a", "b | x"], n, p=[0.6, 0.3, 0.1])
    y = rng.integers(0, 2, n)
    proba = np.round(rng.beta(2, 2, n), 2)
    decision = (proba >= 0.5).astype(int)
    names, cell_key, counts, sq_error = _cells_by_sorting_rows(groups, y, decision, proba, bins)
    frame = pd.DataFrame({"g": groups})
    for given, order in ((groups, None), (group_labels(frame, ["g"]), None), (groups, error_order(y, proba))):
        cells = build_cells(given, y, decision=decision, proba=proba, bins=bins, order=order)
        assert cells.groups == names
        np.testing.assert_array_equal(cells.counts, counts)
        np.testing.assert_array_equal(cells.group, cell_key // 4)
        np.testing.assert_array_equal(cells.y, cell_key // 2 % 2)
        np.testing.assert_array_equal(cells.decision, cell_key % 2)
        assert cells.sq_error.tobytes() == sq_error.tobytes()  # the same sums in the same order
