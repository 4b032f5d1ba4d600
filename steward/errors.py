"""Steward's exceptions: one root, so that bad input and a refused action read as a message, and a bug as
a traceback.

The `steward` command turns a `StewardError` into its message and exit code 1; anything else (a KeyError,
a TypeError) is a defect in Steward and surfaces with its traceback. Each error also derives from the
built-in exception its callers have always caught (ValueError, FileNotFoundError, RuntimeError).

    StewardError
    ├── SchemaError (RuntimeError)          steward.db: a database whose tables an older Steward created
    ├── NotFound (FileNotFoundError)        a file, object, evidence digest or snapshot the user named is not there
    ├── ParamsError (ValueError)            steward.params: params.yaml names a key or value Steward refuses
    ├── EstimatorError (ValueError)         tasks.model.estimator: train.model names no buildable classifier
    ├── StorageError (ValueError)           steward.storage: a malformed s3:// URI, no bucket configured
    ├── DataError (ValueError)              steward.usecase: a dataset file not in its documented format
    ├── UseCaseError (ValueError)           steward.usecase: a use case that does not load or match its data
    ├── LedgerError (ValueError)            steward.ledger: a record refused, an export misconfigured
    ├── AnchorError (ValueError)            steward.anchor: a malformed anchor URI, an unreadable checkpoint
    ├── RegistryError (ValueError)          steward.registry: an unknown model, a forbidden transition
    ├── RoutingError (ValueError)           steward.routing: a canary weight outside [0, 1], a weight with no canary
    ├── ModelRefused (RuntimeError)         steward.model_integrity: model bytes or records that do not verify
    ├── ReviewError (ValueError)            steward.reviews: an unknown or resolved case, a resolution without a note,
    │                                       a contest past the open cases one request may have
    ├── FeedbackKeyError (ValueError)       steward.feedback_auth: a feedback key file others may read, or empty
    ├── EvidenceError (ValueError)          tasks.document.evidence(_pack): corrupted evidence, a pack that exists
    ├── AnswerError (ValueError)            tasks.signoff.approvals: an answer Prefect could not take
    ├── SignoffImpossible (ValueError)      tasks.signoff.policy: the approvers can never complete the tier's sign-off
    ├── ValidationFailed                    tasks.data.validate: a snapshot that breaks its data contract
    ├── SuiteInvalid (ValueError)           tasks.data.validate: an expectation suite that does not load whole
    ├── DvcError (RuntimeError)             tasks.dvc: a DVC command that failed, with its output
    └── LocalServerError (RuntimeError)     deployments.local.prefect_server: no healthy server, an unusable auth string
"""

from __future__ import annotations


class StewardError(Exception):
    """Something Steward refuses or cannot find, with a message that names it."""


class SchemaError(StewardError, RuntimeError):
    """A database whose tables an older Steward created (Steward does not migrate them)."""


class NotFound(StewardError, FileNotFoundError):
    """A file, object, snapshot or evidence digest the user named is not there."""
