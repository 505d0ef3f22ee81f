"""Types of features/_windows.c (the compiled walk of the online plans)."""

from collections.abc import Sequence
from typing import Any

from features.state import History

ABI: int

def fill(
    out: Any,
    t: int,
    cents: int,
    card: str | None,
    merchant_lat: float,
    merchant_lon: float,
    plans: tuple[Any, ...],
    hists: Sequence[History | None],
    deg: float,
    earth_radius_km: float,
) -> None: ...
def record(
    hists: list[History],
    ts: int,
    cents: int,
    card: str | None,
    lat: float,
    lon: float,
    bound: int,
) -> None: ...
