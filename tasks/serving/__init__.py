"""Serving: what the running BentoML service imports: the request and response models (schema.py, requests.py,
responses.py), routing and the decision rule (decision.py), reason codes, counterfactuals, SHAP attribution, and the
OpenAPI document's statuses (openapi.py)."""
