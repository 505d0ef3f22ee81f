"""`simulate`: the whole draw in its fixed order (world, genuine payments, each fraud scenario,
labels, columns), validated against the transaction contract.

The simulator is deterministic and vectorised, and its output meets the transaction contract.

riskgate needs data to build, test and demonstrate its models without anybody's real payments.
Toy data where one column gives fraud away would teach the wrong lessons, so the simulator
models customers, cards, devices, merchants and five fraud scenarios, with legitimate behaviour
that imitates each fraud signal: travel (foreign IPs), new phones and borrowed devices (new
device ids), big one-off purchases, promotion surges. Fraud is labelled the way it is in
production, by a chargeback that arrives days or weeks after the payment.

Everything is drawn from one `numpy.random.Generator` seeded once, in a fixed order, so the
same configuration gives the same bytes; every step works on whole arrays (loops only run over
chunks, scenarios and a handful of compromised merchants).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from data.schema import validate
from data.simulator.arrays import _allocate
from data.simulator.assembly import _frame
from data.simulator.config import FRAUD_SCENARIOS, SimulationConfig
from data.simulator.labels import _label
from data.simulator.legit import _legit
from data.simulator.population import _build_world, _timelines
from data.simulator.rows import _Rows
from data.simulator.scenarios.account_takeover import _account_takeover
from data.simulator.scenarios.card_testing import _card_testing
from data.simulator.scenarios.compromised_merchant import _compromised_merchant
from data.simulator.scenarios.friendly_fraud import _friendly_fraud
from data.simulator.scenarios.stolen_card import _stolen_card
from data.simulator.surges import _schedule
from data.simulator.tables import _LEGIT_CHUNK


def simulate(
    config: SimulationConfig, progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    """Simulate `config.rows` labelled payments, validated against the transaction contract.

    Pure: no I/O, no clock; one generator seeded from `config.seed`, so equal configs give equal
    frames. `progress`, if given, is called a few times with the number of rows generated so far
    (the last call with `config.rows`), so a command line can drive a progress bar.
    """
    report = progress or (lambda _done: None)
    rng = np.random.default_rng(config.seed)
    shares = config.shares
    n_fraud = round(config.rows * config.fraud_rate)
    per_scenario = dict(
        zip(FRAUD_SCENARIOS, _allocate(n_fraud, list(shares.values())).tolist(), strict=True)
    )
    n_legit = config.rows - n_fraud

    world = _build_world(rng, config)
    ts, cust, hour, surge = _schedule(rng, config, world, n_legit)
    _timelines(rng, config, world, ts, cust)
    parts: list[_Rows] = []
    for lo in range(0, n_legit, _LEGIT_CHUNK):
        hi = min(lo + _LEGIT_CHUNK, n_legit)
        parts.append(_legit(rng, world, ts[lo:hi], cust[lo:hi], hour[lo:hi], surge[lo:hi], lo))
        report(hi)
    legit = _Rows.concat(parts)
    del parts, ts, cust, hour, surge

    done = n_legit
    frauds: list[_Rows] = []
    for name in FRAUD_SCENARIOS:
        target = per_scenario[name]
        if target == 0:
            continue
        if name == "stolen_card":
            part = _stolen_card(rng, config, world, target)
        elif name == "account_takeover":
            part, victims, changed = _account_takeover(rng, config, world, target)
            world.changes_cust = np.concatenate([world.changes_cust, victims])
            world.changes_at = np.concatenate([world.changes_at, changed])
        elif name == "card_testing":
            part = _card_testing(rng, config, world, target)
        elif name == "compromised_merchant":
            part = _compromised_merchant(rng, config, world, target, legit)
        else:
            part = _friendly_fraud(rng, config, world, target)
        assert len(part) == target, (name, len(part), target)
        frauds.append(part)
        done += target
        report(done)
    fraud = _Rows.concat(frauds) if frauds else legit.take(np.zeros(0, dtype=np.int64))
    _label(rng, config, fraud)
    salt = np.uint64(int(rng.integers(0, 2**63)))
    frame = _frame(world, _Rows.concat([legit, fraud]), salt)
    return validate(frame, source="simulate")
