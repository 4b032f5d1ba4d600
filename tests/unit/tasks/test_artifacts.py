from tasks.artifacts import markdown_table, report_markdown


def test_markdown_table_formats_floats_and_keeps_other_values():
    assert markdown_table({"auc": 0.81234, "rows": 10}) == "| | |\n|---|---|\n| auc | 0.8123 |\n| rows | 10 |"


def test_report_markdown_lists_each_suite_and_its_failures():
    failure = {"column": "age", "expectation": "expect_column_values_to_be_between", "observed": "3"}
    report = {
        "success": False,
        "suites": [{"suite": "raw_credit", "success": False, "evaluated": 72, "n_rows": 5, "failures": [failure]}],
    }
    text = report_markdown("validate", report, ran=True)
    assert "suite `raw_credit` FAILED: 72 expectations, 5 rows" in text
    assert "`age` expect_column_values_to_be_between: 3" in text


def test_report_markdown_of_metrics_says_when_dvc_skipped_the_stage():
    text = report_markdown("evaluate", {"metrics": {"auc": 0.8}}, ran=False)
    assert "unchanged" in text and "| auc | 0.8000 |" in text
