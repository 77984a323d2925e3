"""The primary version still answers the committed dataset as the baseline says.

drift/<model_id>/inputs.jsonl is the dataset and baseline.jsonl the outputs it should get.
After retraining on purpose, refresh the baseline with `serving-runtime drift --update` and
review its diff like any other change.
"""

from serving_runtime.testing import check_drift


def test_no_prediction_drift_against_the_committed_baseline() -> None:
    check_drift()
