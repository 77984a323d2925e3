"""lls: scaffold, and keep current, real-time ML model-serving services."""

from importlib.metadata import PackageNotFoundError, version

from ._checks import CHECKS, check_answer
from ._errors import InvalidAnswer, LlsError, UserMessageError
from ._jinja import ChecksExtension
from ._landing import Finished, abort_upgrade, continue_upgrade
from ._new import NewService, new
from ._quantity import QuantityError, parse_quantity
from ._shipped import TEMPLATE_URL, Release, Shipped, shipped
from ._steps import Steps
from ._upgrade import Upgrade, upgrade

try:
    __version__ = version("lls")
except PackageNotFoundError:  # pragma: no cover - running from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "CHECKS",
    "TEMPLATE_URL",
    "ChecksExtension",
    "Finished",
    "InvalidAnswer",
    "LlsError",
    "NewService",
    "QuantityError",
    "Release",
    "Shipped",
    "Steps",
    "Upgrade",
    "UserMessageError",
    "__version__",
    "abort_upgrade",
    "check_answer",
    "continue_upgrade",
    "new",
    "parse_quantity",
    "shipped",
    "upgrade",
]
