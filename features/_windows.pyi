"""Types of features/_windows.c (the compiled walk of the online plans)."""

from collections.abc import Callable, Sequence
from typing import Any

from features.state import History

def fill(
    out: Any,
    t: int,
    cents: int,
    card: str | None,
    merchant_lat: float,
    merchant_lon: float,
    plans: tuple[Any, ...],
    hists: Sequence[History | None],
    zscore: Callable[[list[int], int, int], float],
    median_ratio: Callable[[list[int], int, int], float],
    deg: float,
    earth_radius_km: float,
) -> None: ...
