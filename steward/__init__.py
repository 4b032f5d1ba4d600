"""Steward's kernel: settings, params, the registry and storage. Imports no Prefect, BentoML or DVC."""

from steward.layout import Layout
from steward.params import Params, ParamsError, load_params
from steward.registry import ModelVersion, Registry, RegistryError, State
from steward.settings import Settings
from steward.storage import Storage

__all__ = [
    "Layout",
    "ModelVersion",
    "Params",
    "ParamsError",
    "Registry",
    "RegistryError",
    "Settings",
    "State",
    "Storage",
    "load_params",
]
