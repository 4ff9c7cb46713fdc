"""The least-privilege guards (tests/iam_guard.py): no function is refused a call; under `make iam-proofs`,
each test starts on a quiet stack."""

from tests.iam_guard import denials_expected, iam_guard  # noqa: F401
