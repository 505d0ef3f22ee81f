"""`riskgate serve`'s own settings (serving.http.commands)."""

from __future__ import annotations

import pytest

from serving.http.commands import KEEP_ALIVE_SECONDS, _keep_alive_seconds


def test_idle_connections_stay_open_long_enough_for_pooled_clients_by_default():
    assert _keep_alive_seconds({}) == KEEP_ALIVE_SECONDS == 75
    assert _keep_alive_seconds({"RISKGATE_KEEP_ALIVE_SECONDS": "20"}) == 20


@pytest.mark.parametrize(
    ("raw", "message"),
    [("soon", "a whole number, got 'soon'"), ("0", "1..3600, got 0"), ("99999", "1..3600")],
)
def test_a_bad_keep_alive_is_refused_naming_the_variable(raw, message):
    with pytest.raises(SystemExit, match=f"RISKGATE_KEEP_ALIVE_SECONDS must be {message}"):
        _keep_alive_seconds({"RISKGATE_KEEP_ALIVE_SECONDS": raw})
