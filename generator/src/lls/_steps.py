"""How `new` and `upgrade` tell their caller which step they are in, without printing.

The command line passes an object that shows each step while it runs (a spinner with the
step's name and elapsed time, in a terminal); a program using lls as a library passes
nothing and hears nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Steps(Protocol):
    """Told of every step that can take a while: `with steps.step("Rendering ..."): ...`."""

    def step(self, name: str) -> AbstractContextManager[None]:
        """The block of the step called `name`; it ends with the block, or its exception."""
        ...


class Silent:
    """Steps that nobody watches: the library's default."""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run the block; report nothing."""
        yield


SILENT = Silent()
