"""Steward's tasks, one package per lifecycle phase, named after the flow it serves:

data/ model/ audit/ document/ signoff/ serving/ rollout/ monitor/ retrain/ (and demo/, the demo's generators).
A DVC stage runs as `python -m tasks.<phase>.<stage>` and never imports Prefect; a Prefect task is defined
with `@task` beside the function it runs, and the flows call it. stage.py, dvc.py and artifacts.py are the
shells they share.

Python runs this file first in a stage's process: when the training flow's warm stage server is there
(STEWARD_STAGE_SERVER, tasks/stage_server.py), the stage runs in a process forked from it instead.
"""

import os
import sys

if os.environ.get("STEWARD_STAGE_SERVER") and sys.argv[:1] == ["-m"]:  # `python -m tasks.…` finding its module
    from tasks.stage_server import delegate

    delegate(os.environ["STEWARD_STAGE_SERVER"])  # returns only if no server takes the command
