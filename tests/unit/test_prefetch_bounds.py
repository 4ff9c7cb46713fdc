"""AssetPrefetcher's bounds and clean-up, over in-memory assets whose reads the test holds and releases."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from data_export.export.prefetch import AssetPrefetcher
from data_export.storage.objects import Asset

FIELDS = {"images": True, "documents": True}


class HeldStore:
    """Assets of known bytes; each read waits until the test releases reads, and counts how many overlap."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.data = {key: bytes([len(key) % 256]) * size for key, size in sizes.items()}
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.peak_running = 0
        self.opened: list[str] = []
        self.closed: list[str] = []

    def wait_for_reads(self, count: int) -> None:
        for _ in range(10_000):
            with self.lock:
                if self.running >= count:
                    return
            threading.Event().wait(0.001)
        raise AssertionError(f"{count} reads never ran at once")

    def open(self, key: str) -> Asset | None:
        with self.lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        self.release.wait(timeout=10)
        with self.lock:
            self.running -= 1
        if key not in self.data:
            return None
        with self.lock:
            self.opened.append(key)
        data = self.data[key]
        return Asset(size=len(data), chunks=iter([data]), close=lambda: self.closed.append(key))


def records(count: int, size: int) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "images": [{"asset_key": f"k{i}", "size_bytes": size, "filename": "a.jpg"}]}
        for i in range(count)
    ]


def test_reads_in_flight_never_exceed_the_limit_and_come_out_in_order() -> None:
    store = HeldStore({f"k{i}": 100 + i for i in range(40)})
    taken = []
    with AssetPrefetcher(store.open, FIELDS, max_in_flight=3, budget=10_000) as prefetcher:
        for index, record in enumerate(prefetcher.records(records(40, 200))):
            if index == 0:
                store.wait_for_reads(3)
                store.release.set()  # every slot was filled before the first asset was taken
            asset = prefetcher.open(record["images"][0]["asset_key"])
            assert asset is not None
            taken.append(b"".join(asset.chunks))
    assert taken == [store.data[f"k{i}"] for i in range(40)]
    assert store.peak_running == 3
    assert 0 < prefetcher.peak_buffered <= 3 * 200


def test_a_recorded_size_too_small_streams_the_asset_instead_of_buffering_it() -> None:
    store = HeldStore({"k0": 5_000})
    store.release.set()
    with AssetPrefetcher(store.open, FIELDS, budget=10_000) as prefetcher:
        for record in prefetcher.records(records(1, 10)):  # the record says 10 bytes; it has 5,000
            asset = prefetcher.open(record["images"][0]["asset_key"])
            assert asset is not None and b"".join(asset.chunks) == store.data["k0"]
    assert prefetcher.peak_buffered == 0


def test_a_failed_read_raises_in_its_turn_and_close_releases_the_rest() -> None:
    store = HeldStore({f"k{i}": 10 for i in range(6)})

    def open_asset(key: str) -> Asset | None:
        if key == "k2":
            raise ConnectionError("timed out")
        return store.open(key)

    store.release.set()
    taken = []
    prefetcher = AssetPrefetcher(
        open_asset, FIELDS, max_in_flight=4, budget=0
    )  # nothing buffered: all stream
    with pytest.raises(ConnectionError), prefetcher:
        for record in prefetcher.records(records(6, 10)):
            key = record["images"][0]["asset_key"]
            prefetcher.open(key)
            taken.append(key)
    assert taken == ["k0", "k1"]
    # Opened ahead, never taken: their responses are closed, and no reading thread is left.
    assert sorted(store.closed) == sorted(set(store.opened) - {"k0", "k1"})
    assert not [t for t in threading.enumerate() if t.name.startswith("asset-read")]


def test_an_asset_asked_for_out_of_turn_is_refused() -> None:
    store = HeldStore({"k0": 1, "k1": 1})
    store.release.set()
    with AssetPrefetcher(store.open, FIELDS) as prefetcher:
        next(iter(prefetcher.records(records(2, 1))))
        with pytest.raises(AssertionError, match="out of turn"):
            prefetcher.open("k1")
