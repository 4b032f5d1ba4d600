"""Rollout: judging a shadow or canary step against production (canary.py) and watching it (watch.py)."""
