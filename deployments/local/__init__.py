"""The processes Steward starts on this machine: a Prefect server (prefect_server.py) and `bentoml serve`
of the service (bento_server.py), each started, checked for readiness and stopped by PID."""
