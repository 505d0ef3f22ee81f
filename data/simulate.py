"""A deterministic, vectorised payment simulator that meets the transaction contract.

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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa

from data.schema import AUTH_RESULTS, CHANNELS, COLUMNS, validate

# Optional contract columns the simulated world has no model for (they come from teams' files).
NOT_SIMULATED: tuple[str, ...] = ("customer_age", "city_population")

SCENARIOS: tuple[str, ...] = (
    "legit",
    "stolen_card",
    "account_takeover",
    "card_testing",
    "compromised_merchant",
    "friendly_fraud",
)
FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[1:]
DEFAULT_SCENARIO_MIX: tuple[tuple[str, float], ...] = (
    ("stolen_card", 0.35),
    ("account_takeover", 0.15),
    ("card_testing", 0.20),
    ("compromised_merchant", 0.15),
    ("friendly_fraud", 0.15),
)

_DAY = 86_400_000  # milliseconds
_HOUR = 3_600_000
_MINUTE = 60_000
_NAT = np.iinfo(np.int64).min  # "no timestamp" while working in int64 milliseconds
_NEVER = np.iinfo(np.int64).max  # "this event does not happen"
_LEGIT_CHUNK = 250_000  # fixed: the output must not depend on anything but the config

# --- geography --------------------------------------------------------------------------------
# Country codes used anywhere; rows refer to them by position.
_COUNTRIES: tuple[str, ...] = (
    "DE", "FR", "NL", "ES", "IT", "GB", "PL", "BE", "AT", "IE", "PT", "US",  # customers
    "GR", "HR", "TR", "TH", "MA", "CH",  # travel destinations only
    "NG", "RO", "RU", "BR", "VN", "UA", "ID", "IN", "SE",  # fraud sources and VPN exits
)  # fmt: skip
_HOME_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("DE", 0.26), ("FR", 0.18), ("NL", 0.10), ("ES", 0.10), ("IT", 0.08), ("GB", 0.08),
    ("PL", 0.06), ("BE", 0.04), ("AT", 0.03), ("IE", 0.02), ("PT", 0.02), ("US", 0.03),
)  # fmt: skip
# (country, latitude, longitude, UTC offset in winter, share of the country's population)
_CITIES: tuple[tuple[str, float, float, int, float], ...] = (
    ("DE", 52.520, 13.405, 1, 0.35), ("DE", 48.137, 11.575, 1, 0.20),
    ("DE", 53.551, 9.993, 1, 0.20), ("DE", 50.938, 6.960, 1, 0.15),
    ("DE", 50.110, 8.682, 1, 0.10), ("FR", 48.857, 2.352, 1, 0.50),
    ("FR", 45.764, 4.836, 1, 0.20), ("FR", 43.297, 5.370, 1, 0.17),
    ("FR", 43.605, 1.444, 1, 0.13), ("NL", 52.370, 4.895, 1, 0.50),
    ("NL", 51.924, 4.478, 1, 0.30), ("NL", 52.091, 5.122, 1, 0.20),
    ("ES", 40.417, -3.704, 1, 0.40), ("ES", 41.385, 2.173, 1, 0.35),
    ("ES", 39.470, -0.376, 1, 0.15), ("ES", 37.389, -5.984, 1, 0.10),
    ("IT", 41.903, 12.496, 1, 0.40), ("IT", 45.464, 9.190, 1, 0.40),
    ("IT", 40.852, 14.268, 1, 0.20), ("GB", 51.507, -0.128, 0, 0.60),
    ("GB", 53.481, -2.243, 0, 0.20), ("GB", 52.486, -1.890, 0, 0.20),
    ("PL", 52.230, 21.012, 1, 0.50), ("PL", 50.065, 19.945, 1, 0.30),
    ("PL", 51.108, 17.039, 1, 0.20), ("BE", 50.850, 4.352, 1, 0.60),
    ("BE", 51.219, 4.402, 1, 0.40), ("AT", 48.208, 16.373, 1, 0.70),
    ("AT", 47.071, 15.439, 1, 0.30), ("IE", 53.350, -6.260, 0, 0.70),
    ("IE", 51.898, -8.475, 0, 0.30), ("PT", 38.722, -9.139, 0, 0.60),
    ("PT", 41.158, -8.629, 0, 0.40), ("US", 40.713, -74.006, -5, 0.50),
    ("US", 41.878, -87.630, -6, 0.30), ("US", 37.775, -122.419, -8, 0.20),
    ("GR", 37.984, 23.728, 2, 1.00), ("HR", 43.508, 16.440, 1, 1.00),
    ("TR", 41.008, 28.978, 3, 1.00), ("TH", 13.756, 100.502, 7, 1.00),
    ("MA", 31.629, -7.981, 0, 1.00), ("CH", 47.377, 8.541, 1, 1.00),
)  # fmt: skip
_TRAVEL_DESTINATIONS: tuple[tuple[str, float], ...] = (
    ("ES", 0.19), ("IT", 0.15), ("FR", 0.12), ("PT", 0.08), ("GR", 0.10), ("HR", 0.07),
    ("TR", 0.06), ("GB", 0.05), ("DE", 0.05), ("NL", 0.03), ("AT", 0.03), ("CH", 0.03),
    ("US", 0.02), ("TH", 0.01), ("MA", 0.01),
)  # fmt: skip
_FRAUD_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("NG", 0.12), ("RO", 0.10), ("RU", 0.10), ("BR", 0.10), ("VN", 0.08), ("UA", 0.07),
    ("US", 0.12), ("NL", 0.10), ("GB", 0.06), ("ID", 0.05), ("IN", 0.05), ("DE", 0.05),
)  # fmt: skip
_VPN_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("NL", 0.25), ("US", 0.20), ("SE", 0.15), ("CH", 0.15), ("DE", 0.10), ("GB", 0.10),
    ("FR", 0.05),
)  # fmt: skip
_CURRENCY: tuple[tuple[str, str, float], ...] = (  # billing country, currency, units per EUR
    ("GB", "GBP", 0.86),
    ("PL", "PLN", 4.30),
    ("US", "USD", 1.09),
)

# --- merchants --------------------------------------------------------------------------------
# (mcc, share of merchants, visits per merchant, typical ticket in EUR,
#  P(card-present only), P(both channels), P(online only), ships goods, fraud appeal,
#  small-ticket online merchant that card testers like)
_CATEGORIES: tuple[tuple[str, float, float, float, float, float, float, bool, float, bool], ...] = (
    ("5411", 0.14, 3.0, 38.0, 0.85, 0.15, 0.00, True, 0.3, False),  # grocery
    ("5812", 0.18, 1.0, 32.0, 1.00, 0.00, 0.00, False, 0.1, False),  # restaurants
    ("5814", 0.10, 1.5, 11.0, 0.85, 0.15, 0.00, False, 0.2, False),  # fast food
    ("5541", 0.06, 1.2, 55.0, 1.00, 0.00, 0.00, False, 0.3, False),  # fuel
    ("5912", 0.05, 0.8, 22.0, 0.75, 0.20, 0.05, True, 0.3, False),  # pharmacy
    ("5651", 0.08, 0.6, 65.0, 0.45, 0.30, 0.25, True, 1.0, False),  # clothing
    ("5732", 0.05, 0.4, 190.0, 0.30, 0.40, 0.30, True, 3.0, False),  # electronics
    ("5311", 0.03, 0.8, 60.0, 0.50, 0.50, 0.00, True, 1.0, False),  # department store
    ("5944", 0.03, 0.15, 280.0, 0.60, 0.25, 0.15, True, 2.5, False),  # jewellery
    ("7011", 0.05, 0.5, 160.0, 0.50, 0.30, 0.20, False, 1.5, False),  # hotels
    ("4511", 0.01, 0.4, 240.0, 0.00, 0.00, 1.00, False, 2.5, False),  # airlines
    ("4121", 0.03, 1.0, 18.0, 0.60, 0.00, 0.40, False, 0.6, False),  # taxis, ride apps
    ("5816", 0.04, 1.5, 6.0, 0.00, 0.00, 1.00, False, 1.5, True),  # digital goods, games
    ("5399", 0.02, 4.0, 45.0, 0.00, 0.00, 1.00, True, 2.0, False),  # marketplaces
    ("4814", 0.02, 0.5, 35.0, 0.00, 0.40, 0.60, False, 1.0, False),  # telecom
    ("8398", 0.02, 0.2, 20.0, 0.00, 0.00, 1.00, False, 0.5, True),  # charities
    ("5999", 0.07, 0.6, 40.0, 0.60, 0.20, 0.20, True, 1.2, False),  # misc. retail
    ("4899", 0.02, 1.0, 12.0, 0.00, 0.00, 1.00, False, 0.5, True),  # streaming
)
_CP, _OMNI, _ONLINE = 0, 1, 2  # merchant kinds
_GUARANTEED_LOCAL = ("5411", "5812", "5541")  # every city gets these, so every pool has shops
_GUARANTEED_TOURIST = ("7011",)
_GUARANTEED_ONLINE = ("5816", "8398", "4899", "5399", "5732", "4511", "5944", "5651")

# --- people -----------------------------------------------------------------------------------
_GENERIC_DOMAINS: tuple[tuple[str, float], ...] = (
    ("gmail.com", 0.45), ("outlook.com", 0.14), ("hotmail.com", 0.12), ("icloud.com", 0.10),
    ("yahoo.com", 0.08), ("live.com", 0.06), ("proton.me", 0.03), ("aol.com", 0.02),
)  # fmt: skip
_LOCAL_DOMAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DE", ("gmx.de", "web.de", "t-online.de")),
    ("FR", ("orange.fr", "free.fr", "laposte.net")),
    ("NL", ("ziggo.nl", "kpnmail.nl")),
    ("ES", ("telefonica.net", "yahoo.es")),
    ("IT", ("libero.it", "virgilio.it")),
    ("GB", ("btinternet.com", "sky.com")),
    ("PL", ("wp.pl", "onet.pl", "o2.pl")),
    ("BE", ("telenet.be", "skynet.be")),
    ("AT", ("gmx.at", "aon.at")),
    ("IE", ("eircom.net",)),
    ("PT", ("sapo.pt",)),
    ("US", ("comcast.net", "verizon.net")),
)
_SYLLABLES = (
    "nor", "vel", "ka", "lin", "tor", "mi", "sa", "ber", "gen", "da",
    "lux", "ro", "fen", "al", "ter", "bo", "quin", "zel", "mar", "tis",
)  # fmt: skip
_TLDS = ("de", "fr", "nl", "es", "it", "co.uk", "pl", "be", "at", "ie", "pt", "com", "net",
         "org", "eu", "io")  # fmt: skip

# Local-time hourly profile (few payments at night) and Monday..Sunday volume.
_HOURS = (
    0.9, 0.5, 0.3, 0.25, 0.3, 0.6, 1.4, 2.8, 4.2, 5.0, 5.6, 6.4,
    7.4, 7.0, 6.0, 5.8, 6.2, 7.0, 7.6, 7.2, 6.2, 4.8, 3.2, 1.8,
)  # fmt: skip
_WEEKDAYS = (0.95, 0.95, 1.0, 1.0, 1.1, 1.1, 0.9)

# Disjoint ranges of raw device / IP numbers; they are hashed to ids at the end.
_DEV_ONE_OFF = 1 << 40  # borrowed or shared devices, one per payment
_DEV_FRAUD = 2 << 40  # fraudsters' devices, shared across victims
_IP_CARRIER = 1 << 40  # mobile carriers' shared addresses, per country
_IP_TRAVEL = 2 << 40  # hotel and café wi-fi, per destination city
_IP_VPN = 3 << 40
_IP_FRAUD = 4 << 40

_AUTH_PASSED, _AUTH_FAILED, _AUTH_NOT_ATTEMPTED = 0, 1, 2  # positions in AUTH_RESULTS


# === configuration ============================================================================
@dataclass(frozen=True)
class SimulationConfig:
    """Everything that shapes a simulated data set; equal configs give identical output.

    `scenario_mix` gives each fraud scenario's share of the fraud rows; scenarios left out get
    none. Chargeback delays are lognormal: `*_median_days` is the median, `*_sigma` the spread
    on the log scale; friendly fraud is disputed by the customer later than stolen-card fraud.
    """

    rows: int = 200_000
    days: int = 90
    fraud_rate: float = 0.005
    seed: int = 7
    start: str = "2024-01-01"
    surge_days: tuple[int, ...] | None = None
    surge_multiplier: float = 3.0
    scenario_mix: tuple[tuple[str, float], ...] = DEFAULT_SCENARIO_MIX
    chargeback_median_days: float = 10.0
    chargeback_sigma: float = 0.6
    friendly_chargeback_median_days: float = 35.0
    friendly_chargeback_sigma: float = 0.35

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def surges(self) -> tuple[int, ...]:
        """Surge day offsets; by default two days about 75% into the period (a late, test split).

        Like a Black Friday followed by a Cyber Monday three days later.
        """
        if self.surge_days is not None:
            return tuple(sorted(self.surge_days))
        first = int(self.days * 0.75)
        return (first, min(first + 3, self.days - 1))

    @property
    def shares(self) -> dict[str, float]:
        """Share of fraud rows per scenario, every scenario listed, in canonical order."""
        given = dict(self.scenario_mix)
        return {name: float(given.get(name, 0.0)) for name in FRAUD_SCENARIOS}

    @property
    def start_utc(self) -> pd.Timestamp:
        """`start` as a UTC timestamp (a naive date is taken as UTC)."""
        ts = pd.Timestamp(self.start)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_config(cfg: SimulationConfig) -> None:
    """Refuse a configuration that cannot give a meaningful data set, saying which value and why."""
    if not _is_int(cfg.rows) or cfg.rows < 1000:
        raise ValueError(f"rows must be an integer >= 1000, got {cfg.rows!r}")
    if not _is_int(cfg.days) or cfg.days < 7:
        raise ValueError(f"days must be an integer >= 7, got {cfg.days!r}")
    if not _is_number(cfg.fraud_rate) or not 0 < cfg.fraud_rate < 0.5:
        raise ValueError(
            f"fraud_rate must be a number with 0 < fraud_rate < 0.5, got {cfg.fraud_rate!r}"
        )
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if not isinstance(cfg.start, str):
        raise ValueError(f"start must be a date string such as '2024-01-01', got {cfg.start!r}")
    try:
        start = cfg.start_utc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start {cfg.start!r} is not a date (use e.g. '2024-01-01')") from exc
    if start is pd.NaT or start.year < 1971 or start.year > 2200:
        raise ValueError(f"start {cfg.start!r} must be a date between 1971 and 2200")
    if cfg.surge_days is not None:
        if not isinstance(cfg.surge_days, tuple) or not all(_is_int(d) for d in cfg.surge_days):
            raise ValueError(f"surge_days must be a tuple of day offsets, got {cfg.surge_days!r}")
        if any(not 0 <= d < cfg.days for d in cfg.surge_days):
            raise ValueError(f"surge_days must lie in 0..{cfg.days - 1}, got {cfg.surge_days!r}")
        if len(set(cfg.surge_days)) != len(cfg.surge_days):
            raise ValueError(f"surge_days must not repeat a day, got {cfg.surge_days!r}")
        if len(cfg.surge_days) > cfg.days // 2:
            raise ValueError(
                f"at most days // 2 = {cfg.days // 2} surge days, got {cfg.surge_days!r}"
            )
    if not _is_number(cfg.surge_multiplier) or not 1.0 <= cfg.surge_multiplier <= 20.0:
        raise ValueError(f"surge_multiplier must be between 1 and 20, got {cfg.surge_multiplier!r}")
    _check_mix(cfg.scenario_mix)
    for name in ("chargeback_median_days", "friendly_chargeback_median_days"):
        value = getattr(cfg, name)
        if not _is_number(value) or not 0 < value <= 365:
            raise ValueError(f"{name} must be a number of days in (0, 365], got {value!r}")
    for name in ("chargeback_sigma", "friendly_chargeback_sigma"):
        value = getattr(cfg, name)
        if not _is_number(value) or not 0 <= value <= 3:
            raise ValueError(f"{name} must be a number in [0, 3], got {value!r}")


def _check_mix(mix: object) -> None:
    if not isinstance(mix, tuple) or not all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in mix
    ):
        raise ValueError(
            f"scenario_mix must be a tuple of (scenario, share) pairs, got {mix!r}; "
            "from a dict use tuple(d.items())"
        )
    names = [name for name, _ in mix]
    unknown = sorted(set(names) - set(FRAUD_SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown} in scenario_mix (use {FRAUD_SCENARIOS})")
    if len(set(names)) != len(names):
        raise ValueError(f"scenario_mix names a scenario twice: {names}")
    shares = [share for _, share in mix]
    if not all(_is_number(s) and math.isfinite(s) and s >= 0 for s in shares):
        raise ValueError(f"scenario_mix shares must be finite numbers >= 0, got {shares}")
    if abs(sum(shares) - 1.0) > 1e-6:
        raise ValueError(f"scenario_mix shares must sum to 1, they sum to {sum(shares):.6g}")


# === small vectorised helpers ===================================================================
def _probs(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _cidx(code: str) -> int:
    return _COUNTRIES.index(code)


def _country_choice(
    rng: np.random.Generator, table: Sequence[tuple[str, float]], n: int
) -> np.ndarray:
    """n country positions drawn from a (code, weight) table."""
    codes = np.array([_cidx(c) for c, _ in table], dtype=np.int64)
    return rng.choice(codes, size=n, p=_probs([x for _, x in table]))


def _allocate(total: int, shares: Sequence[float]) -> np.ndarray:
    """Split `total` into integer parts proportional to `shares` (largest remainder, exact)."""
    raw = np.asarray(shares, dtype=np.float64) * total
    out = np.floor(raw).astype(np.int64)
    rest = total - int(out.sum())
    order = np.argsort(-(raw - out), kind="stable")
    out[order[:rest]] += 1
    return out


def _top_k(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability proportional to `weights` (exponential keys).

    Falls back to drawing with replacement when fewer than k indices have weight.
    """
    positive = int((weights > 0).sum())
    keys = rng.exponential(size=len(weights)) / np.where(weights > 0, weights, np.nan)
    if k <= positive:
        keys = np.where(np.isnan(keys), np.inf, keys)
        return np.argsort(keys, kind="stable")[:k]
    return rng.choice(len(weights), size=k, p=_probs(weights))


def _burst_sizes(
    rng: np.random.Generator, target: int, draw: Callable[[int], np.ndarray], min_last: int = 1
) -> np.ndarray:
    """Sizes of bursts (payments per fraud event) that add up to exactly `target` rows."""
    if target <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.maximum(draw(target).astype(np.int64), 1)  # target sizes >= 1 always suffice
    cum = np.cumsum(sizes)
    k = int(np.searchsorted(cum, target))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= int(cum[k]) - target
    if len(sizes) > 1 and sizes[-1] < min_last:
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    return sizes


def _within(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sum of `values` inside each burst, starting at 0 on each burst's first row."""
    starts = np.cumsum(sizes) - sizes
    v = values.astype(np.int64).copy()
    v[starts] = 0
    c = np.cumsum(v)
    return c - np.repeat(c[starts], sizes)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64, so distinct raw ids get distinct hashes."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _fixed_width(prefix: str, body: np.ndarray, missing: np.ndarray | None) -> pa.Array:
    """Strings `prefix + body row` from an (n, width) uint8 ASCII matrix, without a Python loop."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    buf = np.empty((body.shape[0], len(head) + body.shape[1]), dtype=np.uint8)
    buf[:, : len(head)] = head
    buf[:, len(head) :] = body
    flat = buf.view(f"S{buf.shape[1]}").ravel()
    return pa.array(flat, type=pa.binary(), mask=missing).cast(pa.string())


def _decimal_ids(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal ids, so their string order is their numeric order."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    body = ((values.astype(np.int64)[:, None] // powers) % 10 + 48).astype(np.uint8)
    return _fixed_width(prefix, body, None)


def _hex_ids(prefix: str, codes: np.ndarray, salt: np.uint64) -> pa.Array:
    """Keyed-hash-looking ids (16 hex digits) for raw codes; negative codes are missing."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    byte = np.arange(256)
    pairs = np.stack([digits[byte >> 4], digits[byte & 15]], axis=1)  # byte -> two hex digits
    h = _mix64(codes.astype(np.int64).view(np.uint64) ^ salt)
    big_endian = h.astype(">u8").view(np.uint8).reshape(len(h), 8)
    return _fixed_width(prefix, pairs[big_endian].reshape(len(h), 16), codes < 0)


def _labels(values: Sequence[str], codes: np.ndarray) -> pd.Series:
    """Text column from positions into `values`; negative positions are missing."""
    table = pa.array(list(values), type=pa.string())
    idx = pa.array(codes.astype(np.int64), mask=codes < 0)
    return pd.Series(table.take(idx), dtype="str")


def _utc(ms: np.ndarray) -> pd.Series:
    """int64 milliseconds since the epoch (or _NAT) as datetime64[ns, UTC]."""
    missing = ms == _NAT
    ns = np.where(missing, 0, ms).astype(np.int64) * 1_000_000
    out = ns.view("datetime64[ns]").copy()
    out[missing] = np.datetime64("NaT")
    return pd.Series(out).dt.tz_localize("UTC")


class _Pool:
    """Draw one item per row from that row's group (a city, a country), weighted, vectorised.

    Items are sorted by group and their weights turned into keys `group + cumulative share`,
    so a single `searchsorted` on `group + U(0, 1)` draws from the right group for every row.
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int) -> None:
        keep = np.flatnonzero(weight > 0)
        if len(keep) == 0:
            raise ValueError("a merchant pool is empty")  # cannot happen: pools are seeded
        order = keep[np.argsort(group[keep], kind="stable")]
        g = group[order].astype(np.int64)
        w = weight[order].astype(np.float64)
        self.total = np.bincount(g, weights=w, minlength=n_groups)
        cum = np.cumsum(w)
        change = g[1:] != g[:-1]
        first = np.r_[True, change]
        base = np.repeat(cum[first] - w[first], np.diff(np.r_[np.flatnonzero(first), len(g)]))
        within = (cum - base) / self.total[g]
        within[np.r_[change, True]] = 1.0  # exactly 1 at a group's end: no spill into the next
        self.keys = g + within
        self.items = order

    def has(self, groups: np.ndarray) -> np.ndarray:
        """Which rows' groups have at least one item to draw."""
        return self.total[groups] > 0

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One item per row; every row's group must be non-empty (see `has`)."""
        u = rng.random(len(groups))
        idx = np.searchsorted(self.keys, groups.astype(np.float64) + u, side="right")
        return self.items[np.minimum(idx, len(self.items) - 1)]


# === the world: customers, cards, merchants ====================================================
@dataclass
class _World:
    """Entity tables; rows refer to entities by position. Times are int64 UTC milliseconds."""

    start: int
    end: int
    city_country: np.ndarray
    city_lat: np.ndarray
    city_lon: np.ndarray
    # customers
    c_country: np.ndarray
    c_city: np.ndarray
    c_lat: np.ndarray
    c_lon: np.ndarray
    c_offset: np.ndarray
    c_activity: np.ndarray
    c_online: np.ndarray
    c_scale: np.ndarray
    c_card0: np.ndarray
    c_cards: np.ndarray
    c_devices: np.ndarray
    c_device: np.ndarray
    c_home_ip: np.ndarray
    c_email: np.ndarray
    c_fav: np.ndarray
    c_created: np.ndarray
    c_new: np.ndarray
    card_owner: np.ndarray
    # merchants
    m_city: np.ndarray
    m_country: np.ndarray
    m_lat: np.ndarray
    m_lon: np.ndarray
    m_cat: np.ndarray
    m_kind: np.ndarray
    m_ticket: np.ndarray
    m_pop: np.ndarray
    cat_ships: np.ndarray
    cp_by_city: _Pool
    online_by_country: _Pool
    online_all: _Pool
    fraud_online: _Pool
    testing: _Pool
    # e-mail domains: generic first, then local, then the rare tail
    domains: list[str]
    n_generic: int
    rare0: int
    # timelines, filled once payment times are known
    c_trip_start: np.ndarray
    c_trip_end: np.ndarray
    c_trip_city: np.ndarray
    c_new_phone: np.ndarray
    c_cred_before: np.ndarray
    changes_cust: np.ndarray
    changes_at: np.ndarray


def _rare_domains(rng: np.random.Generator, n: int) -> list[str]:
    """A long tail of small domains (firms, family domains): unique, deterministic names."""
    space = len(_SYLLABLES) ** 3 * len(_TLDS)
    picks = rng.choice(space, size=min(n, space), replace=False)
    s = len(_SYLLABLES)
    return [
        f"{_SYLLABLES[p % s]}{_SYLLABLES[p // s % s]}{_SYLLABLES[p // s**2 % s]}.{_TLDS[p // s**3]}"
        for p in picks.tolist()
    ]


def _build_world(rng: np.random.Generator, cfg: SimulationConfig) -> _World:
    """Customers (home, cards, devices, habits) and merchants (place, category, ticket, channel)."""
    start = int(cfg.start_utc.value // 1_000_000)
    end = start + cfg.days * _DAY
    n_cities = len(_CITIES)
    city_country = np.array([_cidx(c[0]) for c in _CITIES], dtype=np.int64)
    city_lat = np.array([c[1] for c in _CITIES])
    city_lon = np.array([c[2] for c in _CITIES])
    city_offset = np.array([c[3] for c in _CITIES], dtype=np.int64) * _HOUR
    home_w = dict(_HOME_COUNTRIES)
    home_city_w = np.array([home_w.get(c[0], 0.0) * c[4] for c in _CITIES])

    # customers
    n_cust = max(cfg.rows // 40, 200)
    c_city = rng.choice(n_cities, size=n_cust, p=_probs(home_city_w))
    c_country = city_country[c_city]
    c_lat = np.round(city_lat[c_city] + rng.normal(0, 0.06, n_cust), 5)
    c_lon = np.round(city_lon[c_city] + rng.normal(0, 0.09, n_cust), 5)
    c_activity = rng.lognormal(0.0, 0.8, n_cust)
    c_online = rng.beta(2.0, 3.2, n_cust)
    c_scale = rng.lognormal(0.0, 0.45, n_cust)
    c_cards = 1 + (rng.random(n_cust) < 0.3).astype(np.int64)
    c_card0 = np.cumsum(c_cards) - c_cards
    card_owner = np.repeat(np.arange(n_cust), c_cards)
    c_devices = rng.choice(np.array([1, 2, 3]), size=n_cust, p=[0.45, 0.40, 0.15])
    c_device = np.arange(n_cust)[:, None] * 4 + np.arange(3)  # raw ids of usual devices
    c_home_ip = np.arange(n_cust) * 2
    # households: neighbours in a city-sorted list pair up; some share a tablet and a router
    by_city = np.lexsort((rng.random(n_cust), c_city))
    a, b = by_city[0:-1:2], by_city[1::2]
    pair = (c_city[a] == c_city[b]) & (rng.random(len(a)) < 0.2)
    a, b = a[pair], b[pair]
    c_devices[a] = np.maximum(c_devices[a], 2)
    c_devices[b] = np.maximum(c_devices[b], 2)
    c_device[b, 1] = c_device[a, 1]
    c_home_ip[b] = c_home_ip[a]

    # e-mail: common webmail, the home country's providers, or a rare domain
    generic = [d for d, _ in _GENERIC_DOMAINS]
    local_flat = [d for _, ds in _LOCAL_DOMAINS for d in ds]
    local_start = np.zeros(len(_COUNTRIES), dtype=np.int64)
    local_count = np.zeros(len(_COUNTRIES), dtype=np.int64)
    pos = len(generic)
    for code, ds in _LOCAL_DOMAINS:
        local_start[_cidx(code)] = pos
        local_count[_cidx(code)] = len(ds)
        pos += len(ds)
    rare = _rare_domains(rng, max(300, n_cust // 15))
    rare0 = len(generic) + len(local_flat)
    u = rng.random(n_cust)
    g_pick = rng.choice(len(generic), size=n_cust, p=_probs([w for _, w in _GENERIC_DOMAINS]))
    l_pick = local_start[c_country] + (rng.random(n_cust) * local_count[c_country]).astype(np.int64)
    zipf = 1.0 / np.arange(1, len(rare) + 1) ** 1.1
    r_pick = rare0 + rng.choice(len(rare), size=n_cust, p=_probs(zipf))
    c_email = np.where(u < 0.58, g_pick, np.where(u < 0.88, l_pick, r_pick))

    # merchants: a few guaranteed per city and online, the rest drawn by category share
    cat_mcc = [c[0] for c in _CATEGORIES]
    g_city: list[int] = []
    g_cat: list[int] = []
    g_kind: list[int] = []
    for i, city in enumerate(_CITIES):
        wanted = _GUARANTEED_LOCAL + (() if city[0] in home_w else _GUARANTEED_TOURIST)
        for mcc in wanted:
            g_city.append(i)
            g_cat.append(cat_mcc.index(mcc))
            g_kind.append(_CP)
    n_guaranteed_online = len(_GUARANTEED_ONLINE)
    hq = rng.choice(n_cities, size=n_guaranteed_online, p=_probs(home_city_w))
    for mcc, city_i in zip(_GUARANTEED_ONLINE, hq.tolist(), strict=True):
        g_city.append(city_i)
        g_cat.append(cat_mcc.index(mcc))
        g_kind.append(_ONLINE)
    n_merch = max(cfg.rows // 400, len(g_city) + 40)
    n_rand = n_merch - len(g_city)
    r_cat = rng.choice(len(_CATEGORIES), size=n_rand, p=_probs([c[1] for c in _CATEGORIES]))
    kind_cum = np.cumsum([[c[4], c[5], c[6]] for c in _CATEGORIES], axis=1)
    u = rng.random(n_rand)
    r_kind = (u >= kind_cum[r_cat, 0]).astype(np.int64) + (u >= kind_cum[r_cat, 1])
    r_kind = np.minimum(r_kind, 2)
    tourist = np.array([0.0 if c[0] in home_w else 1.0 for c in _CITIES])
    phys_w = 0.92 * _probs(home_city_w) + 0.08 * _probs(tourist)
    phys_city = rng.choice(n_cities, size=n_rand, p=phys_w)
    hq_city = rng.choice(n_cities, size=n_rand, p=_probs(home_city_w))
    r_city = np.where(r_kind == _ONLINE, hq_city, phys_city)
    m_city = np.concatenate([np.array(g_city, dtype=np.int64), r_city])
    m_cat = np.concatenate([np.array(g_cat, dtype=np.int64), r_cat])
    m_kind = np.concatenate([np.array(g_kind, dtype=np.int64), r_kind])
    m_country = city_country[m_city]
    m_lat = np.round(city_lat[m_city] + rng.normal(0, 0.04, n_merch), 5)
    m_lon = np.round(city_lon[m_city] + rng.normal(0, 0.06, n_merch), 5)
    cat_ticket = np.array([c[3] for c in _CATEGORIES])
    cat_visits = np.array([c[2] for c in _CATEGORIES])
    cat_appeal = np.array([c[8] for c in _CATEGORIES])
    cat_testing = np.array([c[9] for c in _CATEGORIES])
    m_ticket = cat_ticket[m_cat] * rng.lognormal(0.0, 0.35, n_merch)
    m_pop = cat_visits[m_cat] * rng.lognormal(0.0, 1.0, n_merch)
    physical = m_kind != _ONLINE
    online = m_kind != _CP
    zeros = np.zeros(n_merch, dtype=np.int64)
    cp_by_city = _Pool(m_city, np.where(physical, m_pop, 0.0), n_cities)
    online_by_country = _Pool(m_country, np.where(online, m_pop, 0.0), len(_COUNTRIES))
    online_all = _Pool(zeros, np.where(online, m_pop, 0.0), 1)
    # fraudsters want goods and tickets that resell: appeal, reach and price all count
    lure = cat_appeal[m_cat] * np.sqrt(m_pop) * np.sqrt(m_ticket / 40.0)
    fraud_online = _Pool(zeros, np.where(online, lure, 0.0), 1)
    testing = _Pool(zeros, np.where(online & cat_testing[m_cat], np.sqrt(m_pop) + 0.1, 0.0), 1)
    c_fav = cp_by_city.draw(rng, c_city)

    return _World(
        start=start,
        end=end,
        city_country=city_country,
        city_lat=city_lat,
        city_lon=city_lon,
        c_country=c_country,
        c_city=c_city,
        c_lat=c_lat,
        c_lon=c_lon,
        c_offset=city_offset[c_city],
        c_activity=c_activity,
        c_online=c_online,
        c_scale=c_scale,
        c_card0=c_card0,
        c_cards=c_cards,
        c_devices=c_devices,
        c_device=c_device,
        c_home_ip=c_home_ip,
        c_email=c_email,
        c_fav=c_fav,
        c_created=np.zeros(n_cust, dtype=np.int64),
        c_new=np.zeros(n_cust, dtype=bool),
        card_owner=card_owner,
        m_city=m_city,
        m_country=m_country,
        m_lat=m_lat,
        m_lon=m_lon,
        m_cat=m_cat,
        m_kind=m_kind,
        m_ticket=m_ticket,
        m_pop=m_pop,
        cat_ships=np.array([c[7] for c in _CATEGORIES]),
        cp_by_city=cp_by_city,
        online_by_country=online_by_country,
        online_all=online_all,
        fraud_online=fraud_online,
        testing=testing,
        domains=generic + local_flat + rare,
        n_generic=len(generic),
        rare0=rare0,
        c_trip_start=np.full(n_cust, _NEVER, dtype=np.int64),
        c_trip_end=np.full(n_cust, _NEVER, dtype=np.int64),
        c_trip_city=np.full(n_cust, -1, dtype=np.int64),
        c_new_phone=np.full(n_cust, _NEVER, dtype=np.int64),
        c_cred_before=np.full(n_cust, _NAT, dtype=np.int64),
        changes_cust=np.zeros(0, dtype=np.int64),
        changes_at=np.zeros(0, dtype=np.int64),
    )


def _day_weights(cfg: SimulationConfig, surge_factor: float) -> np.ndarray:
    """Relative volume per day: a weekly rhythm, times `surge_factor` on surge days."""
    first = cfg.start_utc.day_of_week
    w = np.array([_WEEKDAYS[(first + d) % 7] for d in range(cfg.days)])
    w[list(cfg.surges)] *= surge_factor
    return w


def _schedule(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """When genuine payments happen and whose they are; opens the new customers' accounts.

    Returns (timestamp ms, customer, local hour, surge day?) per row.
    """
    n_cust = len(w.c_country)
    period = w.end - w.start
    counts = rng.multinomial(n, _probs(_day_weights(cfg, cfg.surge_multiplier)))
    day = np.repeat(np.arange(cfg.days), counts)
    surge_day = np.zeros(cfg.days, dtype=bool)
    surge_day[list(cfg.surges)] = True
    surge = surge_day[day]
    hour = rng.choice(24, size=n, p=_probs(_HOURS))
    local = day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, n)
    cust = rng.choice(n_cust, size=n, p=_probs(w.c_activity))
    ts = w.start + (local - w.c_offset[cust]) % period

    # Established accounts are months to years old; new ones open just before their first
    # payment, more of them on surge days (the promotion brings sign-ups).
    months = np.clip(rng.lognormal(np.log(30.0), 1.0, n_cust), 1.0, 200.0)
    created = w.start - (months * 30.44 * _DAY).astype(np.int64)
    created -= rng.integers(0, _DAY, n_cust)
    n_new = min(round(n_cust * min(0.3, 0.08 * cfg.days / 90)), n // 4)
    new_ids = rng.choice(n_cust, size=n_new, replace=False)
    keys = rng.exponential(size=n) / np.where(surge, 2.0, 1.0)
    first = np.sort(np.argpartition(keys, n_new)[:n_new]) if n_new else np.zeros(0, np.int64)
    cust[first] = new_ids
    created[new_ids] = ts[first] - rng.integers(2 * _MINUTE, 3 * _HOUR, n_new)
    is_new = np.zeros(n_cust, dtype=bool)
    is_new[new_ids] = True
    early = np.flatnonzero(ts < created[cust])
    established = np.where(is_new, 0.0, w.c_activity)
    cust[early] = rng.choice(n_cust, size=len(early), p=_probs(established))
    w.c_created = created
    w.c_new = is_new
    return ts, cust, hour, surge


def _timelines(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, ts: np.ndarray, cust: np.ndarray
) -> None:
    """Trips abroad, new phones and credential changes: legitimate look-alikes of fraud signals.

    `ts` and `cust` are the genuine payments' times and customers: some customers reset a
    forgotten password at checkout, minutes before paying, just as an account taker would.
    """
    n_cust = len(w.c_country)
    period = w.end - w.start
    scale = cfg.days / 90
    # trips: some customers spend 3-14 days abroad (foreign merchants and IP addresses)
    dest_w = dict(_TRAVEL_DESTINATIONS)
    city_dest_w = _probs([dest_w.get(c[0], 0.0) * c[4] for c in _CITIES])
    pick1 = rng.choice(len(_CITIES), size=n_cust, p=city_dest_w)
    pick2 = rng.choice(len(_CITIES), size=n_cust, p=city_dest_w)
    dest = np.where(w.city_country[pick1] != w.c_country, pick1, pick2)
    travels = (rng.random(n_cust) < min(0.6, 0.2 * scale)) & (w.city_country[dest] != w.c_country)
    trip_start = w.start + rng.integers(0, period, n_cust)
    trip_len = rng.integers(3 * _DAY, 15 * _DAY, n_cust)
    w.c_trip_start = np.where(travels, trip_start, _NEVER)
    w.c_trip_end = np.where(travels, trip_start + trip_len, _NEVER)
    w.c_trip_city = np.where(travels, dest, -1)

    # new phones: from that moment the customer's main device has a new id
    lo = np.maximum(w.c_created, w.start)
    new_phone = (rng.random(n_cust) < min(0.2, 0.02 * scale)) & (lo < w.end - _HOUR)
    phone_at = lo + (rng.random(n_cust) * (w.end - lo)).astype(np.int64)
    w.c_new_phone = np.where(new_phone, phone_at, _NEVER)

    # credentials: changed before the period for some; during it with a new phone or a reset
    before = (rng.random(n_cust) < 0.35) & ~w.c_new
    before_at = w.c_created + (rng.random(n_cust) * (w.start - w.c_created)).astype(np.int64)
    w.c_cred_before = np.where(before, before_at, _NAT)
    with_phone = new_phone & (rng.random(n_cust) < 0.7)
    phone_change = np.maximum(phone_at - rng.integers(0, 2 * _HOUR, n_cust), lo)
    reset = ~with_phone & (rng.random(n_cust) < min(0.3, 0.03 * scale)) & (lo < w.end)
    reset_at = lo + (rng.random(n_cust) * (w.end - lo)).astype(np.int64)
    who = np.flatnonzero(with_phone | reset)
    n_checkout = min(round(0.08 * scale * n_cust), len(ts))
    at_checkout = rng.choice(len(ts), size=n_checkout, replace=False)
    before_paying = np.exp(rng.uniform(np.log(2 * _MINUTE), np.log(3 * _HOUR), n_checkout))
    checkout_cust = cust[at_checkout]
    checkout_at = np.maximum(
        ts[at_checkout] - before_paying.astype(np.int64), w.c_created[checkout_cust]
    )
    w.changes_cust = np.concatenate([who, checkout_cust])
    w.changes_at = np.concatenate([np.where(with_phone, phone_change, reset_at)[who], checkout_at])


def _usual_device(w: _World, cust: np.ndarray, k: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Raw id of the customer's k-th usual device at ts (a new phone replaces device 0)."""
    replaced = (k == 0) & (ts >= w.c_new_phone[cust])
    return np.where(replaced, cust * 4 + 3, w.c_device[cust, k])


# === rows =======================================================================================
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

    def __len__(self) -> int:
        return len(self.ts)


def _legit(
    rng: np.random.Generator,
    w: _World,
    ts: np.ndarray,
    cust: np.ndarray,
    hour: np.ndarray,
    surge: np.ndarray,
    row0: int,
) -> _Rows:
    """Attributes of genuine payments whose time and customer are known."""
    n = len(ts)
    trip = (ts >= w.c_trip_start[cust]) & (ts < w.c_trip_end[cust])
    home = w.c_country[cust]

    p = w.c_online[cust]
    p = np.where((hour < 6) | (hour >= 22), 1 - (1 - p) * 0.6, p)
    p = np.where(surge, 1 - (1 - p) * 0.5, p)  # the promotion is mostly online
    p = np.where(trip, p * 0.5, p)
    online = rng.random(n) < p

    # merchants: shops near home (often the favourite one) or at the destination; web shops
    merch = np.empty(n, dtype=np.int64)
    city = np.where(trip, w.c_trip_city[cust], w.c_city[cust])
    fav = ~online & ~trip & (rng.random(n) < 0.35)
    shop = ~online & ~fav
    merch[fav] = w.c_fav[cust[fav]]
    merch[shop] = w.cp_by_city.draw(rng, city[shop])
    domestic = online & (rng.random(n) < 0.7) & w.online_by_country.has(home)
    merch[domestic] = w.online_by_country.draw(rng, home[domestic])
    abroad = online & ~domestic
    merch[abroad] = w.online_all.draw(rng, np.zeros(int(abroad.sum()), dtype=np.int64))

    # amounts: the merchant's ticket, the customer's habits, bigger promotion baskets, one-offs
    eur = w.m_ticket[merch] * w.c_scale[cust] * rng.lognormal(0.0, 0.55, n)
    eur *= np.where(surge, rng.lognormal(np.log(1.35), 0.2, n), 1.0)
    eur = np.where(rng.random(n) < 0.006, eur * rng.uniform(4.0, 12.0, n), eur)

    # devices: usual ones (mostly the first), borrowed ones (more on surge days), none
    u = rng.random(n)
    n_dev = w.c_devices[cust]
    cut1 = np.array([1.0, 1.0, 0.72, 0.65])[n_dev]
    cut2 = np.array([1.0, 1.0, 1.0, 0.90])[n_dev]
    k = (u >= cut1).astype(np.int64) + (u >= cut2)
    device = _usual_device(w, cust, k, ts)
    one_off = rng.random(n) < np.where(surge, 0.04, 0.007)
    friend = w.c_device[rng.integers(0, len(w.c_device), n), 0]  # a friend's phone
    borrowed = np.where(rng.random(n) < 0.5, friend, _DEV_ONE_OFF + row0 + np.arange(n))
    device = np.where(one_off, borrowed, device)
    no_print = rng.random(n) < 0.02
    wallet = ~online & (rng.random(n) < 0.3)
    device = np.where(wallet, _usual_device(w, cust, np.zeros(n, np.int64), ts), device)
    device = np.where((online & ~no_print) | wallet, device, -1)

    # IP: home wi-fi or a carrier's shared address; hotel wi-fi abroad; some VPN users
    vpn = online & ~trip & (rng.random(n) < 0.02)
    vpn_country = _country_choice(rng, _VPN_COUNTRIES, n)
    trip_city = np.maximum(w.c_trip_city[cust], 0)
    ip_country = np.where(trip, w.city_country[trip_city], home)
    ip_country = np.where(vpn, vpn_country, ip_country)
    ip = np.where(
        rng.random(n) < 0.55,
        w.c_home_ip[cust],
        _IP_CARRIER + home * 1_000_000 + rng.integers(0, 2000, n),
    )
    ip = np.where(trip, _IP_TRAVEL + trip_city * 1_000_000 + rng.integers(0, 5000, n), ip)
    ip = np.where(vpn, _IP_VPN + rng.integers(0, 3000, n), ip)
    ip = np.where(online, ip, -1)
    ip_country = np.where(online, ip_country, -1)

    # shipping: goods bought online go home, a few are gifts sent elsewhere
    ships = online & w.cat_ships[w.m_cat[merch]]
    gift = rng.random(n) < 0.04
    gift_to = _country_choice(rng, _HOME_COUNTRIES, n)
    ship = np.where(ships, np.where(gift, gift_to, home), -1)

    # 3-D Secure: small amounts and US merchants often skip it; a few failures still go through
    u = rng.random(n)
    skip = np.where(eur < 30, 0.55, 0.17)
    skip = np.where(w.m_country[merch] == _cidx("US"), 0.8, skip)
    auth = np.where(
        u < skip, _AUTH_NOT_ATTEMPTED, np.where(u < skip + 0.02, _AUTH_FAILED, _AUTH_PASSED)
    )
    auth = np.where(online, auth, -1)

    email = np.where(
        online & (rng.random(n) < 0.03), rng.integers(0, w.n_generic, n), w.c_email[cust]
    )
    second = (w.c_cards[cust] == 2) & (rng.random(n) < 0.25)
    return _Rows(
        cust=cust,
        card=w.c_card0[cust] + second,
        merch=merch,
        ts=ts,
        eur=eur,
        online=online,
        device=device,
        ip=ip,
        ip_country=ip_country,
        ship=ship,
        auth=auth,
        email=email,
        scenario=np.zeros(n, dtype=np.int8),
        label=np.full(n, _NAT, dtype=np.int64),
    )


# === fraud ======================================================================================
def _victims(rng: np.random.Generator, w: _World, n: int) -> np.ndarray:
    """Customers hit by fraud events: the busier a card, the likelier its data leaks."""
    old_enough = w.c_created < w.end - 2 * _DAY
    return _top_k(rng, np.where(old_enough, w.c_activity, 0.0), n)


def _event_times(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, cust: np.ndarray, lead: int
) -> np.ndarray:
    """Start of each fraud event: any day (a bit more on surge days), night hours more common.

    Starts at least `lead` ms after the victim's account was opened and a day before the end.
    """
    n = len(cust)
    day = rng.choice(cfg.days, size=n, p=_probs(_day_weights(cfg, 1.5)))
    hour = np.where(
        rng.random(n) < 0.5, rng.choice(24, size=n, p=_probs(_HOURS)), rng.integers(0, 24, n)
    )
    t0 = w.start + day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, n) - _HOUR
    lo = np.maximum(w.c_created[cust] + lead, w.start)
    hi = w.end - _DAY
    redo = t0 < lo
    t0 = np.where(redo, lo + (rng.random(n) * np.maximum(hi - lo, 0)).astype(np.int64), t0)
    return np.clip(t0, w.start, hi)


def _burst_times(w: _World, t0: np.ndarray, sizes: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Row times of bursts starting at t0 with the given gaps, shifted back to end in the period."""
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    ts = np.repeat(t0, sizes) + _within(gaps.astype(np.int64) + 1000, sizes)
    last = np.maximum.reduceat(ts, np.cumsum(sizes) - sizes)
    overflow = np.maximum(last - (w.end - 1), 0)
    return ts - np.repeat(overflow, sizes)


def _bursts(
    rng: np.random.Generator,
    w: _World,
    t0: np.ndarray,
    sizes: np.ndarray,
    gap_mean: float,
    gap_max: int,
) -> np.ndarray:
    """Row times for bursts starting at t0 with exponential gaps (capped at gap_max)."""
    gaps = np.minimum(rng.exponential(gap_mean, int(sizes.sum())), gap_max)
    return _burst_times(w, t0, sizes, gaps)


def _pick_card(rng: np.random.Generator, w: _World, cust: np.ndarray) -> np.ndarray:
    second = (w.c_cards[cust] == 2) & (rng.random(len(cust)) < 0.5)
    return w.c_card0[cust] + second


def _auth(rng: np.random.Generator, n: int, passed: float, failed: float) -> np.ndarray:
    u = rng.random(n)
    return np.where(
        u < passed, _AUTH_PASSED, np.where(u < passed + failed, _AUTH_FAILED, _AUTH_NOT_ATTEMPTED)
    )


def _fraud_email(rng: np.random.Generator, w: _World, cust: np.ndarray, own: float) -> np.ndarray:
    """The victim's e-mail domain, or one the fraudster typed in (webmail or a throwaway)."""
    n = len(cust)
    webmail = rng.choice(np.array([0, 1, 6, 4]), size=n, p=[0.5, 0.2, 0.15, 0.15])
    throwaway = w.rare0 + rng.integers(0, len(w.domains) - w.rare0, n)
    theirs = np.where(rng.random(n) < 0.85, webmail, throwaway)
    return np.where(rng.random(n) < own, w.c_email[cust], theirs)


def _remote_fraud(
    rng: np.random.Generator,
    w: _World,
    cust: np.ndarray,
    ts: np.ndarray,
    merch: np.ndarray,
    eur: np.ndarray,
    sizes: np.ndarray,
    *,
    home_ip: float,
    no_device: float,
    ship_home: float,
    own_email: float,
    auth: np.ndarray,
    scenario: str,
) -> _Rows:
    """Card-not-present fraud rows from the fraudster's side: their device, IP and drop address.

    Per event (burst) one device and IP; a share goes through a proxy in the victim's country
    or shows no device fingerprint, so neither signal alone gives the fraud away.
    """
    n_ev = len(sizes)
    n = int(sizes.sum())
    n_devices = max(20, n // 4)
    ev_cust = cust[np.cumsum(sizes) - sizes] if n_ev else cust
    ev_device = np.where(
        rng.random(n_ev) < no_device, -1, _DEV_FRAUD + rng.integers(0, n_devices, n_ev)
    )
    proxied = rng.random(n_ev) < home_ip
    abroad = _country_choice(rng, _FRAUD_COUNTRIES, n_ev)
    ev_ip_country = np.where(proxied, w.c_country[ev_cust], abroad)
    ev_ip = _IP_FRAUD + rng.integers(0, max(50, n // 3), n_ev)
    drop = np.where(rng.random(n_ev) < ship_home, w.c_country[ev_cust], abroad)
    ev_email = _fraud_email(rng, w, ev_cust, own_email)
    ships = w.cat_ships[w.m_cat[merch]]
    return _Rows(
        cust=cust,
        card=np.repeat(_pick_card(rng, w, ev_cust), sizes),
        merch=merch,
        ts=ts,
        eur=eur,
        online=np.ones(n, dtype=bool),
        device=np.repeat(ev_device, sizes),
        ip=np.repeat(ev_ip, sizes),
        ip_country=np.repeat(ev_ip_country, sizes),
        ship=np.where(ships, np.repeat(drop, sizes), -1),
        auth=auth,
        email=np.repeat(ev_email, sizes),
        scenario=np.full(n, SCENARIOS.index(scenario), dtype=np.int8),
        label=np.full(n, _NAT, dtype=np.int64),
    )


def _stolen_card(rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int) -> _Rows:
    """Card details used remotely: a few bigger online payments within hours; some in person.

    A physically stolen card is tapped in shops near the victim's home (small amounts, no
    device or IP at all); details bought online are used from the fraudster's device.
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(1.3, k), 5))
    n = int(sizes.sum())
    victims = _victims(rng, w, len(sizes))
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    ts = _bursts(rng, w, t0, sizes, 25 * _MINUTE, 6 * _HOUR)
    cust = np.repeat(victims, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(2.6), 0.7, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.45, no_device=0.12, ship_home=0.55, own_email=0.5,
        auth=_auth(rng, n, 0.40, 0.15), scenario="stolen_card",
    )  # fmt: skip
    physical = np.repeat(rng.random(len(sizes)) < 0.12, sizes)
    shop = w.cp_by_city.draw(rng, w.c_city[cust])
    rows.merch = np.where(physical, shop, rows.merch)
    tap = np.minimum(w.m_ticket[shop] * rng.lognormal(0.0, 0.5, n), 50.0)
    rows.eur = np.where(physical, tap, rows.eur)
    rows.online = ~physical
    for name in ("device", "ip", "ip_country", "ship", "auth"):
        setattr(rows, name, np.where(physical, -1, getattr(rows, name)))
    rows.email = np.where(physical, w.c_email[cust], rows.email)
    return rows


def _account_takeover(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int
) -> tuple[_Rows, np.ndarray, np.ndarray]:
    """A taken-over account: credentials changed minutes to hours before big online payments.

    A quarter run on the victim's own device (remote-access malware), from their home address.
    Returns the rows and each event's (customer, credential change time).
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(0.9, k), 3))
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, 8 * _HOUR)
    lead = np.exp(rng.uniform(np.log(5 * _MINUTE), np.log(6 * _HOUR), n_ev))
    changed = t0 - lead.astype(np.int64)
    ts = _bursts(rng, w, t0, sizes, 20 * _MINUTE, 3 * _HOUR)
    changed = np.minimum(changed, ts[np.cumsum(sizes) - sizes] - _MINUTE) if n_ev else changed
    cust = np.repeat(victims, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(3.2), 0.6, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.5, no_device=0.05, ship_home=0.4, own_email=1.0,
        auth=_auth(rng, n, 0.25, 0.25), scenario="account_takeover",
    )  # fmt: skip
    rat = np.repeat(rng.random(n_ev) < 0.25, sizes)
    own = _usual_device(w, cust, np.zeros(n, dtype=np.int64), ts)
    rows.device = np.where(rat, own, rows.device)
    rows.ip = np.where(rat, w.c_home_ip[cust], rows.ip)
    rows.ip_country = np.where(rat, w.c_country[cust], rows.ip_country)
    return rows, victims, changed


def _card_testing(rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int) -> _Rows:
    """5-20 tiny payments within minutes at small online merchants, then one large cash-out."""
    sizes = _burst_sizes(rng, target, lambda k: rng.integers(6, 22, k), min_last=3)
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    starts = np.cumsum(sizes) - sizes
    pos = np.arange(n) - np.repeat(starts, sizes)
    large = pos == np.repeat(sizes - 1, sizes)
    gaps = np.where(
        large,
        np.minimum(rng.exponential(30 * _MINUTE, n), 6 * _HOUR) + _MINUTE,  # then cash out
        np.minimum(rng.exponential(40_000, n), 10 * _MINUTE),  # tests seconds apart
    )
    ts = _burst_times(w, t0, sizes, gaps)
    cust = np.repeat(victims, sizes)
    zeros = np.zeros(n_ev, dtype=np.int64)
    tester_a = w.testing.draw(rng, zeros)
    tester_b = np.where(rng.random(n_ev) < 0.5, w.testing.draw(rng, zeros), tester_a)
    test_merch = np.where(
        rng.random(n) < 0.5, np.repeat(tester_a, sizes), np.repeat(tester_b, sizes)
    )
    cash_out = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    merch = np.where(large, cash_out, test_merch)
    rate = _rates()[w.c_country[cust]]
    tiny = np.round(rng.uniform(0.5, 2.0, n), 2) / rate  # 0.50-2.00 in the card's currency
    eur = np.where(large, w.m_ticket[merch] * rng.lognormal(np.log(3.5), 0.5, n), tiny)
    auth = np.where(large, _auth(rng, n, 0.30, 0.20), _auth(rng, n, 0.10, 0.05))
    return _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.3, no_device=0.1, ship_home=0.4, own_email=0.4,
        auth=auth, scenario="card_testing",
    )  # fmt: skip


def _compromised_merchant(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int, legit: _Rows
) -> _Rows:
    """Merchants leak card data for a window; the cards are used elsewhere days later, mildly.

    Compromised shops are added (busy ones likelier, at random) until enough cards passed
    through them; the fraud is stolen-card-like but with smaller amounts and more proxies.
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(0.8, k), 2))
    n_ev = len(sizes)
    n = int(sizes.sum())
    # POS malware and skimmers: busy shops (card present) are the targets worth the effort
    volume = np.bincount(legit.merch, minlength=len(w.m_city)).astype(np.float64)
    volume = np.where(w.m_kind != _ONLINE, volume, 0.0) ** 2
    order = _top_k(rng, volume, int((volume > 0).sum()))
    period = w.end - w.start
    cards: list[np.ndarray] = []
    visits: list[np.ndarray] = []
    found = 0
    for m in order[:60].tolist():  # a handful of merchants; a loop over merchants, not rows
        length = int(rng.integers(3 * _DAY, 11 * _DAY))
        latest = max(period - length - 21 * _DAY, 0)
        w0 = w.start + int(rng.integers(0, latest + 1))
        hit = np.flatnonzero((legit.merch == m) & (legit.ts >= w0) & (legit.ts < w0 + length))
        if len(hit) == 0:
            continue
        hit = hit[np.argsort(legit.ts[hit], kind="stable")]
        card, first = np.unique(legit.card[hit], return_index=True)
        keep = np.argsort(first, kind="stable")
        cards.append(card[keep])
        visits.append(legit.ts[hit][first[keep]])
        found += len(card)
        if found >= 1.5 * n_ev:
            break
    card_pool = np.concatenate(cards) if cards else np.zeros(0, dtype=np.int64)
    visit_pool = np.concatenate(visits) if visits else np.zeros(0, dtype=np.int64)
    _, uniq = np.unique(card_pool, return_index=True)
    uniq = np.sort(uniq)
    card_pool, visit_pool = card_pool[uniq], visit_pool[uniq]
    if len(card_pool) >= n_ev:
        pick = np.sort(rng.choice(len(card_pool), size=n_ev, replace=False))
        ev_card, visit = card_pool[pick], visit_pool[pick]
    else:  # too few cards went through: leaked elsewhere, any time
        extra = n_ev - len(card_pool)
        victims = _victims(rng, w, extra)
        ev_card = np.concatenate([card_pool, _pick_card(rng, w, victims)])
        visit = np.concatenate([visit_pool, _event_times(rng, cfg, w, victims, _DAY) - _DAY])
    ev_cust = w.card_owner[ev_card]
    longest = np.clip(w.end - _DAY - visit, _HOUR, 20 * _DAY)
    shortest = np.minimum(2 * _DAY, longest // 2)
    t0 = visit + shortest + (rng.random(n_ev) * (longest - shortest)).astype(np.int64)
    t0 = np.maximum(t0, w.c_created[ev_cust] + _HOUR)
    ts = _bursts(rng, w, t0, sizes, 40 * _MINUTE, 6 * _HOUR)
    cust = np.repeat(ev_cust, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(1.7), 0.5, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.5, no_device=0.15, ship_home=0.5, own_email=0.6,
        auth=_auth(rng, n, 0.50, 0.10), scenario="compromised_merchant",
    )  # fmt: skip
    rows.card = np.repeat(ev_card, sizes)
    return rows


def _friendly_fraud(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int
) -> _Rows:
    """The customers themselves, on their own device at home, disputing a somewhat larger buy."""
    sizes = _burst_sizes(rng, target, lambda k: 1 + (rng.random(k) < 0.1).astype(np.int64))
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    ts = _bursts(rng, w, t0, sizes, 8 * _HOUR, 2 * _DAY)
    cust = np.repeat(victims, sizes)
    home = w.c_country[cust]
    online = np.repeat(rng.random(n_ev) < 0.85, sizes)
    web = w.online_by_country.has(home)
    merch = np.where(
        web,
        w.online_by_country.draw(rng, np.where(web, home, 0)),
        w.online_all.draw(rng, np.zeros(n, dtype=np.int64)),
    )
    merch = np.where(online, merch, w.cp_by_city.draw(rng, w.c_city[cust]))
    eur = w.m_ticket[merch] * w.c_scale[cust] * rng.lognormal(np.log(1.7), 0.45, n)
    own = _usual_device(w, cust, np.zeros(n, dtype=np.int64), ts)
    wallet = rng.random(n) < 0.3
    ships = online & w.cat_ships[w.m_cat[merch]]
    auth = _auth(rng, n, 0.75, 0.02)
    return _Rows(
        cust=cust,
        card=np.repeat(_pick_card(rng, w, victims), sizes),
        merch=merch,
        ts=ts,
        eur=eur,
        online=online,
        device=np.where(online | wallet, own, -1),
        ip=np.where(online, w.c_home_ip[cust], -1),
        ip_country=np.where(online, home, -1),
        ship=np.where(ships, home, -1),
        auth=np.where(online, auth, -1),
        email=w.c_email[cust],
        scenario=np.full(n, SCENARIOS.index("friendly_fraud"), dtype=np.int8),
        label=np.full(n, _NAT, dtype=np.int64),
    )


def _label(rng: np.random.Generator, cfg: SimulationConfig, rows: _Rows) -> None:
    """Chargeback time: a dispute per card, days to weeks after its last fraudulent payment."""
    n = len(rows)
    if n == 0:
        return
    friendly = rows.scenario == SCENARIOS.index("friendly_fraud")
    # a card's fraudulent payments less than two days apart are disputed together
    order = np.lexsort((rows.ts, rows.card))
    card, ts = rows.card[order], rows.ts[order]
    new_event = np.r_[True, (card[1:] != card[:-1]) | (ts[1:] - ts[:-1] > 2 * _DAY)]
    event = np.cumsum(new_event) - 1
    last = np.maximum.reduceat(ts, np.flatnonzero(new_event))
    median = np.where(
        friendly[order], cfg.friendly_chargeback_median_days, cfg.chargeback_median_days
    )
    sigma = np.where(friendly[order], cfg.friendly_chargeback_sigma, cfg.chargeback_sigma)
    first_row = np.flatnonzero(new_event)
    days = rng.lognormal(np.log(median[first_row]), sigma[first_row])
    delay = np.maximum(days * _DAY, _HOUR).astype(np.int64)
    jitter = rng.integers(0, 2 * _DAY, n)
    label = np.empty(n, dtype=np.int64)
    label[order] = last[event] + delay[event] + jitter
    rows.label = np.maximum(label, rows.ts + _HOUR)


# === assembly ===================================================================================
def _rates() -> np.ndarray:
    """Units of the billing currency per EUR, by country position."""
    rates = np.ones(len(_COUNTRIES))
    for country, _, rate in _CURRENCY:
        rates[_cidx(country)] = rate
    return rates


def _credentials(w: _World, rows: _Rows) -> np.ndarray:
    """The latest credential change at or before each payment (point-in-time correct)."""
    out = w.c_cred_before[rows.cust].copy()
    if len(w.changes_cust) == 0:
        return out
    span = (w.end - w.start) + 60 * _DAY
    base = w.start - 30 * _DAY
    order = np.lexsort((w.changes_at, w.changes_cust))
    ccust, cat = w.changes_cust[order], w.changes_at[order]
    keys = ccust * span + np.clip(cat - base, 0, span - 1)
    row_keys = rows.cust * span + np.clip(rows.ts - base, 0, span - 1)
    idx = np.searchsorted(keys, row_keys, side="right") - 1
    ok = idx >= 0
    idx = np.maximum(idx, 0)
    ok &= (ccust[idx] == rows.cust) & (cat[idx] <= rows.ts)
    return np.where(ok, np.maximum(out, cat[idx]), out)


def _frame(w: _World, rows: _Rows, salt: np.uint64) -> pd.DataFrame:
    """Sort by time, number the payments and turn codes into the contract's columns."""
    rows = rows.take(np.argsort(rows.ts, kind="stable"))
    n = len(rows)
    cust, merch = rows.cust, rows.merch
    billing = w.c_country[cust]
    currency_of = np.zeros(len(_COUNTRIES), dtype=np.int64)
    currencies = ["EUR"] + [c for _, c, _ in _CURRENCY]
    for i, (country, _, _) in enumerate(_CURRENCY):
        currency_of[_cidx(country)] = i + 1
    amount = np.maximum(np.round(rows.eur * _rates()[billing], 2), 0.3)
    # customer numbers follow account opening, as a backend would assign them
    cust_no = np.empty(len(w.c_created), dtype=np.int64)
    cust_no[np.argsort(w.c_created, kind="stable")] = np.arange(1, len(w.c_created) + 1)

    def width(count: int, least: int) -> int:
        return max(least, len(str(count)))

    columns: dict[str, object] = {
        "transaction_id": pd.Series(
            _decimal_ids("tx_", np.arange(1, n + 1), width(n, 9)), dtype="str"
        ),
        "timestamp": _utc(rows.ts),
        "card_id": pd.Series(
            _decimal_ids("card_", rows.card + 1, width(len(w.card_owner), 7)), dtype="str"
        ),
        "customer_id": pd.Series(
            _decimal_ids("cust_", cust_no[cust], width(len(cust_no), 7)), dtype="str"
        ),
        "merchant_id": pd.Series(
            _decimal_ids("merch_", merch + 1, width(len(w.m_city), 6)), dtype="str"
        ),
        "amount": amount,
        "currency": _labels(currencies, currency_of[billing]),
        "billing_country": _labels(_COUNTRIES, billing),
        "ip_country": _labels(_COUNTRIES, rows.ip_country),
        "shipping_country": _labels(_COUNTRIES, rows.ship),
        "merchant_country": _labels(_COUNTRIES, w.m_country[merch]),
        "mcc": _labels([c[0] for c in _CATEGORIES], w.m_cat[merch]),
        "channel": _labels(CHANNELS, rows.online.astype(np.int64)),
        "customer_lat": w.c_lat[cust],
        "customer_lon": w.c_lon[cust],
        "merchant_lat": w.m_lat[merch],
        "merchant_lon": w.m_lon[merch],
        "device_id": pd.Series(_hex_ids("dev_", rows.device, salt), dtype="str"),
        "ip_hash": pd.Series(_hex_ids("ip_", rows.ip, salt ^ np.uint64(0x5BD1E995)), dtype="str"),
        "email_domain": _labels(w.domains, rows.email),
        "account_created_at": _utc(w.c_created[cust]),
        "credential_changed_at": _utc(_credentials(w, rows)),
        "auth_result": _labels(AUTH_RESULTS, rows.auth),
        "is_fraud": pd.array((rows.scenario > 0).astype(np.int8), dtype="Int8"),
        "label_time": _utc(rows.label),
        "scenario": _labels(SCENARIOS, rows.scenario.astype(np.int64)),
    }
    assert list(columns)[:-1] == [c.name for c in COLUMNS if c.name not in NOT_SIMULATED]
    return pd.DataFrame(columns)


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
