"""The exceptions lls raises.

    LlsError                    every error lls raises on purpose
     └── UserMessageError       the user can act on it: printed as one line, exit status 2
          └── InvalidAnswer     an answer to a template question was refused (key and reason)

Only the command-line module prints them and chooses the exit status.
"""

from __future__ import annotations


class LlsError(Exception):
    """Root of every error lls raises on purpose."""


class UserMessageError(LlsError):
    """An error whose message is meant for the person running lls."""


class InvalidAnswer(UserMessageError):
    """An answer that a template question refuses, with the reason in one line."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
