"""Steward's kernel: settings, params, the registry, the ledger and storage. Imports no Prefect, BentoML or DVC."""

from steward.layout import Layout
from steward.ledger import Ledger, LedgerError, Record, VerifyResult, verify_records
from steward.ledger_export import S3Export, export_to_s3
from steward.params import Params, ParamsError, load_params
from steward.registry import ModelVersion, Registry, RegistryError, State
from steward.settings import Settings
from steward.storage import Storage

__all__ = [
    "Layout",
    "Ledger",
    "LedgerError",
    "ModelVersion",
    "Params",
    "ParamsError",
    "Record",
    "Registry",
    "RegistryError",
    "S3Export",
    "Settings",
    "State",
    "Storage",
    "VerifyResult",
    "export_to_s3",
    "load_params",
    "verify_records",
]
