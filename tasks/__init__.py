"""Steward's tasks, one package per lifecycle phase, named after the flow it serves:

data/ model/ audit/ document/ signoff/ serving/ rollout/ monitor/ retrain/ (and demo/, the demo's generators).
A DVC stage runs as `python -m tasks.<phase>.<stage>` and never imports Prefect; a Prefect task is defined
with `@task` beside the function it runs, and the flows call it. stage.py, dvc.py and artifacts.py are the
shells they share.
"""
