"""The shared plan's rules, on plain data: fallbacks, overrides, and the file they travel in."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from serving_runtime._delivery import arriving, join
from serving_runtime._errors import Conflict
from serving_runtime._overrides import (
    DeclaredVersion,
    ModelOverride,
    Overrides,
    apply_overrides,
    overrides_problems,
)
from serving_runtime._plan import ModelPlan, PodPlan, VersionSpec, mark_failed, promote


def plan(primary: str = "v1", history: tuple[str, ...] = ()) -> PodPlan:
    versions = {v: VersionSpec("m:M", f"{v}.json") for v in ("v1", "v2", "v3")}
    model = ModelPlan(primary, MappingProxyType(versions), history, configured="v1")
    return PodPlan(MappingProxyType({"m": model}))


def never(model_id: str, version: str) -> None:
    return None


def file(**primaries: str) -> Overrides:
    models = {m: ModelOverride(primary=v) for m, v in primaries.items()}
    return Overrides(f"digest-{sorted(primaries.items())}", MappingProxyType(models))


def test_a_failed_primary_falls_back_to_the_newest_earlier_primary_that_has_not_failed() -> None:
    start = plan("v3", history=("v1", "v2"))
    once = mark_failed(start, "m", "v3", "artifact gone")
    assert (once.models["m"].primary, once.models["m"].history) == ("v2", ("v1",))
    twice = mark_failed(once, "m", "v2", "self-tests missed")
    assert twice.models["m"].primary == "v1"
    assert twice.models["m"].versions["v3"].failed == "artifact gone"


def test_without_history_a_failed_primary_falls_back_to_the_configured_one() -> None:
    start = plan("v2")
    assert mark_failed(start, "m", "v2", "gone").models["m"].primary == "v1"


def test_a_failed_version_cannot_be_promoted() -> None:
    failed = mark_failed(plan(), "m", "v2", "its artifact changed")
    with pytest.raises(Conflict, match="its artifact changed"):
        promote(failed, "m", "v2")


def test_each_change_of_the_file_applies_all_of_it() -> None:
    promoted = promote(plan(), "m", "v3")  # a run-time change
    applied = apply_overrides(promoted, file(m="v2"), "/o.yaml", never)
    assert applied.models["m"].primary == "v2"
    emptied = apply_overrides(applied, file(), "/o.yaml", never)
    assert emptied.models["m"].primary == "v1"  # models.yaml's, once the entry is gone
    assert apply_overrides(emptied, file(), "/o.yaml", never) is emptied  # same content


def test_an_entry_that_cannot_apply_is_refused_and_the_model_keeps_its_primary() -> None:
    start = apply_overrides(plan(), file(m="v2"), "/o.yaml", never)
    unknown = apply_overrides(start, file(m="v9", other="v1"), "/o.yaml", never)
    assert unknown.models["m"].primary == "v2"
    assert overrides_problems(unknown) == {
        "m": "model 'm' has no version 'v9'",
        "other": "unknown model 'other'",
    }
    failing = apply_overrides(start, file(m="v3"), "/o.yaml", lambda m, v: "missed a row")
    assert failing.models["m"].primary == "v2"
    assert overrides_problems(failing) == {"m": "version 'v3' missed a row"}


def test_a_version_the_file_asked_for_that_fails_later_is_reported_as_refused() -> None:
    asked = apply_overrides(plan(), file(m="v2"), "/o.yaml", never)
    failed = mark_failed(asked, "m", "v2", "failed its self-tests (in process 7)")
    assert failed.models["m"].primary == "v1"
    assert overrides_problems(failed) == {"m": "version 'v2' failed its self-tests (in process 7)"}


def test_a_file_that_is_not_valid_changes_nothing() -> None:
    start = apply_overrides(plan(), file(m="v2"), "/o.yaml", never)
    bad = apply_overrides(start, Overrides("x", problem="not valid YAML"), "/o.yaml", never)
    assert bad.models == start.models
    assert overrides_problems(bad) == {"": "not valid YAML"}


def test_the_plan_file_keeps_everything() -> None:
    rich = mark_failed(apply_overrides(plan(), file(m="v2"), "/o.yaml", never), "m", "v3", "x")
    assert PodPlan.from_dict(rich.as_dict()) == rich


URI = "https://models.example.com/m-v4.json"


def declaring(sha: str = "a" * 64, **entry: object) -> Overrides:
    version = DeclaredVersion(artifact=URI, sha256=sha)
    model = ModelOverride.model_validate({"versions": {"v4": version}, **entry})
    return Overrides(f"digest-{sha}-{sorted(entry.items())}", MappingProxyType({"m": model}))


def apply(start: PodPlan, content: Overrides) -> PodPlan:
    return apply_overrides(start, content, "/o.yaml", never, {"m": "m:M"})


def arrived(start: PodPlan, failed: str | None = None) -> PodPlan:
    ((model_id, version, awaited),) = arriving(start)
    got = replace(awaited, arriving=False, artifact="cache/m-v4.json", failed=failed)
    return join(start, model_id=model_id, version=version, awaited=awaited, got=got)


def test_a_declared_version_enters_arriving_and_the_rest_of_the_file_applies_at_once() -> None:
    applied = apply(plan(), declaring(primary="v4", traffic={"v2": 90, "v4": 10}))
    model = applied.models["m"]
    spec = model.versions["v4"]
    assert (spec.arriving, spec.uri, spec.class_path) == (True, URI, "m:M")
    assert (model.primary, model.awaited) == ("v1", "v4")  # awaited, not refused
    assert model.shares == {"v2": 90}  # its share waits for it
    assert overrides_problems(applied) == {}
    joined = arrived(applied)
    assert (joined.models["m"].primary, joined.models["m"].awaited) == ("v4", None)
    assert joined.models["m"].shares == {"v2": 90, "v4": 10}
    assert PodPlan.from_dict(applied.as_dict()) == applied


def test_a_declared_version_that_fails_to_arrive_is_reported_where_the_file_asks_for_it() -> None:
    applied = apply(plan(), declaring(primary="v4", traffic={"v2": 90, "v4": 10}))
    failed = arrived(applied, failed="was not delivered: HTTP 404")
    model = failed.models["m"]
    assert (model.primary, model.awaited) == ("v1", None)
    assert model.shares == {"v2": 90}
    assert overrides_problems(failed) == {
        "m": "version 'v4' was not delivered: HTTP 404; traffic: version 'v4' was not "
        "delivered: HTTP 404; its share goes to the others"
    }
    # Another change of the file keeps the failure while the declaration stays: no new fetch.
    again = apply(failed, declaring(traffic={"v1": 50, "v2": 40, "v4": 10}))
    assert again.models["m"].versions["v4"].failed == "was not delivered: HTTP 404"
    assert arriving(again) == []
    assert again.models["m"].shares == {"v1": 50, "v2": 40}
    assert "its share goes to the others" in overrides_problems(again)["m"]
    # Other bytes declared: fetched anew.
    renewed = apply(again, declaring(sha="b" * 64))
    assert [version for _, version, _ in arriving(renewed)] == ["v4"]


def test_a_run_time_promotion_while_a_primary_arrives_lasts() -> None:
    applied = apply(plan(), declaring(primary="v4"))
    promoted = promote(applied, "m", "v2")
    joined = arrived(promoted)
    assert joined.models["m"].primary == "v2"
    assert joined.models["m"].versions["v4"].failed is None
    with pytest.raises(Conflict, match="has not arrived yet"):
        promote(applied, "m", "v4")


def test_a_version_that_arrives_after_the_file_dropped_it_does_not_join() -> None:
    applied = apply(plan(), declaring(primary="v4"))
    dropped = apply(applied, Overrides("empty", MappingProxyType({})))
    ((model_id, version, awaited),) = arriving(applied)
    got = replace(awaited, arriving=False, artifact="cache/m-v4.json")
    assert join(dropped, model_id=model_id, version=version, awaited=awaited, got=got) is dropped
