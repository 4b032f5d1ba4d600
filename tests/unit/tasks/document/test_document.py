import copy
import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from tasks.audit.gate import decide
from tasks.document.document import (
    DOCUMENT_DIR,
    EVIDENCE_PAGE,
    Evidence,
    Lineage,
    datasheet,
    evidence_page,
    gather,
    impact_assessment,
    impact_assessment_html,
    model_card,
    model_card_html,
    write_documents,
)
from tasks.document.facts import NOT_RUN, STAGES, md
from tests.usecases import SHIPPED, params_for

PARAMS = params_for()
EVIL = '<script>alert("x")</script>'
LINK = "[click](http://evil.example)"
MD5 = "0123456789abcdef0123456789abcdef"


def metric(value, low, high):
    return {"value": value, "ci": [low, high]}


def null_metric(note):
    return {"value": None, "ci": None, "note": note}


def fairness_group(count, positives, base, *, small=False):
    """Every rate a distinct 3-decimal number derived from `base`, so a mix-up would show."""
    names = ["selection_rate", "tpr", "fpr", "fnr", "precision", "brier"]
    group = {"count": count, "positives": positives, "small": small}
    for i, name in enumerate(names):
        value = round(base + 0.011 * i, 3)
        group[name] = metric(value, round(value - 0.05, 3), round(value + 0.04, 3))
    return group


def fairness_report():
    summary = {
        "demographic_parity_difference": metric(0.123, 0.021, 0.245),
        "demographic_parity_ratio": metric(0.812, 0.688, 0.934),
        "equalized_odds_difference": metric(0.151, 0.032, 0.287),
        "equal_opportunity_difference": metric(0.097, 0.011, 0.204),
        "predictive_parity_difference": metric(0.064, 0.005, 0.171),
    }
    null = {key: null_metric("fewer than 2 groups with at least 30 rows") for key in summary}
    return {
        "n": 300,
        "threshold": 0.5,
        "ci_level": 0.95,
        "n_boot": 200,
        "min_group_size": 30,
        "method": "percentile bootstrap of group counts",
        "attributes": {
            "sex": {
                "groups": {"male": fairness_group(204, 150, 0.701), "female": fairness_group(96, 60, 0.602)},
                "summary": summary,
            },
            "foreign_worker": {
                "groups": {"yes": fairness_group(287, 200, 0.503), "no": fairness_group(13, 12, 0.404, small=True)},
                "summary": null,
            },
        },
        "flags": ["foreign_worker: group 'no' has 13 rows (< 30)"],
    }


def data_bias_report():
    def group(count, share, rate, *, small=False):
        return {"count": count, "share": share, "base_rate": metric(rate, rate - 0.04, rate + 0.03), "small": small}

    return {
        "n_rows": 1000,
        "favourable": "good",
        "ci_level": 0.95,
        "n_boot": 200,
        "min_group_size": 30,
        "attributes": {
            "sex": {
                "groups": {"male": group(690, 0.69, 0.723), "female": group(310, 0.31, 0.648)},
                "reference": "male",
                "summary": {
                    "base_rate_difference": metric(0.075, 0.015, 0.132),
                    "base_rate_ratio": metric(0.896, 0.821, 0.979),
                    "four_fifths": {"passes": True, "on": "ci_low"},
                },
            },
            "age_group": {
                "groups": {"25 and over": group(851, 0.851, 0.719), "under 25": group(149, 0.149, 0.591)},
                "reference": "25 and over",
                "summary": {
                    "base_rate_difference": metric(0.128, 0.044, 0.208),
                    "base_rate_ratio": metric(0.822, 0.713, 0.938),
                    "four_fifths": {"passes": False, "on": "ci_low"},
                },
            },
        },
        "flags": ["age_group: base-rate ratio CI lower bound 0.713 < 0.8"],
    }


def explain_report():
    return {
        "explainer": "tree",
        "n_explained": 300,
        "additivity_max_error": 1e-15,
        "global_importance": [
            {"feature": "checking_status", "mean_abs_shap": 0.5823},
            {"feature": "personal_status", "mean_abs_shap": 0.0812},
        ],
        "by_group": {"sex": {"female": [{"feature": "checking_status", "mean_abs_shap": 0.6028}]}},
        "local": [],
        "proxies": [
            {
                "feature": "personal_status",
                "attribute": "sex",
                "mutual_information": 0.321,
                "normalized_mutual_information": 0.521,
                "probe_auc": 0.876,
                "flagged": True,
            },
            {
                "feature": "telephone",
                "attribute": "sex",
                "mutual_information": 0.002,
                "normalized_mutual_information": 0.003,
                "probe_auc": 0.512,
                "flagged": False,
            },
        ],
        "plots": {"bar": "reports/explain/bar.png", "beeswarm": "reports/explain/beeswarm.png"},
        "flags": ["personal_status is a proxy of sex"],
    }


def robustness_report():
    return {
        "perturbation": {
            "numeric_noise": 0.05,
            "n_perturbations": 5,
            "flip_rate": 0.083,
            "mean_abs_proba_change": 0.021,
            "flagged": True,
        },
        "category_swaps": {"flip_rate": 0.055, "by_feature": {}},
        "slices": [
            {"name": "all", "count": 300, "auc": 0.755, "accuracy": 0.743, "approval_rate": 0.81, "small": False}
        ],
        "protected_flip": {"sex": {"flip_rate": 0.0, "note": "sex is not a model feature"}},
        "flags": [],
    }


def gate_report(reports):
    """What the gate stage writes for these reports (its own policy function decides)."""
    verdict = decide(
        governance=PARAMS.governance,
        evaluation=reports["evaluate"],
        fairness=reports["fairness"],
        robustness=reports["robustness"],
        explain=reports["explain"],
    )
    return {**verdict.to_dict(), "model": "base", "policy": PARAMS.governance.policy.model_dump()}


def mitigate_report(*, selected):
    """reports/mitigate.json after a mitigation that raised the demographic parity ratio of sex."""
    after = fairness_report()
    after["attributes"]["sex"]["summary"]["demographic_parity_ratio"] = metric(0.951, 0.874, 0.999)
    after["attributes"]["sex"]["groups"]["female"]["selection_rate"] = metric(0.777, 0.701, 0.842)
    verdict = "pass" if selected == "mitigated" else "fail"
    return {
        "base": {"verdict": {"verdict": "fail", "tier": "high", "checks": [], "reasons": []}},
        "selected": selected,
        "applied": True,
        "method": "threshold_optimizer",
        "constraint": "demographic_parity",
        "attribute": "sex",
        "reason": "the mitigated model passes the gate: it goes forward",
        "mitigated": {
            "verdict": {"verdict": verdict, "tier": "high", "checks": [], "reasons": []},
            "fairness": after,
            "evaluation": {
                "metrics": {"auc": 0.731, "accuracy": 0.722, "approval_rate": 0.74, "base_rate": 0.7, "n": 300}
            },
        },
    }


def all_reports():
    reports = {
        "validate": {"success": True, "suites": []},
        "evaluate": {
            "model": "gradient_boosting",
            "metrics": {
                "auc": 0.755,
                "accuracy": 0.743,
                "brier": 0.175,
                "log_loss": 0.53,
                "approval_rate": 0.81,
                "base_rate": 0.7,
                "n": 300,
            },
        },
        "data_bias": data_bias_report(),
        "fairness": fairness_report(),
        "explain": explain_report(),
        "robustness": robustness_report(),
    }
    return reports | {"gate": gate_report(reports)}


def make_evidence(reports=None, *, datasheet_text="# Datasheet\n\n## Intended use\nTeaching only.\n", **lineage):
    files = {
        "reports/calibration.png": "a" * 64,
        "reports/explain/bar.png": "b" * 64,
        "reports/fairness/selection_rates.png": "c" * 64,
    }
    defaults = {
        "data_file": "data/raw/snapshot.csv",
        "data_md5": MD5,
        "data_sha256": "d" * 64,
        "vendored_file": "data/german_credit.csv",
        "vendored_sha256": "d" * 64,
        "params_hash": PARAMS.digest(),
        "git_commit": "f" * 40,
        "model_name": "credit-risk",
        "license": "Apache-2.0",
    }
    reports = all_reports() if reports is None else reports
    files |= {f"reports/{stage}.json": "e" * 64 for stage in reports}
    return Evidence(reports=reports, files=files, datasheet=datasheet_text, lineage=Lineage(**(defaults | lineage)))


def front_matter(text):
    match = re.match(r"\A---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "the model card starts with YAML front matter"
    return yaml.safe_load(match.group(1))


def table_rows(markdown, heading):
    """The body rows (cells stripped) of the first table at or after the line holding `heading`."""
    start = markdown.rfind("\n", 0, markdown.index(heading)) + 1
    rows = []
    for line in markdown[start:].splitlines()[1 if not markdown[start:].startswith("|") else 0 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows:
            break
    assert rows, f"no table after {heading!r}"
    return rows[2:]  # header and delimiter row


def numbers(cell):
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def test_every_fairness_number_in_the_card_equals_the_input():
    report = fairness_report()
    card = model_card(make_evidence(), PARAMS)
    keys = ["selection_rate", "tpr", "fpr", "fnr", "precision", "brier"]
    for attribute, entry in report["attributes"].items():
        rows = {row[0].removesuffix(" (small)"): row for row in table_rows(card, f"#### {md(attribute)}")}
        assert set(rows) == set(entry["groups"])
        for group, values in entry["groups"].items():
            row = rows[group]
            assert int(row[1]) == values["count"] and int(row[2]) == values["positives"]
            for key, cell in zip(keys, row[3:], strict=True):
                assert numbers(cell) == [values[key]["value"], *values[key]["ci"]]
    summary = table_rows(card, "sex: summary over non-small groups")
    expected = report["attributes"]["sex"]["summary"]
    for (label, cell), key in zip(summary, expected, strict=True):
        assert label == key.replace("_", " ")
        assert numbers(cell) == [expected[key]["value"], *expected[key]["ci"]]
    assert front_matter(card)["steward"]["fairness"]["sex"] == expected


def test_null_summaries_say_why_instead_of_a_number():
    card = model_card(make_evidence(), PARAMS)
    rows = table_rows(card, "foreign_worker: summary over non-small groups")
    assert all(cell == "n/a (fewer than 2 groups with at least 30 rows)" for _, cell in rows)


def test_front_matter_parses_and_carries_the_metrics():
    evidence = make_evidence()
    meta = front_matter(model_card(evidence, PARAMS))
    scores = evidence.reports["evaluate"]["metrics"]
    result = meta["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        "roc_auc": scores["auc"],
        "accuracy": scores["accuracy"],
        "brier_score": scores["brier"],
        "log_loss": scores["log_loss"],
        "approval_rate": scores["approval_rate"],
    }
    assert meta["metrics"] == [m["type"] for m in result["metrics"]]
    assert result["dataset"]["revision"] == MD5 and meta["datasets"] == ["german_credit"]
    assert meta["license"] == "apache-2.0"
    assert meta["steward"]["gate_verdict"] == "fail"
    assert meta["steward"]["params_hash"] == PARAMS.digest()


@pytest.mark.parametrize("stage", ["evaluate", "data_bias", "fairness", "explain", "robustness", "gate"])
def test_a_missing_report_gives_a_not_run_section_and_no_invented_figures(stage):
    reports = all_reports()
    del reports[stage]
    evidence = make_evidence(reports)
    message = md(NOT_RUN.format(path=f"reports/{stage}.json", what=STAGES[stage]))
    card, assessment = model_card(evidence, PARAMS), impact_assessment(evidence, PARAMS)
    assert message in card
    assert f"| {md(STAGES[stage])} not assessed | not run |" in assessment
    page = evidence_page(evidence, PARAMS)
    assert f"reports/{stage}.json does not exist" in page
    if stage == "fairness":
        assert "#### sex" not in card and "0.812" not in card
    if stage == "gate":
        assert front_matter(card)["steward"]["gate_verdict"] == "not run"
        assert 'data-verdict="not run"' in page


def test_no_mitigation_report_is_said_not_run_and_a_present_one_is_shown_side_by_side():
    assessment = impact_assessment(make_evidence(), PARAMS)
    assert "> **Not run: reports/mitigate.json does not exist" in assessment
    reports = all_reports() | {"mitigate": mitigate_report(selected="base")}
    assessment = impact_assessment(make_evidence(reports), PARAMS)
    rows = {row[0]: row[1:] for row in table_rows(assessment, "| figure | base | mitigated |")}
    assert numbers(rows["sex: demographic parity ratio"][0]) == [0.812, 0.688, 0.934]
    assert numbers(rows["sex: demographic parity ratio"][1]) == [0.951, 0.874, 0.999]
    assert numbers(rows["auc"][0]) == [0.755] and numbers(rows["auc"][1]) == [0.731]
    assert rows["gate verdict"] == ["fail", "fail"]


def test_when_the_mitigated_model_goes_forward_the_card_reports_its_figures():
    reports = all_reports() | {"mitigate": mitigate_report(selected="mitigated")}
    card = model_card(make_evidence(reports), PARAMS)
    female = next(row for row in table_rows(card, "#### sex") if row[0] == "female")
    assert numbers(female[3]) == [0.777, 0.701, 0.842]
    summary = dict(table_rows(card, "sex: summary over non-small groups"))
    assert numbers(summary["demographic parity ratio"]) == [0.951, 0.874, 0.999]
    assert {m["type"]: m["value"] for m in front_matter(card)["model-index"][0]["results"][0]["metrics"]}[
        "roc_auc"
    ] == 0.731
    assert "| model going forward | the **mitigated** model (threshold_optimizer" in card


def test_a_flagged_proxy_is_a_risk_with_its_numbers_and_an_unflagged_one_is_not():
    assessment = impact_assessment(make_evidence(), PARAMS)
    risks = table_rows(assessment, "## 4. Risks")
    proxy = [row for row in risks if row[1] == "personal_status is a proxy for sex"]
    assert len(proxy) == 1
    assert numbers(proxy[0][2]) == [
        0.521,
        PARAMS.explain.proxy_nmi_threshold,
        0.876,
        PARAMS.explain.proxy_auc_threshold,
    ]
    assert not [row for row in risks if "telephone" in row[1]]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_declared_proxy_is_kept_out_of_the_features_and_says_so(name):
    params = params_for(name)
    (feature, attributes), *_ = params.usecase.proxies.items()
    reports = all_reports()
    reports["explain"]["proxies"][0] |= {"feature": feature, "attribute": attributes[0]}
    risks = table_rows(impact_assessment(make_evidence(reports), params), "## 4. Risks")
    proxy = next(row for row in risks if row[1] == f"{md(feature)} is a proxy for {attributes[0]}")
    assert proxy[3] == f"kept out of the model's features: a declared proxy of {attributes[0]} (the use case's proxies)"
    features = next(
        row for row in table_rows(model_card(make_evidence(reports), params), "| item |") if row[0] == "features"
    )
    assert f"the declared proxies {md(feature)} (of {attributes[0]}) (the use case's `proxies`)" in features[1]
    assert all(md(column) in features[1] for column in params.usecase.protected)


def test_failing_gate_checks_and_flagged_figures_become_risks():
    risks = table_rows(impact_assessment(make_evidence(), PARAMS), "## 4. Risks")
    findings = {row[1]: row[2] for row in risks}
    assert numbers(findings["gate check demographic_parity_ratio failed on sex"]) == [0.688, 0.8]
    assert numbers(findings["gate check equalized_odds_difference failed on sex"]) == [0.287, 0.1]
    assert findings["gate check demographic_parity_ratio not assessable on foreign_worker"] == (
        "fewer than 2 groups with at least 30 rows"
    )
    assert numbers(findings["base rates of age_group fail the four-fifths rule in the training data"]) == [
        0.822,
        0.713,
        0.938,
    ]
    assert numbers(findings["decisions flip under 0.050 relative numeric noise"]) == [0.083, 0.05]
    assert "foreign_worker = no is too small in the held-out split to audit reliably" in findings
    assert not any(finding.startswith("gate check auc") for finding in findings)  # it passed


def test_the_impact_assessment_states_the_tier_thresholds_and_the_verdict():
    assessment = impact_assessment(make_evidence(), PARAMS)
    high = PARAMS.governance.tiers["high"]
    row = next(r for r in table_rows(assessment, "## 3. Risk tier") if r[0] == "min_dp_ratio_lower")
    assert float(row[3]) == high.min_dp_ratio_lower
    assert "Verdict **FAIL** for the base model, tier high." in assessment
    assert "| demographic_parity_ratio | sex | ci_low | 0.688 | >= 0.800 | **fail** |" in assessment
    assert "| auc | model | value | 0.755 | >= 0.700 | pass |" in assessment


def test_the_datasheet_carries_the_snapshot_identity_groups_and_the_vendored_sheet():
    sheet = datasheet(make_evidence(), PARAMS)
    assert MD5 in sheet and "| rows | 1000 |" in sheet
    assert "| female | 310 | 0.310 | 0.648 [0.608, 0.678] |" in sheet
    assert "byte for byte the vendored" in sheet
    assert "### Intended use\nTeaching only." in sheet  # nested one level down
    other = datasheet(make_evidence(data_sha256="9" * 64), PARAMS)
    assert "**not** the vendored" in other
    missing = datasheet(make_evidence({}), PARAMS)
    assert md(NOT_RUN.format(path="reports/data_bias.json", what=STAGES["data_bias"])) in missing


def html_documents(evidence):
    return {
        "model card": model_card_html(evidence, PARAMS),
        "impact assessment": impact_assessment_html(evidence, PARAMS),
        "evidence page": evidence_page(evidence, PARAMS),
    }


def malicious_reports():
    reports = all_reports()
    for stage in ("fairness", "data_bias"):
        groups = reports[stage]["attributes"]["sex"]["groups"]
        groups[EVIL] = groups.pop("female")
        groups[LINK] = groups["male"]
    reports["explain"]["proxies"][0]["feature"] = EVIL
    reports["fairness"]["flags"].append(LINK)
    return reports


def references(html):
    return re.findall(r'(?:href|src)="([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)


@pytest.mark.parametrize("reports", [all_reports(), {}], ids=["full", "empty"])
def test_html_reads_offline_with_relative_links_only(reports):
    for name, html in html_documents(make_evidence(reports)).items():
        assert "http://" not in html and "https://" not in html, name
        assert not re.search(r"<script|<link|@import|<iframe|<object|<embed", html, flags=re.I), name
        for target in references(html):
            assert not re.match(r"^([a-z][a-z0-9+.-]*:|/)", target, flags=re.I), (name, target)


def test_a_malicious_group_name_is_escaped_everywhere():
    evidence = make_evidence(malicious_reports())
    for name, html in html_documents(evidence).items():
        assert "&lt;script&gt;" in html, name
        assert not re.search(r"<script", html, flags=re.I), name
        assert not [t for t in references(html) if "evil" in t or ":" in t], name
    card = model_card(evidence, PARAMS)
    assert EVIL not in card and md(EVIL) in card
    assert "[click](http" not in card and md(LINK) in card


def test_the_evidence_page_shows_the_verdict_first_and_links_each_file_with_its_hash():
    evidence = make_evidence()
    page = evidence_page(evidence, PARAMS)
    assert page.index('id="verdict"') < page.index("<main")
    assert re.search(r'id="verdict">FAIL<', page)
    for path, digest in evidence.files.items():
        href = Path("..", *Path(path).parts[1:]).as_posix()
        assert f'href="{href}"' in page and digest in page
    for section in (
        "gate",
        "risks",
        "validation",
        "data-bias",
        "performance",
        "fairness",
        "explainability",
        "robustness",
        "documents",
        "files",
    ):
        assert f'<section id="{section}"' in page


def write_project(root: Path, reports: dict, *, usecase=PARAMS.usecase, snapshot: bytes = b"a,b\n1,2\n") -> None:
    for stage, report in reports.items():
        path = root / "reports" / f"{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
    (root / "reports" / "explain").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "explain" / "bar.png").write_bytes(b"\x89PNG fake")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "snapshot.csv").write_bytes(snapshot)
    (root / "data" / "raw" / "snapshot.csv.dvc").write_text(f"outs:\n- md5: {MD5}\n  path: snapshot.csv\n")
    sheet = root / usecase.datasheet
    sheet.parent.mkdir(parents=True)
    sheet.write_text(f"# Datasheet of {usecase.name}\n\n## Intended use\nTeaching.\n")
    docs = root / "reports" / "data_docs" / "raw" / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text('<link href="https://cdn.example/a.css"><script src="https://cdn.example/b.js"></script>')


def test_gather_and_write_on_a_project_folder(tmp_path):
    reports = all_reports()
    del reports["robustness"]
    write_project(tmp_path, reports)
    evidence = gather(tmp_path, params=PARAMS, git_commit="abc", model_name="credit-risk")
    assert set(evidence.reports) == set(reports)
    assert evidence.lineage.data_md5 == MD5 and not evidence.lineage.vendored
    bar = tmp_path / "reports" / "explain" / "bar.png"
    assert evidence.files["reports/explain/bar.png"] == hashlib.sha256(bar.read_bytes()).hexdigest()
    assert "reports/robustness.json" not in evidence.files

    written = write_documents(tmp_path, evidence, PARAMS)
    names = ["model_card.md", "model_card.html", "datasheet.md", "impact_assessment.md", "impact_assessment.html"]
    assert set(written) == {f"{DOCUMENT_DIR}/{name}" for name in names} | {EVIDENCE_PAGE}
    for path, digest in written.items():
        assert hashlib.sha256((tmp_path / path).read_bytes()).hexdigest() == digest
    page = (tmp_path / EVIDENCE_PAGE).read_text()
    for name in names:  # the page links each document with the hash of what was written
        assert written[f"{DOCUMENT_DIR}/{name}"] in page
    assert evidence.online == {"reports/data_docs/raw/index.html": 2}
    assert "it fetches 2 scripts and styles from the internet" in page and "https://" not in page


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("same", [True, False])
def test_the_snapshot_is_the_vendored_dataset_when_its_bytes_are_the_decompressed_ones(tmp_path, name, same):
    params = params_for(name)
    usecase = params.usecase
    content = b"id,label\n1,yes\n2,no\n"
    write_project(tmp_path, all_reports(), usecase=usecase, snapshot=content if same else content + b"3,no\n")
    vendored = tmp_path / usecase.dataset.file
    vendored.write_bytes(gzip.compress(content) if vendored.suffix == ".gz" else content)
    evidence = gather(tmp_path, params=params, git_commit="abc", model_name=usecase.model_name)
    lineage = evidence.lineage
    assert lineage.vendored_file == usecase.dataset.file
    assert lineage.vendored_sha256 == hashlib.sha256(content).hexdigest()  # of the bytes, not of the archive
    assert lineage.vendored is same
    assert lineage.dataset == (name if same else f"snapshot-{MD5[:8]}")
    assert evidence.datasheet == f"# Datasheet of {name}\n\n## Intended use\nTeaching.\n"
    sheet = datasheet(evidence, params)
    assert f"# Datasheet of {name}" in sheet and ("byte for byte the vendored" in sheet) is same


def usecase_reports(usecase):
    """The fixture reports with the use case's sensitive attributes and favourable label in place of German's."""
    reports = all_reports()
    for stage in ("fairness", "data_bias"):
        template = reports[stage]["attributes"]["sex"]
        reports[stage]["attributes"] = {a: copy.deepcopy(template) for a in usecase.sensitive}
    reports["data_bias"]["favourable"] = str(usecase.label.favourable)
    return reports | {"gate": gate_report(reports)}


SUBJECTS = {"german_credit": "applicants", "adult_income": "people"}  # the plural of words.subject, by hand


@pytest.mark.parametrize("name", SHIPPED)
def test_the_documents_speak_the_use_case_s_words(name):
    params = params_for(name)
    usecase, words = params.usecase, params.usecase.words
    favourable = md(usecase.label.favourable)
    lineage = {"model_name": usecase.model_name, "vendored_file": usecase.dataset.file, "data_file": "data/raw/x.csv"}
    evidence = make_evidence(usecase_reports(usecase), **lineage)
    card, assessment = model_card(evidence, params), impact_assessment(evidence, params)
    sheet, page = datasheet(evidence, params), evidence_page(evidence, params)
    for document in (card, assessment, sheet):
        assert md(usecase.title) in document
    assert usecase.title in page
    decision = next(row for row in table_rows(card, "| item |") if row[0] == "decision")[1]
    assert decision == (
        f"{md(words.decision)}: {md(words.favourable)} when P({favourable}) ≥ {params.evaluate.threshold} "
        f"(`evaluate.threshold`), else {md(words.unfavourable)}"
    )
    assert f'the favourable outcome is "{favourable}" ({md(words.outcome)})' in card
    assert f"{SUBJECTS[name]} in the held-out split" in card and f"{SUBJECTS[name]} in the held-out split" in assessment
    assert f"| favourable outcome | {favourable} ({md(words.outcome)}) |" in sheet
    for attribute in usecase.sensitive:
        assert f"| {md(attribute)} |" in card
    for group_name, group in usecase.groups.items():
        assert f"{md(group_name)} bins {md(group.column)}: {', '.join(md(b) for b in group.bin_labels())}" in card
    others = [params_for(other).usecase for other in SHIPPED if other != name]
    for document in (card, assessment, sheet, page):
        for other in others:
            assert other.words.decision not in document and other.title not in document
    if name != "german_credit":  # nothing of German credit's vocabulary leaks into another use case's documents
        for document in (card, assessment, sheet, page):
            assert not re.search(r"credit|applicant|\bDM\b", document, flags=re.I)
