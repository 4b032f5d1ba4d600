"""Steward's kernel: settings, params, the registry, the ledger and storage. Imports no Prefect, BentoML or DVC.

The public names below load on first use (PEP 562), so importing one kernel module does not import them
all: a DVC stage that reads params does not pay for SQLAlchemy and boto3.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AnchorError": "steward.anchor",
    "Checkpoint": "steward.anchor",
    "Checkpoints": "steward.anchor",
    "anchor_from": "steward.anchor",
    "anchored": "steward.anchor",
    "AnchorReport": "steward.anchor_verify",
    "Layout": "steward.layout",
    "Ledger": "steward.ledger",
    "LedgerError": "steward.ledger",
    "Record": "steward.ledger",
    "VerifyResult": "steward.ledger",
    "verify_records": "steward.ledger",
    "S3Export": "steward.ledger_export",
    "export_to_s3": "steward.ledger_export",
    "Manifest": "steward.model_integrity",
    "ModelRefused": "steward.model_integrity",
    "Params": "steward.params",
    "ParamsError": "steward.params",
    "load_params": "steward.params",
    "ModelVersion": "steward.registry",
    "Registry": "steward.registry",
    "RegistryError": "steward.registry",
    "State": "steward.registry",
    "Settings": "steward.settings",
    "Storage": "steward.storage",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'steward' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
