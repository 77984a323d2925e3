"""The `lls` command. The only package that prints, prompts or chooses an exit status."""

from . import _check, _fleet, _new, _upgrade, _versions  # noqa: F401 - each adds its commands
from ._app import app


def main() -> None:
    """Entry point of the `lls` console script."""
    app(prog_name="lls")


__all__ = ["app", "main"]
