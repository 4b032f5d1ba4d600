"""Audit: bootstrap intervals, fairness, explainability, robustness, mitigation, and the gate's verdict."""
