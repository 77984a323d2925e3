"""The answer checks and the answer precedence, in-process (no wheel, no venv)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from lls import InvalidAnswer, QuantityError, check_answer, parse_quantity
from lls._new import collect_answers
from lls._questions import Question, load_questions

from .conftest import ROOT

QUESTIONS = load_questions((ROOT / "copier.yml").read_text())
FIXED = {"runtime_version": "0.1.0", "runtime_sha256": "0" * 64}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("+2", Decimal(2)),
        (".5", Decimal("0.5")),
        ("512Mi", Decimal(512 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1G", Decimal(10**9)),
        ("128k", Decimal(128_000)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("2E-3", Decimal("0.002")),
        ("100n", Decimal("0.0000001")),
        ("-1", Decimal(-1)),
    ],
)
def test_quantities_parse_to_their_exact_value(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "1.2.3", "1MB", "1 Gi", "1e", "1ex", "--1", "1Kb"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_limits_compare_by_value_not_by_text() -> None:
    check_answer("cpu_limit", "1000m", {"cpu_request": "1"})
    check_answer("memory_limit", "1Gi", {"memory_request": "1024Mi"})
    check_answer("memory_limit", "2G", {"memory_request": "1Gi"})
    with pytest.raises(InvalidAnswer, match=r"less than memory_request \(1Gi\)"):
        check_answer("memory_limit", "1G", {"memory_request": "1Gi"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("team", "payments"),
        ("service_name", "fraud-score"),
        ("owner_email", "payments@example.com"),
        ("repository_url", "https://github.com/acme/fraud-score"),
        ("repository_url", "https://github.example.com:8443/Acme-ML/fraud_score.v2"),
        ("registry", "registry.example.com:5000/ml/models"),
        ("registry", "ghcr.io"),
        ("package_index_url", ""),
        ("package_index_url", "https://pypi.example.com/simple"),
        ("availability_slo", 99.95),
        ("cpu_request", "250m"),
        ("memory_request", "64Mi"),
    ],
)
def test_good_answers_pass(key: str, value: Any) -> None:
    check_answer(key, value, {})


def _answers(given: dict[str, Any]) -> dict[str, Any]:
    return collect_answers(QUESTIONS, given, FIXED, ask=None)


def test_defaults_derive_from_earlier_answers() -> None:
    answers = _answers({"team": "payments", "cpu_request": "2", "min_replicas": "3"})
    assert answers["service_name"] == "payments-model"
    assert answers["model_id"] == "payments-model"
    assert answers["namespace"] == "payments"
    assert answers["owner_email"] == "payments-team@example.com"
    assert answers["repository_url"] == "https://github.com/example/payments-model"
    assert answers["cpu_limit"] == "2"
    assert answers["max_replicas"] == 15
    assert answers["runtime_version"] == "0.1.0"
    assert "package_name" not in answers  # computed by Copier, never asked


@pytest.mark.parametrize(
    ("email", "url"),
    [
        ("ml@acme.com", "https://github.com/acme/fraud-score"),
        ("ml@corp.acme.io", "https://github.com/acme/fraud-score"),
    ],
)
def test_the_repository_defaults_to_the_mail_domains_organisation(email: str, url: str) -> None:
    answers = _answers({"service_name": "fraud-score", "owner_email": email})
    assert answers["repository_url"] == url


def test_values_take_the_question_type() -> None:
    answers = _answers({"workers": " 4 ", "availability_slo": "99.5"})
    assert answers["workers"] == 4
    assert answers["availability_slo"] == 99.5


def test_a_default_made_invalid_by_an_earlier_answer_is_refused() -> None:
    with pytest.raises(InvalidAnswer, match=r"max_replicas: 500 is less than.*|max_replicas"):
        _answers({"min_replicas": "999", "max_replicas": "500"})


def test_prompts_see_the_earlier_answers_and_their_defaults() -> None:
    seen: list[tuple[str, Any]] = []

    def ask(question: Question, default: Any, resolve: Any) -> Any:
        seen.append((question.name, default))
        return resolve("ml" if question.name == "team" else default)

    answers = collect_answers(QUESTIONS, {"framework": "onnx"}, FIXED, ask)
    assert answers["framework"] == "onnx"
    assert ("service_name", "ml-model") in seen
    assert "framework" not in dict(seen)  # given: not asked
    assert "runtime_version" not in dict(seen)  # lls's own: not asked
    assert "runtime_sha256" not in dict(seen)


def test_a_prompt_answer_is_checked_like_any_other() -> None:
    def ask(question: Question, default: Any, resolve: Any) -> Any:
        return resolve("Not A Label" if question.name == "team" else default)

    with pytest.raises(InvalidAnswer, match="team: 'Not A Label' is not a Kubernetes"):
        collect_answers(QUESTIONS, {}, FIXED, ask)


def test_every_question_has_a_type_and_a_help() -> None:
    for question in QUESTIONS:
        assert question.type in {"str", "int", "float", "bool"}
        assert question.help
        assert question.help != question.name
