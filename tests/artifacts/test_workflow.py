"""The CI workflow: actionlint (with shellcheck), GitHub's workflow schema and zizmor's security
audit accept it, for every registry it knows how to log in to; what a security review asks of
it holds (pinned actions, least privilege, OIDC, the image run and scanned before it is pushed,
signed, deployed from the chart package that CI made); the commands and paths its steps use
exist in the generated repository."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from .conftest import VENV_BIN, Renders

# A registry of each kind the workflow logs in to differently: the cloud's own OIDC login for
# the first three, GitHub's token for ghcr.io, stored secrets for any other.
REGISTRIES = {
    "aws": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml",
    "gcp": "europe-west4-docker.pkg.dev/acme-ml/models",
    "azure": "acmeml.azurecr.io/models",
    "ghcr": "ghcr.io/acme",
    "other": "registry.example.com/ml",
}
SECRET_LOGINS = {"REGISTRY_USERNAME", "REGISTRY_PASSWORD", "KUBECONFIG"}


@pytest.fixture(params=sorted(REGISTRIES))
def cloud(request: pytest.FixtureRequest, render: Renders) -> tuple[str, Path]:
    """(kind of registry, a service rendered for it)."""
    kind: str = request.param
    return kind, render(f"registry-{kind}", {"framework": "custom", "registry": REGISTRIES[kind]})


def _workflow(service: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((service / ".github/workflows/ci.yml").read_text())
    return loaded


def _steps(service: Path, job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow(service)["jobs"][job]["steps"]
    return steps


def _run(*command: str | Path, cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_with_shellcheck_accepts_the_workflow(service: Path) -> None:
    _run(VENV_BIN / "actionlint", "-no-color", "-shellcheck", VENV_BIN / "shellcheck",
         ".github/workflows/ci.yml", cwd=service)  # fmt: skip


def test_the_workflow_of_each_registry_passes_actionlint_the_schema_and_zizmor(
    cloud: tuple[str, Path],
) -> None:
    _, service = cloud
    workflow = ".github/workflows/ci.yml"
    _run(VENV_BIN / "actionlint", "-no-color", "-shellcheck", VENV_BIN / "shellcheck", workflow,
         cwd=service)  # fmt: skip
    _run(VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow,
         cwd=service)  # fmt: skip
    # zizmor's audits: unpinned actions, excessive permissions, credentials persisted by
    # checkout, template injection, cache poisoning of released artifacts...
    _run(VENV_BIN / "zizmor", "--offline", "--no-progress", workflow, cwd=service)


def test_zizmor_is_really_auditing(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    done = subprocess.run(
        [VENV_BIN / "zizmor", "--offline", "--no-progress", "--format", "json", bad],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = {finding["ident"] for finding in yaml.safe_load(done.stdout)}
    assert {"unpinned-uses", "template-injection", "artipacked"} <= found, found


def test_dependabot_moves_the_pinned_actions_and_the_base_image(service: Path) -> None:
    config = service / ".github" / "dependabot.yml"
    _run(VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.dependabot", config,
         cwd=service)  # fmt: skip
    updates = yaml.safe_load(config.read_text())["updates"]
    ecosystems = {update["package-ecosystem"]: update["directory"] for update in updates}
    assert ecosystems == {"github-actions": "/", "docker": "/"}


def test_every_action_is_pinned_by_commit_with_its_version_beside_it(service: Path) -> None:
    lines = (service / ".github/workflows/ci.yml").read_text().splitlines()
    uses = [line.split("uses:", 1)[1].strip() for line in lines if re.match(r"\s*(- )?uses:", line)]
    assert len(uses) >= 10
    for use in uses:
        # Dependabot reads the version from the comment and moves both together.
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", use), use


def test_least_privilege_and_short_lived_credentials(cloud: tuple[str, Path]) -> None:
    kind, service = cloud
    workflow = _workflow(service)
    text = (service / ".github/workflows/ci.yml").read_text()
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        permissions = job["permissions"]
        assert permissions.get("contents") == "read", name
        assert set(permissions) <= {"contents", "id-token", "packages"}, name
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name
    # Signing is keyless: the image job always takes an OIDC token; nothing else does but
    # the deployments that log in to a cloud.
    assert jobs["image"]["permissions"]["id-token"] == "write"
    for name in ("test", "chart"):
        assert "id-token" not in jobs[name]["permissions"]
    secrets = set(re.findall(r"secrets\.(\w+)", text))
    oidc = kind in {"aws", "gcp", "azure"}
    for name in ("deploy-staging", "deploy-production"):
        assert ("id-token" in jobs[name]["permissions"]) == oidc, name
    if oidc:
        assert secrets == set()  # only variables (role, cluster names), no stored credential
        assert "vars." in text
    elif kind == "ghcr":
        assert secrets == {"GITHUB_TOKEN", "KUBECONFIG"}
        assert jobs["image"]["permissions"]["packages"] == "write"
    else:
        assert secrets == SECRET_LOGINS
    readme = (service / "README.md").read_text()
    for name in secrets - {"GITHUB_TOKEN"} | set(re.findall(r"vars\.(\w+)", text)):
        assert f"`{name}`" in readme, f"the README does not say what {name} is"


def test_every_job_has_a_timeout_and_only_deployments_queue(service: Path) -> None:
    workflow = _workflow(service)
    # A workflow-level group would hold every later main run behind a production approval.
    assert "concurrency" not in workflow
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 30, name
        if name.startswith("deploy-"):
            assert job["concurrency"] == {"group": name, "cancel-in-progress": False}
        else:
            assert "concurrency" not in job, name


def test_pull_requests_are_checked_and_production_waits_for_staging(service: Path) -> None:
    workflow = _workflow(service)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["deploy-production"]["environment"] == "production"
    assert "deploy-staging" in jobs["deploy-production"]["needs"]
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert {"test", "chart"} <= set(jobs["image"]["needs"])
    for name in ("deploy-staging", "deploy-production"):
        assert jobs[name]["if"] == "github.event_name == 'push'"
        assert "image" in jobs[name]["needs"]


def test_the_image_runs_its_self_tests_and_is_scanned_before_it_is_pushed(service: Path) -> None:
    steps = _steps(service, "image")

    def index(predicate: Any) -> int:
        (found,) = [i for i, step in enumerate(steps) if predicate(step)]
        return found

    build = index(lambda s: str(s.get("uses", "")).startswith("docker/build-push-action@"))
    assert steps[build]["with"]["load"] is True
    assert steps[build]["with"]["push"] is False
    ran = index(lambda s: "docker run" in s.get("run", ""))
    run = steps[ran]["run"]
    assert "selftest" in run
    assert "--read-only" in run  # as the chart runs it: readOnlyRootFilesystem
    assert "--cap-drop ALL" in run
    sbom = index(lambda s: str(s.get("uses", "")).startswith("anchore/sbom-action@"))
    scan = index(lambda s: str(s.get("uses", "")).startswith("anchore/scan-action@"))
    assert steps[scan]["with"]["fail-build"] is True
    assert steps[scan]["with"]["sbom"] == steps[sbom]["with"]["output-file"]
    push = index(lambda s: s.get("id") == "push")
    assert "docker push" in steps[push]["run"]
    sign = index(lambda s: "cosign sign" in s.get("run", ""))
    assert "cosign attest" in steps[sign]["run"]
    assert steps[sign]["run"].count("@$DIGEST") == 2  # the digest pushed, never a tag
    assert build < ran < sbom < scan < push < sign
    for step in steps[push:]:
        assert step["if"] == "github.event_name == 'push'"


def test_deployments_install_the_chart_package_made_with_the_image_tag(
    service: Path, tmp_path: Path
) -> None:
    """The chart job's `helm package`, replayed with Helm's engine, gives a chart whose
    Deployment runs the image the image job tagged; each deployment installs that package."""
    chart_steps = _steps(service, "chart")
    tag_step = next(s for s in chart_steps if s.get("id") == "tag")
    assert tag_step["run"] == 'echo "tag=${GITHUB_SHA::12}" >> "$GITHUB_OUTPUT"'
    package = next(s for s in chart_steps if "helm package" in s.get("run", ""))
    words = shlex.split(package["run"])
    assert words[:3] == ["helm", "package", "chart"]
    assert words[words.index("--app-version") + 1] == "$TAG"
    assert package["env"]["TAG"] == "${{ steps.tag.outputs.tag }}"
    destination = words[words.index("--destination") + 1]
    image_job = _workflow(service)["jobs"]["image"]
    assert image_job["env"]["TAG"] == "${{ needs.chart.outputs.tag }}"

    tag = "0123456789ab"  # what ${GITHUB_SHA::12} gives
    archive = helm.package(service / "chart", destination=tmp_path, app_version=tag)
    with helm.Chart.load_archive(Path(archive).read_bytes()) as chart:
        assert chart.metadata["appVersion"] == tag
        files = chart.render(None, name="demo", namespace="demo", is_install=True)
    manifests = [
        doc
        for name, text in files.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    (deployment,) = [m for m in manifests if m.get("kind") == "Deployment"]
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    workflow_image = _workflow(service)["env"]["IMAGE"]
    assert f"{workflow_image}:{tag}" in images
    # deployed by the digest the image job pushed (and signed), not by the tag
    assert image_job["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"
    digest = "sha256:" + "0a" * 32
    with helm.Chart.load_archive(Path(archive).read_bytes()) as chart:
        files = chart.render(
            {"image": {"digest": digest}}, name="demo", namespace="demo", is_install=True
        )
    (deployment,) = [
        doc
        for name, text in files.items()
        if name.endswith("deployment.yaml")
        for doc in yaml.safe_load_all(text)
    ]
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert f"{workflow_image}@{digest}" in images

    for name in ("deploy-staging", "deploy-production"):
        steps = _steps(service, name)
        download = steps[0]
        assert str(download["uses"]).startswith("actions/download-artifact@")
        assert download["with"]["path"] == destination
        upgrade = next(s for s in steps if "helm upgrade" in s.get("run", ""))["run"]
        words = shlex.split(upgrade.replace("\\\n", " "))
        assert words[:5] == ["helm", "upgrade", "--install", "$RELEASE", f"{destination}/*.tgz"]
        assert "--atomic" in words
        assert not any(w.startswith("image.tag") for w in words)  # the package's appVersion
        step = next(s for s in steps if "helm upgrade" in s.get("run", ""))
        assert step["env"]["DIGEST"] == "${{ needs.image.outputs.digest }}"
        assert words[words.index("--set") + 1].startswith("image.digest=${DIGEST:?")
        assert not any("checkout" in str(s.get("uses", "")) for s in steps)


def test_the_commands_and_paths_of_its_steps_exist(service: Path) -> None:
    runs = [
        (step.get("if", ""), step["run"])
        for job in _workflow(service)["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]
    assert any(run == "python3 dev.py test" for _, run in runs)
    dev = subprocess.run(
        ["python3", "dev.py", "nonsense"], cwd=service, capture_output=True, text=True, check=False
    )
    assert "python3 dev.py test" in dev.stderr  # dev.py documents the job it is asked for
    for condition, run in runs:
        for line in run.splitlines():
            words = shlex.split(line.strip().rstrip("\\"))
            if words[:1] == [".venv/bin/serving-runtime"]:
                sub = words[1]
                if condition.startswith("hashFiles("):
                    # waits for the baseline file its condition names (issue 7 brings both)
                    assert re.fullmatch(r"hashFiles\('[\w/.]+'\) != ''", condition)
                    continue
                done = subprocess.run(
                    [VENV_BIN / "serving-runtime", sub, "--help"],
                    capture_output=True,
                    check=False,
                )
                assert done.returncode == 0, f"serving-runtime has no {sub!r} command"
            if words[:2] == ["helm", "lint"] or words[:1] == ["helm"]:
                assert (service / "chart" / "Chart.yaml").is_file()
    chart_job = _steps(service, "chart")
    promtool = next(s["run"] for s in chart_job if "promtool" in s.get("run", ""))
    rules_file = re.search(r"/rules/(\S+)", promtool)
    assert rules_file
    assert (service / "chart" / "files" / rules_file.group(1)).is_file()
    image = _steps(service, "image")
    lint = next(s for s in image if str(s.get("uses", "")).startswith("hadolint/"))
    assert (service / lint["with"]["dockerfile"]).is_file()
    pip_cache = _steps(service, "test")[1]["with"]["cache-dependency-path"]
    assert sorted(service.glob(pip_cache)), pip_cache


def test_codeowners_names_the_team_of_the_repositorys_organisation(service: Path) -> None:
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    owner = answers["repository_url"].split("/")[3]
    rules = [
        line.split()
        for line in (service / ".github" / "CODEOWNERS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules == [["*", f"@{owner}/{answers['team']}"]]  # GitHub's @org/team
