"""The decode budget: decodes reserve what they will cost, wait for room, and are refused when none comes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bombs import flat_png
from skinscan.core.errors import BusyError, ImageTooLargeError
from skinscan.runtime.budget import DecodeBudget
from skinscan.runtime.imaging import load_image


def test_reservations_add_up_and_are_released() -> None:
    budget = DecodeBudget(capacity=100, wait_s=0.1)
    with budget.reserve(60):
        assert budget.in_use == 60
        with budget.reserve(40):
            assert budget.in_use == 100
    assert budget.in_use == 0


def test_a_decode_waits_for_room_then_runs() -> None:
    budget = DecodeBudget(capacity=100, wait_s=5)
    held = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with budget.reserve(80):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    with budget.reserve(50):  # does not fit beside the 80 until they are released
        order.append("second ran")
    thread.join()
    assert order == ["first done", "second ran"]


def test_no_room_within_the_wait_is_busy_and_reserves_nothing() -> None:
    budget = DecodeBudget(capacity=100, wait_s=0.1)
    with budget.reserve(100):
        with pytest.raises(BusyError) as caught, budget.reserve(1):
            pass
        assert caught.value.retry_after_s >= 1
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_too_many_waiting_is_refused_at_once() -> None:
    budget = DecodeBudget(capacity=10, wait_s=30, max_waiting=0)
    with budget.reserve(10):
        start = time.monotonic()
        with pytest.raises(BusyError), budget.reserve(1):
            pass
        assert time.monotonic() - start < 10  # did not wait its 30 s


def test_a_decode_costing_more_than_the_whole_budget_is_too_large() -> None:
    png = flat_png(3000)  # 9 MP: about 36 MB held while decoding
    with pytest.raises(ImageTooLargeError, match="too large to decode"):
        load_image(png, draft_size=224, budget=DecodeBudget(capacity=8 * 2**20))
    image = load_image(png, draft_size=224, budget=DecodeBudget(capacity=64 * 2**20))
    assert image.info["original_size"] == (3000, 3000) and min(image.size) >= 224 and image.width < 3000


def test_a_big_file_on_disk_is_refused_by_its_size_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as f:
        f.write(b"\xff\xd8\xff")
        f.truncate(5 * 2**30)  # sparse: costs no disk
    with pytest.raises(ImageTooLargeError, match="file too large"):
        load_image(path, max_bytes=2**20)
