"""The benchmark harness: every timed output is verified and sized, and a wrong one stops the comparison.
No timing is asserted (the machine is shared): only what the figures are made of."""

from __future__ import annotations

import pytest

from benchmarks.harness import Contender, Output, VerificationError, check, compare, percentile
from benchmarks.sinks import PartSink


def test_each_timed_run_is_verified_and_sized() -> None:
    checked: list[bytes] = []

    def verify(value: bytes) -> int:
        checked.append(value)
        return len(value)

    contenders = [
        Contender("ours", "ours", lambda: Output(10, b"abc"), verify),
        Contender("peer", "peer", lambda: Output(10, b"abcdef"), verify),
    ]
    comparison = compare("c", "records", contenders, rounds=3, warmup=1)
    assert len(checked) == 6  # the warm-up round is not timed, so not verified either
    document = comparison.to_json()
    assert document["verified"] is True
    assert document["contenders"]["ours"]["output_bytes"] == 3
    assert document["contenders"]["peer"]["output_bytes"] == 6
    assert document["contenders"]["peer"]["verified_runs"] == 3
    assert document["size_ratios_to_ours"]["peer"] == pytest.approx(0.5)


def test_a_wrong_output_raises_instead_of_giving_a_figure() -> None:
    def verify(value: bytes) -> int:
        check(value == b"right", "wrong output")
        return len(value)

    contenders = [
        Contender("ours", "ours", lambda: Output(1, b"right"), verify),
        Contender("peer", "peer", lambda: Output(1, b"wrong"), verify),
    ]
    with pytest.raises(VerificationError, match="wrong output"):
        compare("c", "records", contenders, rounds=1, warmup=0)


def test_a_contender_without_a_verifier_is_refused() -> None:
    with pytest.raises(VerificationError):
        compare("c", "records", [Contender("ours", "ours", lambda: Output(1, b""))], rounds=1, warmup=0)


def test_setup_runs_before_every_run() -> None:
    calls: list[str] = []
    contender = Contender(
        "ours", "ours", lambda: Output(1, calls.append("run")), lambda _: 1, lambda: calls.append("setup")
    )
    compare("c", "records", [contender], rounds=2, warmup=1)
    assert calls == ["setup", "run"] * 3


def test_contenders_timed_elsewhere_are_verified_only_through_record() -> None:
    contender = Contender("ours", "ours")
    assert not contender.verified
    contender.record(2.0, 100)
    assert contender.verified and contender.output_bytes == [100]


def test_the_part_sink_keeps_what_was_written_in_order() -> None:
    sink = PartSink(part_size=4)
    for piece in (b"ab", b"cdef", b"g", memoryview(b"hij")):
        sink.write(piece)
    assert sink.getvalue() == b"abcdefghij"
    assert sink.tell() == 10 and sink.parts == 2


def test_percentile_is_an_observed_value() -> None:
    samples = [float(value) for value in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples[:50], 0.99) == 50.0  # with 50 samples the "p99" is the maximum
