"""train.model → an unfitted classifier: a built-in name, or any scikit-learn-compatible classifier by import path.

`gradient_boosting` and `logistic_regression` take their keyword arguments from their own typed sections of
params.yaml; an import path `package.module:ClassName` takes them from `train.estimator_kwargs[path]` (none if
the path has no entry). `random_state` is `train.seed` whenever the class accepts one and it was not given.

The family of an estimator decides two things, before and after fitting:

- how SHAP explains it (tasks/serving/attribution.py): `tree`, TreeExplainer, exact, in log-odds: scikit-learn's
  GradientBoostingClassifier and HistGradientBoostingClassifier with the log-loss, and LightGBM's LGBMClassifier
  with the binary objective; `linear`, LinearExplainer, exact: LogisticRegression; `other`, everything else, a
  model-agnostic explainer on a sample. A random forest is `other`: SHAP's tree explainer gives its
  attributions in probability, not log-odds.
- whether numeric inputs are standardised (tasks/model/train.py): not for the `tree` family, whose splits do not
  depend on scale and whose explanations then read in the data's own units; for every other family they are,
  since linear, distance, kernel and neural models depend on scale (and a monotone rescaling changes no tree).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Literal

from steward.errors import StewardError
from steward.params import TrainParams

Family = Literal["tree", "linear", "other"]

BUILT_IN: dict[str, str] = {
    "gradient_boosting": "sklearn.ensemble:GradientBoostingClassifier",
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
}

NO_MODULE = "train.model {path!r}: no module {module!r} can be imported ({error})"
NO_CLASS = "train.model {path!r}: module {module!r} has no attribute {name!r}"
NOT_A_CLASS = "train.model {path!r}: {name!r} is a {kind}, not a class"
NOT_A_CLASSIFIER = "train.model {path!r}: {name} has no {missing}; a classifier needs fit and predict_proba"
KWARGS_REJECTED = "train.model {path!r}: {name} rejects the keyword arguments {kwargs} ({error})"


class EstimatorError(StewardError, ValueError):
    """train.model names a class that cannot be imported, is not a classifier, or refuses its arguments."""


def import_path(model: str) -> str:
    """The `package.module:ClassName` of train.model (a built-in name maps to its scikit-learn class)."""
    return BUILT_IN.get(model, model)


def estimator_kwargs(train: TrainParams) -> dict[str, Any]:
    """The keyword arguments train.model is built with, as params.yaml gives them (before random_state)."""
    if train.model == "gradient_boosting":
        return train.gradient_boosting.model_dump()
    if train.model == "logistic_regression":
        return train.logistic_regression.model_dump()
    return dict(train.estimator_kwargs.get(train.model, {}))


def resolve(path: str) -> type:
    """Import the class an import path names; every failure is an EstimatorError naming train.model."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(NO_MODULE.format(path=path, module=module_name, error=exc)) from None
    found = getattr(module, name, None)
    if found is None:
        raise EstimatorError(NO_CLASS.format(path=path, module=module_name, name=name))
    if not isinstance(found, type):
        raise EstimatorError(NOT_A_CLASS.format(path=path, name=name, kind=type(found).__name__))
    return found


def build_estimator(train: TrainParams) -> Any:
    """The unfitted classifier train.model names, with its keyword arguments and the seed."""
    path = import_path(train.model)
    cls = resolve(path)
    kwargs = estimator_kwargs(train)
    try:
        accepts_seed = "random_state" in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a class without an inspectable signature: pass only what was given
        accepts_seed = False
    if accepts_seed:
        kwargs.setdefault("random_state", train.seed)
    try:
        estimator = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise EstimatorError(KWARGS_REJECTED.format(path=path, name=cls.__name__, kwargs=kwargs, error=exc)) from None
    # on the instance: predict_proba may depend on the arguments (SVC needs probability=True)
    missing = [method for method in ("fit", "predict_proba") if not callable(getattr(estimator, method, None))]
    if missing:
        raise EstimatorError(NOT_A_CLASSIFIER.format(path=path, name=cls.__name__, missing=" or ".join(missing)))
    return estimator


def family(estimator: Any) -> Family:
    """How the estimator is explained and whether its numeric inputs are standardised (see the module doc)."""
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if isinstance(estimator, GradientBoostingClassifier | HistGradientBoostingClassifier):
        return "tree" if estimator.loss == "log_loss" else "other"
    lightgbm = sys.modules.get("lightgbm")  # not imported: the estimator cannot be one of its classes
    if lightgbm is not None and isinstance(estimator, lightgbm.LGBMClassifier):
        return "tree" if estimator.objective in (None, "binary") else "other"
    if isinstance(estimator, LogisticRegression):
        return "linear"
    return "other"
