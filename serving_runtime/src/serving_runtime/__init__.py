"""The serving runtime of lls services: the team writes load() and predict(), this does the rest.

The public surface; everything else lives in private modules.
"""

from typing import TYPE_CHECKING, Any

from ._artifacts import fetch_artifact
from ._config import ModelConfig, ServiceConfig, VersionConfig, find_config, load_config
from ._errors import (
    ArtifactError,
    BadRequest,
    ConfigError,
    ModelLoadError,
    NotFound,
    NotReady,
    PredictFailed,
    RequestError,
    ServingRuntimeError,
)
from ._model import SelfTestReport, SelfTestRow, load_model, run_selftest
from ._settings import HttpSettings, ServerSettings
from ._version import __version__

if TYPE_CHECKING:
    from ._app import create_app
    from .http import App

# The HTTP layer imports prometheus-client, whose multi-process mode must be chosen (by
# `serving-runtime serve`) before that import: so these load on first use.
_LAZY = {"create_app": "._app", "App": ".http"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "App",
    "ArtifactError",
    "BadRequest",
    "ConfigError",
    "HttpSettings",
    "ModelConfig",
    "ModelLoadError",
    "NotFound",
    "NotReady",
    "PredictFailed",
    "RequestError",
    "SelfTestReport",
    "SelfTestRow",
    "ServerSettings",
    "ServiceConfig",
    "ServingRuntimeError",
    "VersionConfig",
    "__version__",
    "create_app",
    "fetch_artifact",
    "find_config",
    "load_config",
    "load_model",
    "run_selftest",
]
