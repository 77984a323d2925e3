"""`python -m lls`: the `lls` command (how `lls fleet` runs one per repository)."""

from ._cli import main

main()
