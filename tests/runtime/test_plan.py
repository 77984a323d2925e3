"""The shared plan's rules, on plain data: fallbacks, overrides, and the file they travel in."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from serving_runtime._errors import Conflict
from serving_runtime._overrides import ModelOverride, Overrides, apply_overrides, overrides_problems
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
