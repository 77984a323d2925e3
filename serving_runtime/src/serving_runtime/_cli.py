"""`serving-runtime`: serve a service's models, self-test them, and change them at run time.

The only module that prints or exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from ._admin_socket import DEFAULT_BIND, UnixConnection, default_socket
from ._config import ServiceConfig, find_config, load_config
from ._errors import ModelLoadError, ServingRuntimeError
from ._model import import_class
from ._version import __version__

EXIT_FAILED = 1  # self-tests missed, a server answered with an error
EXIT_USAGE = 2  # bad configuration or arguments


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SERVING_RUNTIME_{name}", default)


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serving-runtime",
        description="Serve, self-test and manage the models of an lls service. Run it inside "
        "the service repository (it finds models.yaml there) or pass --config.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="load every model, then serve HTTP until SIGTERM")
    _config_flag(serve)
    serve.add_argument(
        "--bind",
        action="append",
        help="HOST:PORT to listen on, repeatable [$SERVING_RUNTIME_BIND, 127.0.0.1:8080]",
    )
    for name, default, text in (
        ("workers", "2", "worker processes (one per core is usual)"),
        (
            "threads",
            "1",
            "predict threads per worker: predicts run off the event loop, so probes never "
            "wait; raise it only for predicts that wait on I/O (a feature store, a service)",
        ),
        (
            "timeout",
            "30",
            "seconds before a silent worker, or one stuck in a predict, is restarted",
        ),
        ("graceful-timeout", "30", "seconds in-flight requests get to finish on SIGTERM"),
        ("keepalive", "75", "seconds an idle keep-alive connection is kept"),
        ("max-requests", "0", "restart a worker after this many requests (0: never)"),
        ("max-body-bytes", str(1024 * 1024), "largest request body accepted"),
        (
            "body-timeout",
            "10",
            "seconds a client gets to send a request's headers, then its whole body (then 408)",
        ),
    ):
        env = name.upper().replace("-", "_")
        serve.add_argument(
            f"--{name}",
            type=int,
            default=int(_env(env, default)),
            help=f"{text} [$SERVING_RUNTIME_{env}, {default}]",
        )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=float(_env("REQUEST_TIMEOUT", "10")),
        help="seconds from a request's arrival to its answer, below --timeout: past it the "
        "answer is a 504 and rows not yet predicted never are; a proxy's "
        "x-envoy-expected-rq-timeout-ms shortens it per request (0: none of its own) "
        "[$SERVING_RUNTIME_REQUEST_TIMEOUT, 10]",
    )
    serve.add_argument(
        "--inline-predict-ms",
        type=float,
        default=float(_env("INLINE_PREDICT_MS", "1")),
        help="a model whose last 16 predicts each took less than this (measured) is predicted "
        "on the event loop, which costs less CPU than a thread, for requests of no more "
        "rows; others run on the predict threads, as with --threads above 1, so probes "
        "never wait behind them (0: every predict on a thread) "
        "[$SERVING_RUNTIME_INLINE_PREDICT_MS, 1]",
    )
    serve.add_argument(
        "--latency-objective-ms",
        type=int,
        default=int(_env("LATENCY_OBJECTIVE_MS", "0")) or None,
        help="the latency objective: one bound of the lls_request_duration_seconds histogram, "
        "so alerts count the requests over it exactly (1 to 60000) "
        "[$SERVING_RUNTIME_LATENCY_OBJECTIVE_MS]",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "0")) or None,
        help="the port of one --bind that serves /metrics alone, and the only one that serves "
        "it (other paths are 404 there, /metrics is 404 on the others) "
        "[$SERVING_RUNTIME_METRICS_PORT]",
    )
    serve.add_argument(
        "--server",
        choices=["gunicorn", "granian"],
        default=_env("SERVER", "gunicorn"),
        help="the prefork HTTP server [$SERVING_RUNTIME_SERVER, gunicorn]",
    )
    serve.add_argument(  # runtime 0.3's choice, accepted and ignored: one worker serves both
        "--worker", choices=["fast", "threads"], default=None, help=argparse.SUPPRESS
    )
    for name, text in (
        ("log-features", "write each request's features in its log line"),
        (
            "load-in-place",
            "a version loaded at run time (admin load, the overrides file) is loaded by each "
            "worker in a thread beside its requests, rather than by a new worker that then "
            "replaces it; fewer processes, slower requests while it loads",
        ),
        (
            "no-preload",
            "load no model in the server itself: each worker and the background process "
            "load their own once forked (for libraries that are not fork-safe; not under "
            "--server granian)",
        ),
    ):
        env = name.upper().replace("-", "_")
        serve.add_argument(
            f"--{name}",
            action="store_true",
            default=_flag(_env(env, "")),
            help=f"{text} [$SERVING_RUNTIME_{env}]",
        )
    serve.add_argument(
        "--overrides",
        type=Path,
        default=_env("OVERRIDES", "") or None,
        help="a partial models.yaml (models.<id>.primary) applied over it at start and "
        "whenever the file changes [$SERVING_RUNTIME_OVERRIDES]",
    )
    serve.add_argument(
        "--delivery-cache",
        type=Path,
        default=_env("DELIVERY_CACHE", "") or None,
        help="where the versions the overrides file declares by URI are fetched to "
        "[$SERVING_RUNTIME_DELIVERY_CACHE, delivered/ in the server's state folder]",
    )
    serve.add_argument(
        "--delivery-max-bytes",
        type=int,
        default=int(_env("DELIVERY_MAX_BYTES", "0")) or None,
        help="the largest artifact a declared version may have "
        "[$SERVING_RUNTIME_DELIVERY_MAX_BYTES, 1073741824]",
    )
    serve.add_argument(
        "--delivery-timeout",
        type=float,
        default=float(_env("DELIVERY_TIMEOUT", "0")) or None,
        help="seconds a declared version's fetch may take (a stalled read fails after 30) "
        "[$SERVING_RUNTIME_DELIVERY_TIMEOUT, 300]",
    )
    serve.add_argument(
        "--delivery-startup-budget",
        type=float,
        default=float(_env("DELIVERY_STARTUP_BUDGET", "0")) or None,
        help="seconds a starting server gives the declared versions' fetches before it is "
        "ready; those not fetched by then are fetched in the background "
        "[$SERVING_RUNTIME_DELIVERY_STARTUP_BUDGET, 150]",
    )
    serve.add_argument(
        "--artifact-dir",
        action="append",
        type=Path,
        help="a folder `admin load --artifact` may read from, repeatable "
        "[$SERVING_RUNTIME_ARTIFACT_DIR, artifacts/ beside models.yaml]",
    )
    serve.add_argument(
        "--admin-socket",
        type=Path,
        default=_env("ADMIN_SOCKET", "") or None,
        help="the Unix socket that takes admin calls (serving-runtime admin) without a token; "
        "only this user can open it [$SERVING_RUNTIME_ADMIN_SOCKET, "
        "$TMPDIR/serving-runtime-UID-PORT/admin.sock, PORT the first --bind's]",
    )
    serve.add_argument(
        "--admin-token",
        default=_env("ADMIN_TOKEN", "") or None,
        help="a bearer token that authorises admin calls over TCP too; without it they are "
        "refused there [$SERVING_RUNTIME_ADMIN_TOKEN]",
    )

    _fetch_and_selftest_parsers(commands)

    drift = commands.add_parser(
        "drift",
        help="run each model's primary on drift/<model>/inputs.jsonl and compare with "
        "baseline.jsonl there; exit 1 on a row beyond tolerance or a missing dataset",
    )
    _config_flag(drift)
    drift.add_argument("--model", help="only this model id")
    drift.add_argument("--dir", type=Path, help="drift folder [drift/ next to models.yaml]")
    drift.add_argument(
        "--update",
        action="store_true",
        help="write the baselines from the current outputs, on purpose; says how many changed",
    )
    drift.add_argument(
        "--allow-missing", action="store_true", help="skip models that have no dataset yet"
    )

    check = commands.add_parser("check", help="validate models.yaml and import every class")
    _config_flag(check)
    check.add_argument(
        "--overrides",
        type=Path,
        help="also check an overrides file against models.yaml (models and versions it names)",
    )

    records = commands.add_parser(
        "records", help="read recorded outputs back, as JSON lines or as new test_data"
    )
    _config_flag(records)
    records.add_argument("--dir", type=Path, help="records folder [recording.path of models.yaml]")
    records.add_argument("--model", help="only this model id")
    records.add_argument("--kind", choices=["primary", "shadow"], help="only these records")
    records.add_argument("--limit", type=int, help="only the newest N")
    records.add_argument(
        "--as-test-data",
        action="store_true",
        help="print a test_data list (features and the output as expected) for the model class",
    )

    models = commands.add_parser("models", help="list a running server's models and versions")
    _url_flag(models)

    _admin_parser(commands)
    return parser


def _admin_parser(commands: Any) -> None:
    admin = commands.add_parser("admin", help="change a running server's models")
    ops = admin.add_subparsers(dest="operation", required=True, metavar="OPERATION")
    for op, text in (
        ("promote", "make VERSION the primary (it must be loaded and passing)"),
        ("rollback", "go back to the previous primary"),
        ("load", "load VERSION (and self-test it) without serving it"),
        ("unload", "drop VERSION (not the primary)"),
        ("traffic", "split requests naming no version at weights: v1=90 v2=10 (--off ends it)"),
    ):
        sub = ops.add_parser(op, help=text)
        sub.add_argument("model_id", metavar="MODEL")
        if op == "traffic":
            sub.add_argument(
                "weights",
                nargs="*",
                metavar="VERSION=WEIGHT",
                help="whole numbers, 0 or more; the same routing key keeps one version",
            )
            sub.add_argument(
                "--off", action="store_true", help="end the experiment: the primary answers all"
            )
        elif op != "rollback":
            sub.add_argument("version", metavar="VERSION")
        if op == "load":
            sub.add_argument("--artifact", help="artifact of a version not in models.yaml")
            sub.add_argument("--class", dest="class_path", help="module:Class for that version")
            sub.add_argument(
                "--shadow", action="store_true", help="run it as a shadow of the primary"
            )
        sub.add_argument(
            "--socket",
            type=Path,
            default=_env("ADMIN_SOCKET", "") or None,
            help="the server's admin socket [$SERVING_RUNTIME_ADMIN_SOCKET, the default one "
            "of the server on $SERVING_RUNTIME_BIND's port, else 8080]",
        )
        sub.add_argument(
            "--url",
            help="call the server over TCP instead (http://HOST:PORT): needs its --token",
        )
        sub.add_argument(
            "--token",
            default=_env("ADMIN_TOKEN", "") or None,
            help="the server's --admin-token, for --url [$SERVING_RUNTIME_ADMIN_TOKEN]",
        )


def _fetch_and_selftest_parsers(commands: Any) -> None:
    selftest = commands.add_parser(
        "selftest", help="load every model version and check its test_data; exit 1 on a miss"
    )
    _config_flag(selftest)
    selftest.add_argument("--model", help="only this model id")
    fetch = commands.add_parser(
        "fetch",
        help="copy every artifact models.yaml names by URI into the artifact cache, checking "
        "its sha256 (once: a cached one is checked, not fetched again); exit 1 if one fails",
    )
    _config_flag(fetch)
    fetch.add_argument(
        "--cache",
        type=Path,
        help="the artifact cache [$SERVING_RUNTIME_ARTIFACT_CACHE, artifacts/.fetched next to "
        "models.yaml]",
    )


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="models.yaml to use [$SERVING_RUNTIME_CONFIG, found upward]"
    )


def _url_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=_env("URL", "http://127.0.0.1:8080"),
        help="the server [$SERVING_RUNTIME_URL, http://127.0.0.1:8080]",
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `serving-runtime` command."""
    args = _parser().parse_args(argv)
    try:
        code = _COMMANDS[args.command](args)
    except ServingRuntimeError as exc:
        print(f"serving-runtime: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _serve(args: argparse.Namespace) -> int:
    from ._server import serve
    from ._settings import HttpSettings, ServerSettings

    config = args.config or find_config()
    load_config(config)  # a bad file is reported here, before any worker starts
    # Read by every process the server starts, forked or not.
    if args.overrides is not None:
        os.environ["SERVING_RUNTIME_OVERRIDES"] = str(args.overrides.absolute())
    if args.delivery_cache is not None:
        os.environ["SERVING_RUNTIME_DELIVERY_CACHE"] = str(args.delivery_cache.absolute())
    bounds = (
        ("MAX_BYTES", args.delivery_max_bytes),
        ("TIMEOUT", args.delivery_timeout),
        ("STARTUP_BUDGET", args.delivery_startup_budget),
    )
    for name, bound in bounds:
        if bound is not None and bound <= 0:
            raise ServingRuntimeError(
                f"--delivery-{name.lower().replace('_', '-')} must be above 0"
            )
        if bound is not None:
            os.environ[f"SERVING_RUNTIME_DELIVERY_{name}"] = (
                f"{bound:g}" if isinstance(bound, float) else str(bound)
            )
    if args.artifact_dir:
        dirs = os.pathsep.join(str(d.absolute()) for d in args.artifact_dir)
        os.environ["SERVING_RUNTIME_ARTIFACT_DIR"] = dirs
    if not 0 <= args.inline_predict_ms <= 1000:
        raise ServingRuntimeError(
            f"--inline-predict-ms {args.inline_predict_ms:g} is not within 0 to 1000"
        )
    if args.request_timeout < 0 or args.request_timeout >= args.timeout:
        raise ServingRuntimeError(
            f"--request-timeout ({args.request_timeout:g} s) must be at least 0 and below "
            f"--timeout ({args.timeout} s), which replaces a worker stuck in a predict"
        )
    objective = args.latency_objective_ms
    if objective is not None and not 1 <= objective <= 60_000:
        raise ServingRuntimeError(f"--latency-objective-ms {objective} is not within 1 to 60000")
    if args.worker is not None or _env("WORKER", ""):
        from ._logs import JsonLog  # the server's log is JSON lines: this note is one too

        JsonLog().event(
            "warning",
            "worker_setting_ignored",
            message="--worker (SERVING_RUNTIME_WORKER) is no longer used: every worker runs "
            "one event loop, with predicts on --threads threads",
        )
    binds = args.bind or _env("BIND", DEFAULT_BIND).split(",")
    admin_socket = None
    if args.server == "gunicorn":
        admin_socket = (args.admin_socket or default_socket(binds[0])).absolute()
    elif args.admin_socket is not None:
        raise ServingRuntimeError(
            "--server granian binds no admin socket: admin calls need --admin-token there"
        )
    elif len(binds) != 1:  # granian listens on one address (so no --metrics-port of its own)
        raise ServingRuntimeError(
            f"--server granian serves one --bind, not {len(binds)} ({', '.join(binds)}): "
            "a second port (e.g. for --metrics-port) needs --server gunicorn"
        )
    server = ServerSettings(
        bind=tuple(binds),
        workers=args.workers,
        threads=args.threads,
        inline_predict_ms=args.inline_predict_ms,
        timeout=args.timeout,
        graceful_timeout=args.graceful_timeout,
        keepalive=args.keepalive,
        preload=not args.no_preload,
        max_requests=args.max_requests,
        server=args.server,
        load_in_place=args.load_in_place,
    )
    ports = {bind.rpartition(":")[2] for bind in binds if not bind.startswith("unix:")}
    if args.metrics_port is not None and str(args.metrics_port) not in ports:
        raise ServingRuntimeError(
            f"--metrics-port {args.metrics_port} is the port of no --bind ({', '.join(binds)})"
        )
    http = HttpSettings(
        max_body_bytes=args.max_body_bytes,
        log_features=args.log_features,
        admin_token=args.admin_token,
        admin_socket=None if admin_socket is None else str(admin_socket),
        body_timeout=float(args.body_timeout),
        request_timeout=args.request_timeout,
        latency_objective_ms=objective,
        metrics_port=args.metrics_port,
    )
    serve(config.resolve(), server, http)
    return 0


def _selftest(args: argparse.Namespace) -> int:
    from ._registry import Registry, plan_from_config
    from ._report import failed_versions, failure_table, summary_lines

    config = load_config(args.config or find_config())
    plan = plan_from_config(config)
    if args.model is not None:
        if args.model not in plan:
            raise ServingRuntimeError(f"no model {args.model!r} in {', '.join(plan)}")
        plan = {args.model: plan[args.model]}
    registry = Registry(config.root)
    registry.apply(plan)
    print("\n".join(summary_lines(registry.snapshot)))
    failed = failed_versions(registry.snapshot)
    for entry, version in failed:
        print("\n" + failure_table(entry, version))
    return EXIT_FAILED if failed else 0


def _fetch(args: argparse.Namespace) -> int:
    from ._artifacts import default_cache, fetch_artifact
    from ._errors import ArtifactError

    config = load_config(args.config or find_config())
    cache = args.cache or default_cache(config.root)
    failed = 0
    for model_id, model in config.models.items():
        for version, given in model.versions.items():
            if given.uri is None or given.sha256 is None:
                continue
            try:
                path, fetched = fetch_artifact(given.uri, given.sha256, cache)
            except ArtifactError as exc:
                print(f"FAIL  {model_id} {version}: {exc}")
                failed += 1
                continue
            said = "FETCHED" if fetched else "CACHED "
            print(f"{said} {model_id} {version}: {given.uri} -> {path}")
    return EXIT_FAILED if failed else 0


def _drift(args: argparse.Namespace) -> int:
    from ._drift import BASELINE, check_drift, drift_table, update_baselines

    config = load_config(args.config or find_config())
    run = update_baselines if args.update else check_drift
    failed = False
    for result in run(config, None if args.model is None else [args.model], args.dir):
        name = f"{result.model_id} {result.version}"
        if result.problem is not None:
            skip = result.missing and args.allow_missing
            failed = failed or not skip
            print(f"{'SKIP' if skip else 'FAIL'}  {name}: {result.problem}")
            continue
        report = result.report
        assert report is not None  # no problem: it ran
        if result.written:
            print(
                f"WROTE {name}: {result.folder / BASELINE}, {len(report.rows)} rows, "
                f"{len(report.failures)} changed"
            )
        elif result.passed:
            print(f"PASS  {name}: {len(report.rows)} rows within {report.tolerance:g}")
        else:
            failed = True
            print(
                f"FAIL  {name}: {len(report.failures)} of {len(report.rows)} rows beyond "
                f"tolerance against {result.folder / BASELINE}\n{drift_table(result)}"
            )
    return EXIT_FAILED if failed else 0


def _check(args: argparse.Namespace) -> int:
    path = args.config or find_config()
    config = load_config(path)
    problems = []
    for model_id, model in config.models.items():
        for version in model.versions:
            try:
                import_class(model.class_for(version), config.root)
            except ModelLoadError as exc:
                problems.append(f"{model_id} {version}: {exc}")
            artifact = config.artifact_path(model_id, version)
            uri = model.versions[version].uri
            if artifact is not None and not artifact.exists():
                missing = f"{uri} is not fetched: run serving-runtime fetch" if uri else None
                missing = missing or f"{artifact} does not exist"
                problems.append(f"{model_id} {version}: artifact {missing}")
    if problems:
        raise ServingRuntimeError(f"{path}:\n  " + "\n  ".join(problems))
    versions = sum(len(m.versions) for m in config.models.values())
    print(f"{path}: {len(config.models)} model(s), {versions} version(s), all importable")
    if args.overrides is not None:
        _check_overrides(config, args.overrides)
    return 0


def _check_overrides(config: ServiceConfig, path: Path) -> None:
    from ._overrides import check_overrides

    try:
        problems = check_overrides(config, path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ServingRuntimeError(f"{path}: cannot be read: {exc}") from None
    if problems:
        lines = [f"{model_id or '(file)'}: {why}" for model_id, why in problems.items()]
        raise ServingRuntimeError(f"{path}:\n  " + "\n  ".join(lines))
    print(f"{path}: applies over {config.root / 'models.yaml'}")


def _records(args: argparse.Namespace) -> int:
    from ._recording import read_records

    folder = args.dir
    if folder is None:
        config = load_config(args.config or find_config())
        if config.recording is None:
            raise ServingRuntimeError("models.yaml has no 'recording' section; pass --dir")
        folder = config.recording.path
    if not folder.is_dir():
        raise ServingRuntimeError(f"no records in {folder}: the folder does not exist")
    chosen = [
        r
        for r in read_records(folder)
        if (args.model is None or r.get("model_id") == args.model)
        and (args.kind is None or r.get("kind") == args.kind)
    ]
    if args.as_test_data:
        chosen = [r for r in chosen if "features" in r and r.get("kind") == "primary"]
    if args.limit is not None:
        chosen = chosen[-args.limit :] if args.limit > 0 else []
    if args.as_test_data:
        rows = [{"features": r["features"], "expected": r["output"]} for r in chosen]
        if not rows:
            raise ServingRuntimeError(
                "no primary records with features: set recording.features: true to keep them"
            )
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    for r in chosen:
        sys.stdout.write(orjson.dumps(r).decode() + "\n")
    return 0


def _models(args: argparse.Namespace) -> int:
    listing = _call(args.url, "GET", "/models")
    for model in listing["models"]:
        asked = (model.get("override") or {}).get("primary")
        override = f"  (overrides file: {asked})" if asked else ""
        print(f"{model['model_id']}  primary={model['primary']}{override}")
        traffic = model.get("traffic")
        if traffic:
            weights = " ".join(f"{v}={w}" for v, w in traffic["weights"].items())
            shares = " ".join(f"{v}={s:g}%" for v, s in traffic["shares"].items())
            print(f"  traffic {weights}: {shares or 'no version serves'}")
        for v in model["versions"]:
            problem = f"({v['problem']})" if v.get("problem") else ""
            print(f"  {v['version']:<12} {v['state']:<8} {problem}".rstrip())
    overrides = (listing.get("plan") or {}).get("overrides") or {}
    if overrides.get("path"):
        problems = overrides.get("problems") or {}
        print(f"overrides {overrides['path']}: {'refused in part' if problems else 'applied'}")
        for model_id, why in problems.items():
            print(f"  {model_id or '(file)'}: {why}")
    return 0


def _admin(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.operation == "traffic":
        body["weights"] = _parse_weights(args.weights, args.off)
    elif args.operation != "rollback":
        body["version"] = args.version
    if args.operation == "load" and args.artifact:
        body["artifact"] = args.artifact
        body["shadow"] = args.shadow
        if args.class_path:
            body["class"] = args.class_path
    path = f"/admin/models/{args.model_id}/{args.operation}"
    if args.url:
        result = _call(args.url, "POST", path, body, args.token)
    else:
        admin_socket = args.socket or default_socket(_env("BIND", DEFAULT_BIND).split(",")[0])
        result = _call_socket(admin_socket, "POST", path, body)
    traffic = result.get("traffic")
    if traffic:
        shares = " ".join(f"{v}={share:g}%" for v, share in _percent(traffic["shares"]).items())
        print(f"{result['model_id']}: {args.operation} done; traffic {shares or 'to no version'}")
    else:
        print(f"{result['model_id']}: {args.operation} done; primary is now {result['primary']}")
    if result.get("pending"):
        pids = ", ".join(str(pid) for pid in result["pending"])
        print(f"still loading in worker(s) {pids}: each switches once it has loaded")
    return 0


def _parse_weights(given: list[str], off: bool) -> dict[str, int]:
    if off or not given:
        if given or not off:
            raise ServingRuntimeError("give VERSION=WEIGHT pairs (v1=90 v2=10), or --off alone")
        return {}
    weights = {}
    for pair in given:
        version, _, weight = pair.partition("=")
        if not version or not weight.isdigit():
            raise ServingRuntimeError(f"{pair!r} is not VERSION=WEIGHT (a whole number, 0 or more)")
        weights[version] = int(weight)
    return weights


def _percent(shares: dict[str, int]) -> dict[str, float]:
    total = sum(shares.values())
    return {v: round(100 * w / total, 2) for v, w in shares.items()} if total else {}


# A load waits for every worker to load and self-test the version.
_ADMIN_WAIT = 900


def _call(
    url: str, method: str, path: str, body: Any = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url.rstrip("/") + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=_ADMIN_WAIT) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        message = _message(exc.read(), exc.reason)
        raise ServingRuntimeError(f"{url}{path}: {exc.code} {message}") from None
    except OSError as exc:
        raise ServingRuntimeError(f"{url}: cannot reach the server ({exc})") from None


def _call_socket(admin_socket: Path, method: str, path: str, body: Any) -> dict[str, Any]:
    connection = UnixConnection(admin_socket, _ADMIN_WAIT)
    try:
        connection.request(method, path, orjson.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except OSError as exc:
        raise ServingRuntimeError(f"{admin_socket}: the server did not answer ({exc})") from None
    finally:
        connection.close()
    if response.status != 200:
        message = _message(data, response.reason)
        raise ServingRuntimeError(f"{admin_socket} {path}: {response.status} {message}")
    answer: dict[str, Any] = orjson.loads(data)
    return answer


def _message(data: bytes, reason: str) -> str:
    try:
        return str(orjson.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return reason


_COMMANDS = {
    "serve": _serve,
    "selftest": _selftest,
    "fetch": _fetch,
    "drift": _drift,
    "check": _check,
    "models": _models,
    "records": _records,
    "admin": _admin,
}
