"""`lls fleet upgrade`: every service of a fleet to a release, each on its own branch.

For each repository, in a temporary clone of it: `lls upgrade` (a branch
lls-upgrade/SERVICE/VERSION, as a team would make it), optionally the service's own tests,
then the branch is brought into the repository (a new ref; its checkout, index and files are
never touched) and, optionally, pushed to its remote, with a pull request opened on GitHub.
A repository whose branch is already there (in it, or on the remote when pushing) is not
upgraded again: a second run only does what the first left undone (a push, a pull request).
Conflicts are reported with their files and left to the team's own `lls upgrade`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import _service
from ._errors import LlsError
from ._fleet import default_jobs, run_lls
from ._git import failure, git, identity, repository_top
from ._github import GitHub
from ._runner import Children, Interrupted, each
from ._shipped import Release, Shipped, shipped
from ._sources import Member, default_cache, members
from ._upgrade import upgrade_branch

STATES = ("upgraded", "conflicts", "tests-failed", "refused", "failed", "current", "interrupted")


@dataclass(frozen=True)
class Outcome:
    """What became of one repository."""

    source: str  # the service's path, or the URL it was cloned from
    state: str  # one of STATES
    path: Path | None = None
    service_name: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    branch: str | None = None
    commit: str | None = None
    already: bool = False  # the branch was there from an earlier run: not upgraded again
    pushed: bool = False
    pull_request: str | None = None
    conflicts: tuple[str, ...] = ()
    reason: str | None = None
    log: Path | None = None  # the service's test output, with --test


@dataclass(frozen=True)
class Plan:
    """What `fleet_upgrade` is asked to do for each repository."""

    release: Release
    test: bool = False
    push: bool = False
    remote: str = "origin"
    github: GitHub | None = None
    logs: Path | None = None  # where test output is kept (default: lls's cache)


def fleet_upgrade(
    sources: Sequence[str],
    plan: Plan,
    *,
    jobs: int | None = None,
    cache: Path | None = None,
    package: Shipped | None = None,
    done: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], bool]:
    """Upgrade every service the sources name; the outcomes, and whether Ctrl-C stopped it.

    `done` is told of each outcome as it comes (for progress).
    """
    package = package or shipped()
    cache = cache or default_cache()
    jobs = jobs or default_jobs()
    found, failed = members(sources, cache=cache, jobs=jobs)
    outcomes = [Outcome(f.source, "failed", reason=f.error) for f in failed]
    children = Children()
    logs = plan.logs or cache / "logs"

    def work(member: Member) -> Outcome:
        outcome = _one(children, package, replace(plan, logs=logs), member)
        if done is not None:
            done(outcome)
        return outcome

    results, interrupted = each(children, work, found, jobs)
    return outcomes + results, interrupted


def _one(children: Children, package: Shipped, plan: Plan, member: Member) -> Outcome:
    source = member.url or str(member.path)
    try:
        answers = _service.read_answers(member.path)
        release = _service.recorded_release(package, answers)
    except LlsError as error:
        return Outcome(source, "refused", member.path, reason=str(error))
    name = str(answers.get("service_name", member.path.name))
    base = Outcome(source, "failed", member.path, name, release.tag, plan.release.tag)
    if release.version >= plan.release.version:
        return replace(base, state="current")
    top = repository_top(member.path)
    if top is None:
        return replace(base, state="refused", reason=f"{member.path} is not in a git repository")
    branch = upgrade_branch(name, plan.release, {})
    base = replace(base, branch=branch)
    if member.url:  # lls's own clone of the URL: its remote is the URL
        plan = replace(plan, remote="origin")
    try:
        done = _upgraded(children, plan, base, top, member.path.relative_to(top))
    except Interrupted:
        return replace(base, state="interrupted", reason="interrupted; nothing was changed")
    except LlsError as error:
        return replace(base, reason=str(error))
    if member.url and not plan.push and done.state == "upgraded":
        return replace(done, reason=f"in lls's clone of {member.url} only: --push publishes it")
    return done


def _upgraded(children: Children, plan: Plan, base: Outcome, top: Path, inside: Path) -> Outcome:
    assert base.branch is not None
    ref = f"refs/heads/{base.branch}"
    local = _sha(children, top, "rev-parse", "--verify", "--quiet", ref)
    remote_url = _remote_url(top, plan.remote) if plan.push else None
    remote = None
    if plan.push:
        listed = _git(children, top, "ls-remote", plan.remote, ref)
        remote = listed.split()[0] if listed.strip() else None
    if remote or (local and not plan.push):
        outcome = replace(base, state="upgraded", commit=remote or local, already=True)
        return _pull_request(children, plan, outcome, top, remote_url, pushed=bool(remote))
    if local:  # upgraded by an earlier run that did not push: push it now
        outcome = replace(base, state="upgraded", commit=local, already=True)
        _git(children, top, "push", "--quiet", plan.remote, f"{ref}:{ref}")
        return _pull_request(children, plan, outcome, top, remote_url, pushed=True)
    work = Path(tempfile.mkdtemp(prefix=f"lls-fleet-{base.service_name}-"))
    try:
        clone = work / "repository"
        _git(children, work, "clone", "--quiet", "--no-tags", str(top), str(clone))
        outcome = _upgrade_in(children, plan, base, top, clone / inside)
        if outcome.state != "upgraded":
            return outcome
        # Brought in: a new ref only. Its checkout, index and files are the team's.
        _git(children, top, "fetch", "--quiet", "--no-tags", str(clone), f"{ref}:{ref}")
        if plan.push:
            _git(children, top, "push", "--quiet", plan.remote, f"{ref}:{ref}")
        return _pull_request(children, plan, outcome, top, remote_url, pushed=plan.push)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _upgrade_in(children: Children, plan: Plan, base: Outcome, top: Path, service: Path) -> Outcome:
    """`lls upgrade` in the clone, as the repository's own git identity; then its tests."""
    env = identity(top).env
    result = run_lls(
        children, "upgrade", "--defaults", "--json", "--to", plan.release.tag, str(service), env=env
    )
    status = result.get("exit_status")
    if status == 130:
        raise Interrupted
    if result.get("conflicts"):
        return replace(base, state="conflicts", conflicts=tuple(result["conflicts"]))
    if status != 0:
        state = "refused" if status == 2 else "failed"
        return replace(base, state=state, reason=str(result.get("error")))
    if result.get("current"):
        return replace(base, state="current")
    outcome = replace(base, state="upgraded", commit=result.get("commit"))
    if not plan.test:
        return outcome
    assert plan.logs is not None
    plan.logs.mkdir(parents=True, exist_ok=True)
    log = plan.logs / f"{base.service_name}-{plan.release.tag}.log"
    with log.open("w", encoding="utf-8") as written:
        tested = children.run([sys.executable, "dev.py", "test"], cwd=service, env=env, log=written)
    if tested.returncode != 0:
        last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        reason = f"its tests failed ({': '.join(last) or 'no output'}); see {log}"
        return replace(outcome, state="tests-failed", reason=reason, log=log)
    return replace(outcome, log=log)


def _pull_request(
    children: Children,
    plan: Plan,
    outcome: Outcome,
    top: Path,
    remote_url: str | None,
    *,
    pushed: bool,
) -> Outcome:
    outcome = replace(outcome, pushed=pushed)
    if not (pushed and plan.github and remote_url and outcome.branch):
        return outcome
    repository = plan.github.repository(remote_url)
    if repository is None:
        return outcome  # not a GitHub repository: pushed, no pull request
    message = _git(children, top, "log", "-1", "--format=%B", f"refs/heads/{outcome.branch}")
    title, _, body = message.strip().partition("\n")
    made = plan.github.pull_request(
        *repository,
        head=outcome.branch,
        base=_base_branch(top, plan.remote),
        title=title,
        body=body.strip() + "\n\nOpened by `lls fleet upgrade`.",
    )
    return replace(outcome, pull_request=made.url)


def _git(children: Children, cwd: Path, *args: str) -> str:
    # Not through GitPython: the fleet's git commands (clone, fetch, push) run in a session
    # of their own, so that Ctrl-C is passed on to them by `children`, which must hold each
    # process while it runs; GitPython runs a command to its end, or hands it back wrapped
    # in an object that kills it when dropped.
    ran = children.run(["git", *args], cwd=cwd)
    if ran.returncode != 0:
        raise LlsError(failure(args, ran.stderr))
    return ran.stdout


def _sha(children: Children, cwd: Path, *args: str) -> str | None:
    ran = children.run(["git", *args], cwd=cwd)
    return ran.stdout.strip() or None if ran.returncode == 0 else None


def _remote_url(top: Path, remote: str) -> str:
    """The remote's URL as configured (before git's insteadOf rewriting: it names the host)."""
    try:
        return git(top, "config", "--get", f"remote.{remote}.url").strip()
    except LlsError:
        raise LlsError(f"{top} has no remote {remote!r} to push to") from None


def _base_branch(top: Path, remote: str) -> str:
    """The branch the upgrade started from: the one checked out, else the remote's default."""
    current = git(top, "branch", "--show-current").strip()
    if current:
        return current
    try:
        default = git(top, "symbolic-ref", "--short", f"refs/remotes/{remote}/HEAD").strip()
    except LlsError:
        return "main"
    return default.removeprefix(f"{remote}/")
