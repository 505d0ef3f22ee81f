"""The payment simulator: configuration, population and merchants, surges, genuine payments, one
module per fraud scenario, labels. Imports nothing of riskgate but data/ (the contract)."""

from data.simulator.config import (
    DEFAULT_SCENARIO_MIX,
    FRAUD_SCENARIOS,
    NOT_SIMULATED,
    SCENARIOS,
    SimulationConfig,
)
from data.simulator.generate import simulate

__all__ = [
    "DEFAULT_SCENARIO_MIX",
    "FRAUD_SCENARIOS",
    "NOT_SIMULATED",
    "SCENARIOS",
    "SimulationConfig",
    "simulate",
]
