"""Serving: what the running BentoML service imports: the request schema, reason codes, counterfactuals."""
