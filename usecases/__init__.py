"""The use cases Steward ships: one folder each, with its usecase.yaml, raw suite, datasheet and plug-ins.

Everything that knows a dataset's columns lives in its folder (steward/usecase.py reads usecase.yaml).
"""
