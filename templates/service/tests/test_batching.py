"""Concurrent requests, batched into one predict call, answer exactly what each would alone."""

from serving_runtime.testing import check_batching


def test_batched_answers_equal_the_answers_alone() -> None:
    check_batching()
