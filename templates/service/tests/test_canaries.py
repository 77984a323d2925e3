"""Every model version answers its canaries (test_data), checked by the serving runtime itself."""

from serving_runtime.testing import check_selftests


def test_every_model_version_passes_its_selftests() -> None:
    check_selftests()
