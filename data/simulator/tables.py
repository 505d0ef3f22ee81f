"""The fixed tables the simulator draws from: time units, countries and cities, currencies,
merchant categories, e-mail domains, the daily and weekly rhythm, raw device and IP id ranges."""

from __future__ import annotations

import numpy as np

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


def _cidx(code: str) -> int:
    return _COUNTRIES.index(code)


def _rates() -> np.ndarray:
    """Units of the billing currency per EUR, by country position."""
    rates = np.ones(len(_COUNTRIES))
    for country, _, rate in _CURRENCY:
        rates[_cidx(country)] = rate
    return rates
