"""Progress bars off a terminal print a line every few seconds, not a stream of `\\r` updates."""

from __future__ import annotations

import io

from data.progress import LOG_INTERVAL_S, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_many_updates_give_a_few_whole_lines():
    log = io.StringIO()
    with progress_bar(total=100_000, desc="generate", unit="payments", file=log) as bar:
        for _ in range(100_000):
            bar.update(1)

    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert LOG_INTERVAL_S >= 2.0, "a line every few seconds"
    assert 1 <= len(lines) <= 3, lines  # the start, maybe one on the way, the end
    assert "100000/100000" in lines[-1]
    assert lines[-1].startswith("generate: 100%")


def test_off_a_terminal_the_bar_redraws_only_after_the_interval(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("tqdm.std.time", lambda: clock[0])  # the clock tqdm reads
    log = io.StringIO()
    with progress_bar(total=10, file=log, desc="x") as bar:
        for _ in range(10):
            clock[0] += LOG_INTERVAL_S / 4  # four updates per interval
            bar.update(1)
    # 10 updates over 2.5 intervals: the first draw, two timed redraws and the final line
    assert len(log.getvalue().splitlines()) <= 4


def test_on_a_terminal_the_bar_redraws_in_place():
    tty = Terminal()
    with progress_bar(total=3, file=tty, mininterval=0) as bar:
        for _ in range(3):
            bar.update(1)

    assert "\r" in tty.getvalue()
