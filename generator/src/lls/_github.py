"""A pull request per pushed upgrade branch, through GitHub's REST API (two documented
endpoints: list the repository's pull requests from a head, create one).

Two calls need no client library: the standard library's HTTP, with the headers GitHub's
docs ask for (a token as Bearer, its media type, the API version, a User-Agent). The API and
the server are GitHub's by default, or what GitHub Actions says they are (GITHUB_API_URL,
GITHUB_SERVER_URL): GitHub Enterprise Server works the same.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ._errors import LlsError

API_VERSION = "2022-11-28"
_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?|ssh://(?:[^@/]+@)?|[\w.-]+@)(?P<host>[^/:]+)(?::\d+)?[/:]"
    r"(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?$"
)


@dataclass(frozen=True)
class PullRequest:
    """A pull request of an upgrade branch: its page, and whether this run opened it."""

    url: str
    number: int
    opened: bool  # False: one existed already (open, closed or merged), and was left alone


@dataclass(frozen=True)
class GitHub:
    """Where GitHub's API is, which host its repositories live on, and the token to use."""

    api: str
    server: str
    token: str

    @classmethod
    def from_environment(cls, api: str | None = None) -> GitHub | None:
        """From GITHUB_TOKEN (or GH_TOKEN); None without a token: no pull request is opened."""
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        if not token:
            return None
        return cls(
            api=(api or os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            server=os.environ.get("GITHUB_SERVER_URL") or "https://github.com",
            token=token,
        )

    def repository(self, remote_url: str) -> tuple[str, str] | None:
        """(owner, repository) of a remote URL on this GitHub; None for any other remote."""
        found = _REMOTE.match(remote_url.strip())
        host = urllib.parse.urlsplit(self.server).hostname
        if found is None or found["host"].lower() != (host or "").lower():
            return None
        return found["owner"], found["repo"]

    def pull_request(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """The pull request from `head` into `base`: the existing one, or a new one."""
        path = f"/repos/{_quote(owner)}/{_quote(repo)}/pulls"
        query = urllib.parse.urlencode({"head": f"{owner}:{head}", "state": "all"})
        existing = self._call("GET", f"{path}?{query}")
        if isinstance(existing, list) and existing:
            return PullRequest(str(existing[0]["html_url"]), int(existing[0]["number"]), False)
        made = self._call(
            "POST",
            path,
            {
                "title": title,
                "head": head,
                "base": base,
                "body": body,
                "maintainer_can_modify": True,
            },
        )
        return PullRequest(str(made["html_url"]), int(made["number"]), True)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        from . import __version__

        request = urllib.request.Request(
            self.api + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"lls/{__version__}",
                **({"Content-Type": "application/json"} if body is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            detail = _message(error)
            raise LlsError(f"GitHub answered {error.code} to {method} {path}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise LlsError(f"GitHub's API at {self.api} failed: {error}") from None


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _message(error: urllib.error.HTTPError) -> str:
    try:
        content = json.load(error)
    except (ValueError, OSError):
        return error.reason or "no message"
    if isinstance(content, dict):
        details = [str(e.get("message", e)) for e in content.get("errors") or () if e]
        return "; ".join([str(content.get("message", "")), *details]).strip("; ")
    return str(content)
