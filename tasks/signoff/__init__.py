"""Sign-off: who may approve what (policy.py), answering paused runs (approvals.py), recording answers."""
