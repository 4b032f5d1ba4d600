"""Steward's tasks: one module per lifecycle concern, pure functions with thin I/O shells.

DVC stages run them as `python -m tasks.<stage>`; the flows call the Prefect tasks defined beside them.
"""
