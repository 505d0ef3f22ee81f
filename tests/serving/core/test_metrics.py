"""Metrics are created once even when several threads ask for them first at the same time."""

from __future__ import annotations

import threading
import time

from serving.core import metrics


def test_metrics_are_created_once_under_concurrent_first_use(monkeypatch) -> None:
    created: list[object] = []

    def slow_create() -> object:
        time.sleep(0.05)  # widens the window in which a second thread could also create them
        created.append(object())
        return created[-1]

    monkeypatch.setattr(metrics, "_METRICS", None)
    monkeypatch.setattr(metrics, "create", slow_create)
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def first_use() -> None:
        barrier.wait()
        seen.append(metrics.m())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(created) == 1
    assert seen == [created[0]] * 8
