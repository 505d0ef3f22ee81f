"""Payments as parallel arrays of positions and raw codes, before they become the contract's
columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from data.simulator.config import SCENARIOS
from data.simulator.tables import _NAT


@dataclass
class _Rows:
    """Payments as parallel arrays of positions and raw codes (-1: missing); strings come last."""

    cust: np.ndarray
    card: np.ndarray
    merch: np.ndarray
    ts: np.ndarray
    eur: np.ndarray  # amount in EUR, converted to the billing currency at the end
    online: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    ip_country: np.ndarray
    ship: np.ndarray
    auth: np.ndarray
    email: np.ndarray
    scenario: np.ndarray
    label: np.ndarray  # label time in ms, _NAT for genuine payments

    def take(self, idx: np.ndarray) -> _Rows:
        """The rows at `idx`, in that order."""
        return _Rows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        """All parts stacked, in order."""
        names = [f.name for f in fields(_Rows)]
        return _Rows(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})

    @staticmethod
    def unlabelled(scenario: str, **columns: np.ndarray) -> _Rows:
        """Rows of one scenario from their columns, not labelled yet (labels.py does that last)."""
        n = len(columns["ts"])
        return _Rows(
            **columns,
            scenario=np.full(n, SCENARIOS.index(scenario), dtype=np.int8),
            label=np.full(n, _NAT, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ts)
