"""Make the generated directory a git repository with a first commit (GitPython)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import git

FALLBACK_AUTHOR = git.Actor("lls", "lls@localhost")


@dataclass(frozen=True)
class Commit:
    """The first commit: its id, and who it was made as."""

    sha: str
    author: str
    fallback: bool  # True when no git identity was configured and FALLBACK_AUTHOR was used


def commit_all(path: Path, message: str) -> Commit:
    """`git init` (if needed), stage everything not ignored, and commit it."""
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        repo = git.Repo.init(path, initial_branch="main")
    with repo:
        repo.git.add("--all")
        author, committer, fallback = _identity(repo)
        commit = repo.index.commit(message, author=author, committer=committer)
        return Commit(commit.hexsha, f"{author.name} <{author.email}>", fallback)


def _identity(repo: git.Repo) -> tuple[git.Actor, git.Actor, bool]:
    config = repo.config_reader()
    name = config.get_value("user", "name", "")
    email = config.get_value("user", "email", "")
    fallback = not (name and email)

    def actor(role: str) -> git.Actor:
        return git.Actor(
            os.environ.get(f"GIT_{role}_NAME") or str(name or FALLBACK_AUTHOR.name),
            os.environ.get(f"GIT_{role}_EMAIL") or str(email or FALLBACK_AUTHOR.email),
        )

    author, committer = actor("AUTHOR"), actor("COMMITTER")
    if os.environ.get("GIT_AUTHOR_NAME") and os.environ.get("GIT_AUTHOR_EMAIL"):
        fallback = False
    return author, committer, fallback
