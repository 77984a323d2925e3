"""GitHub's REST API for pull requests, served on 127.0.0.1, checking every request as GitHub's
OpenAPI description defines it (through githubkit's models, generated from that description):
the endpoint, its query parameters and their values, the body's fields and types, and the
headers GitHub's docs require. A request it would refuse is recorded in `problems`, and
answered as GitHub answers it (4xx with a JSON message).

Pull requests are kept per repository; the head branch must exist on the repository's
remote (a local bare repository, as GitHub's would hold the pushed branch).
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from githubkit_schemas.v2022_11_28.models import ReposOwnerRepoPullsPostBody
from githubkit_schemas.v2022_11_28.rest.pulls import PullsClient
from pydantic import TypeAdapter, ValidationError

API_VERSIONS = {"2022-11-28", "2026-03-10"}  # the versions GitHub's REST API answers
MEDIA_TYPES = {"application/vnd.github+json", "application/vnd.github.v3+json"}
PULLS = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls$")
# The query parameters of "List pull requests" and their types, from githubkit's client of it
# (its annotations are strings: evaluated in its module, where Missing and Literal are).
_LIST_PARAMETERS = {
    name: eval(str(parameter.annotation), vars(sys.modules[PullsClient.__module__]))
    for name, parameter in inspect.signature(PullsClient.list).parameters.items()
    if name not in {"self", "owner", "repo", "headers", "stream"}
}


@dataclass
class FakeGitHub:
    """The state of the fake: its token, the repositories' remotes, pull requests, problems."""

    token: str
    remote: Callable[[str, str], Path]  # (owner, repo) -> the bare repository of its remote
    url: str = ""
    pulls: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, target))
        refused = self._headers(headers, body, method)
        if refused:
            return refused
        parts = urlsplit(target)
        found = PULLS.match(parts.path)
        if found is None:
            return self._refuse(404, f"{method} {parts.path}: no such endpoint")
        owner, repo = found["owner"], found["repo"]
        if not self.remote(owner, repo).is_dir():
            return self._refuse(404, f"{owner}/{repo}: no such repository")
        if method == "GET":
            return self._list(owner, repo, parts.query)
        if method == "POST":
            return self._create(owner, repo, body)
        return self._refuse(404, f"{method} {parts.path}: no such endpoint")

    def _refuse(self, status: int, message: str) -> tuple[int, Any]:
        with self.lock:
            self.problems.append(message)
        return status, {"message": message, "documentation_url": "https://docs.github.com/rest"}

    def _headers(self, headers: Any, body: bytes, method: str) -> tuple[int, Any] | None:
        if headers.get("Authorization") not in (f"Bearer {self.token}", f"token {self.token}"):
            return self._refuse(401, "Bad credentials")
        if not headers.get("User-Agent"):
            return self._refuse(403, "a User-Agent header is required")
        if headers.get("Accept") not in MEDIA_TYPES:
            return self._refuse(415, f"Accept {headers.get('Accept')!r} is not GitHub's media type")
        if headers.get("X-GitHub-Api-Version") not in API_VERSIONS:
            return self._refuse(400, f"API version {headers.get('X-GitHub-Api-Version')!r}")
        if method == "POST" and headers.get("Content-Type") != "application/json":
            return self._refuse(415, "a body must be sent as application/json")
        if method == "GET" and body:
            return self._refuse(400, "a GET has no body")
        return None

    def _list(self, owner: str, repo: str, query: str) -> tuple[int, Any]:
        given = dict(parse_qsl(query, keep_blank_values=True))
        for name, value in given.items():
            if name not in _LIST_PARAMETERS:
                return self._refuse(422, f"unknown query parameter {name!r}")
            try:
                TypeAdapter(_LIST_PARAMETERS[name]).validate_python(
                    int(value) if name in ("per_page", "page") else value
                )
            except (ValidationError, ValueError) as error:
                return self._refuse(422, f"query parameter {name}={value!r}: {error}")
        head = given.get("head")
        if head is not None and not re.fullmatch(r"[^:]+:.+", head):
            return self._refuse(422, f"head {head!r} is not user:ref-name")
        state = given.get("state", "open")
        with self.lock:
            listed = [
                pull
                for pull in self.pulls.get((owner, repo), [])
                if (state == "all" or pull["state"] == state)
                and (head is None or f"{owner}:{pull['head']['ref']}" == head)
            ]
        return 200, listed

    def _create(self, owner: str, repo: str, body: bytes) -> tuple[int, Any]:
        try:
            content = json.loads(body)
        except ValueError:
            return self._refuse(400, "Problems parsing JSON")
        if not isinstance(content, dict):
            return self._refuse(400, "the body is not a JSON object")
        unknown = set(content) - set(ReposOwnerRepoPullsPostBody.model_fields)
        if unknown:
            return self._refuse(422, f"unknown fields {sorted(unknown)}")
        try:
            ReposOwnerRepoPullsPostBody.model_validate(content, strict=True)
        except ValidationError as error:
            return self._refuse(422, f"Validation Failed: {error}")
        if "title" not in content and "issue" not in content:
            return self._refuse(422, "title is required unless issue is given")
        heads = self._branches(owner, repo)
        for key in ("head", "base"):
            if content[key] not in heads:
                return self._refuse(422, f"Validation Failed: {key} {content[key]!r} invalid")
        with self.lock:
            pulls = self.pulls.setdefault((owner, repo), [])
            if any(p["head"]["ref"] == content["head"] and p["state"] == "open" for p in pulls):
                return 422, {
                    "message": f"A pull request already exists for {owner}:{content['head']}."
                }
            number = len(pulls) + 1
            pull = {
                "number": number,
                "html_url": f"https://github.com/{owner}/{repo}/pull/{number}",
                "url": f"{self.url}/repos/{owner}/{repo}/pulls/{number}",
                "state": "open",
                "title": content.get("title"),
                "body": content.get("body"),
                "head": {"ref": content["head"], "label": f"{owner}:{content['head']}"},
                "base": {"ref": content["base"], "label": f"{owner}:{content['base']}"},
            }
            pulls.append(pull)
        return 201, pull

    def _branches(self, owner: str, repo: str) -> set[str]:
        listed = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname:short)", "refs/heads"],
            cwd=self.remote(owner, repo),
            capture_output=True,
            text=True,
            check=True,
        )
        return set(listed.stdout.split())


@contextmanager
def serving(fake: FakeGitHub) -> Iterator[FakeGitHub]:
    """The fake on a free port of 127.0.0.1 (its `url`), for the block."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, content = fake.answer(self.command, self.path, self.headers, body)
            data = json.dumps(content).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
