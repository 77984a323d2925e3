"""Models for watching alerts fire: a sleeper, a shadow that disagrees, a model that fails its
self-tests, and a record sink that refuses every write.

observed.py copies this file into the package of the service it renders (loan_score), where
`.model` is that service's model module; nothing in the test suite imports it from here.
"""

import time
from typing import Any, ClassVar

from .model import LoanScore as DemoModel


class Sleeper:
    """Answers each row's `seconds` after sleeping that long."""

    feature_names: ClassVar = ["seconds"]
    test_data: ClassVar = [{"features": {"seconds": 0.0}, "expected": [0.0]}]
    tolerance = 0.0

    def load(self, file: Any) -> None:
        pass

    def predict(self, features: list[list[float]]) -> list[float]:
        time.sleep(sum(row[0] for row in features))
        return [row[0] for row in features]


class Contrary(DemoModel):
    """The opposite probability of DemoModel's: a shadow that always disagrees."""

    test_data: ClassVar = [
        {**case, "expected": [1.0 - p for p in case["expected"]]} for case in DemoModel.test_data
    ]

    def predict(self, features: list[list[float]]) -> list[float]:
        return [1.0 - p for p in super().predict(features)]


class Wrong(DemoModel):
    """Expects outputs DemoModel never gives: fails its self-tests at every load."""

    test_data: ClassVar = [{**case, "expected": [2.0]} for case in DemoModel.test_data]


class DownSink:
    """A record store that is down."""

    def __init__(self, config: Any) -> None:
        pass

    def write(self, records: Any) -> None:
        raise OSError("the record store is down")

    def close(self) -> None:
        pass
