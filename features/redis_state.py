"""Online state in Redis, shared by every replica of the service (`RISKGATE_STATE_URL`).

Same semantics as `MemoryState`, laid out so that each call is one round trip:

``{prefix}h:{entity}:{key}``  one sorted set per entity key; every member has score 0 and is a
    packed record ``ts | seq | cents | lat | lon | card``. ``ts`` is the payment time (int64 ns,
    offset to unsigned, big-endian) and ``seq`` a global arrival counter (``{prefix}seq``), so
    the set's lexicographic order is exactly (ts, arrival) and members are unique even for equal
    timestamps. Lex order also makes expiry exact:
    ``ZREMRANGEBYLEX key - (ts(bound + 1)`` drops every event with ts <= bound. (A float score
    of ns timestamps would be off by up to 256 ns at today's epoch.)
``{prefix}f:{entity}:{key}``  the counted fraud labels of an entity key (the entities in
    `state.LABELLED`: card, customer, merchant, category), members ``ts | transaction_id``.
``{prefix}txn``  hash: transaction id -> ``counted flag | ts | n | n x (length, entity:key)``,
    the label index: which fraud keys a label on the transaction counts in.
``{prefix}txn:ts``  sorted set ``ts | seq | transaction_id`` to expire that index in event time.

`record_payment` is one Lua script (atomic, so concurrent replicas never interleave half a
payment): a transaction id already in the index is not applied again (idempotent, as in
`MemoryState`); otherwise per entity key, drop what is older than the look-back relative to this
payment and add the record; index the transaction; expire transactions that left the look-back
(their labels then return False, as in `MemoryState`). `record_label` is one Lua script too: the
counted flag in the index makes a fraud label count once (in every fraud key it lists), a
reversal uncounts it. `history` is one ZRANGE, or one read script (labelled entities: payments
and fraud labels together; histories this instance keeps a local copy of: only what changed
since, see `RedisState`); `histories` reads several entity keys in one round trip.

Every write also refreshes a key TTL (look-back + a day of wall-clock time) as a safety net for
entities that go idle; the event-time pruning above is what keeps memory bounded. Scripts build
the fraud-label keys from the prefix, so this targets a single Redis (or a primary with
replicas / Sentinel), not Redis Cluster.

The fraud-label layout changed when labels were kept for cards, customers and categories as well
as merchants (``f:{merchant}`` became ``f:merchant:{merchant}``, and the index value lists its
keys): a deployment upgrading from the merchant-only layout starts on a new prefix.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from features.state import LABELLED, LOOKBACK_NS, History, PaymentEvent, entity_keys, labelled_keys
from features.transforms import NS_PER_S

_OFFSET = 1 << 63  # int64 ns -> unsigned, so big-endian bytes sort like the numbers
_TS = struct.Struct(">Q")
_LEN = struct.Struct(">I")
_PAYLOAD = struct.Struct(">qdd?")  # cents, merchant lat, merchant lon, card present
_RECORD = struct.Struct(">Q8xqdd?")  # ts, (seq), payload
_CARD_AT = _RECORD.size  # 41: the card id's utf-8 bytes follow
DEFAULT_TTL_S = LOOKBACK_NS // NS_PER_S + 86_400

# KEYS: seq, txn hash, txn expiry set, n entity keys, m fraud-label keys
# ARGV: ts8, payload, cutoff8 (= ts of bound + 1), ttl ms, txn id, txn index value (no flag),
#       n, m
_RECORD_PAYMENT = """
if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[1])
local seq8 = struct.pack('>I8', seq)
local member = ARGV[1] .. seq8 .. ARGV[2]
local cutoff = '(' .. ARGV[3]
local ttl = ARGV[4]
local n = tonumber(ARGV[7])
for i = 4, 3 + n do
  redis.call('ZREMRANGEBYLEX', KEYS[i], '-', cutoff)
  redis.call('ZADD', KEYS[i], 0, member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
for i = 4 + n, 3 + n + tonumber(ARGV[8]) do
  redis.call('ZREMRANGEBYLEX', KEYS[i], '-', cutoff)
end
local id = ARGV[5]
local old = redis.call('HGET', KEYS[2], id)
local flag = '0'
if old then flag = string.sub(old, 1, 1) end
redis.call('HSET', KEYS[2], id, flag .. ARGV[6])
redis.call('ZADD', KEYS[3], 0, ARGV[1] .. seq8 .. id)
local gone = redis.call('ZRANGEBYLEX', KEYS[3], '-', cutoff)
if #gone > 0 then
  for _, m in ipairs(gone) do
    redis.call('HDEL', KEYS[2], string.sub(m, 17))
  end
  redis.call('ZREMRANGEBYLEX', KEYS[3], '-', cutoff)
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return seq
"""

# KEYS: txn hash. ARGV: txn id, '1' fraud / '0' not, fraud key prefix, ttl ms.
# Index value: counted flag (1 byte) | ts (8) | n (1 byte) | n x (length (4, big-endian) |
# "entity:key"), the fraud-label keys (after the prefix) this transaction's label counts in.
_RECORD_LABEL = """
local id = ARGV[1]
local v = redis.call('HGET', KEYS[1], id)
if not v then return 0 end
local counted = string.sub(v, 1, 1) == '1'
local add = ARGV[2] == '1' and not counted
local remove = ARGV[2] == '0' and counted
if not (add or remove) then return 1 end
local member = string.sub(v, 2, 9) .. id
local at = 11
for _ = 1, string.byte(v, 10) do
  local len = struct.unpack('>I4', v, at)
  local fkey = ARGV[3] .. string.sub(v, at + 4, at + 3 + len)
  at = at + 4 + len
  if add then
    redis.call('ZADD', fkey, 0, member)
    redis.call('PEXPIRE', fkey, ARGV[4])
  else
    redis.call('ZREM', fkey, member)
  end
end
redis.call('HSET', KEYS[1], id, (add and '1' or '0') .. string.sub(v, 2))
return 1
"""

# Read histories. Per history ARGV holds a pair: the last member of the caller's local copy
# ('' for a full read) and '1' when the entity key's fraud-label key follows it in KEYS.
# Per history the reply is {size, first member, members (all, or after the given last one),
# fraud labels}: enough for the caller to check its copy (see RedisState._apply_since).
_READ = """
local out = {}
local k = 1
for i = 1, #ARGV, 2 do
  local key = KEYS[k]
  k = k + 1
  local last = ARGV[i]
  local n = redis.call('ZCARD', key)
  local first = ''
  local members = {}
  if n > 0 then
    if last == '' then
      members = redis.call('ZRANGE', key, 0, -1)
      first = members[1]
    else
      first = redis.call('ZRANGE', key, 0, 0)[1]
      members = redis.call('ZRANGEBYLEX', key, '(' .. last, '+')
    end
  end
  local fraud = {}
  if ARGV[i + 1] == '1' then
    fraud = redis.call('ZRANGE', KEYS[k], 0, -1)
    k = k + 1
  end
  out[#out + 1] = {n, first, members, fraud}
end
return out
"""


def _ts8(ts: int) -> bytes:
    return _TS.pack(ts + _OFFSET)


def _append(h: History, members: Sequence[bytes]) -> None:
    """Decode packed records (in order) onto the end of `h`."""
    if not members:
        return
    ts, cents, lat, lon, has = zip(*map(_RECORD.unpack_from, members), strict=True)
    h.ts.extend([t - _OFFSET for t in ts])
    h.extend_cents(cents)
    h.lat.extend(lat)
    h.lon.extend(lon)
    h.cards.extend(
        [m[_CARD_AT:].decode() if c else None for m, c in zip(members, has, strict=True)]
    )


def _fraud_ts(members: Sequence[bytes]) -> list[int]:
    return [int.from_bytes(m[:8]) - _OFFSET for m in members]


def _decode(members: Sequence[bytes], fraud: Sequence[bytes] = ()) -> History:
    h = History()
    _append(h, members)
    h.fraud_ts = _fraud_ts(fraud)
    return h


@dataclass
class _Cached:
    """A replica's copy of one large history: the packed members (sorted) and their decoding."""

    members: list[bytes]
    history: History


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisState:
    """`StateStore` in Redis: `MemoryState` semantics, shared by all replicas on one prefix.

    Large histories (a busy merchant, an e-mail domain) would cost a full transfer and decode
    on every payment, so each instance keeps a bounded LRU copy of the histories with at least
    `cache_min_events` events and asks Redis only for what changed (still one round trip per
    `history()`; the copy is checked against the server's size and first member, and re-read
    in full when another replica's out-of-order write makes it inconsistent). As with
    `MemoryState`, a returned `History` is live: it may change on the next `history()` call for
    the same key (the scorer serialises scoring).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "riskgate:",
        ttl_s: int = DEFAULT_TTL_S,
        cache_min_events: int = 64,
        cache_max_events: int = 200_000,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._owns = owns_client
        self._ttl_ms = int(ttl_s) * 1000
        self._seq_key = f"{prefix}seq"
        self._txn_key = f"{prefix}txn"
        self._txn_ts_key = f"{prefix}txn:ts"
        self._hist_prefix = f"{prefix}h:"
        self._fraud_prefix = f"{prefix}f:"
        self._record_payment = client.register_script(_RECORD_PAYMENT)
        self._record_label = client.register_script(_RECORD_LABEL)
        self._read = client.register_script(_READ)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_min = max(1, cache_min_events)
        self._cache_max = cache_max_events
        self._cached_events = 0
        self._lock = threading.Lock()
        self.cache_stats = {"full": 0, "incremental": 0, "reread": 0}

    @classmethod
    def from_url(cls, url: str, prefix: str = "riskgate:", **kwargs: Any) -> RedisState:
        """Connect to `url` (redis://host:port/db). `ttl_s`, `cache_min_events` and
        `cache_max_events` go to the constructor, other kwargs to `redis.Redis.from_url`."""
        own = {
            k: kwargs.pop(k)
            for k in ("ttl_s", "cache_min_events", "cache_max_events")
            if k in kwargs
        }
        kwargs["decode_responses"] = False  # members are packed bytes
        client = redis.Redis.from_url(url, **kwargs)
        return cls(client, prefix=prefix, owns_client=True, **own)

    # --- the StateStore protocol ------------------------------------------------------------

    def history(self, entity: str, key: str) -> History:
        return self.histories(((entity, key),))[0]

    def histories(self, wanted: Iterable[tuple[str, str]]) -> list[History]:
        """Several (entity, key) histories in one round trip, in the order asked.

        `history()` is this with one key. Fetching all of a payment's entities at once (about
        six) saves five round trips on the scoring path.
        """
        plans: list[tuple[str, str | None, _Cached | None, bytes]] = []
        keys: list[str] = []
        args: list[bytes | int] = []
        with self._lock:
            for entity, key in wanted:
                hkey = f"{self._hist_prefix}{entity}:{key}"
                # labels are kept for the labelled entities only
                fkey = f"{self._fraud_prefix}{entity}:{key}" if entity in LABELLED else None
                entry = self._cache.get(hkey)
                last = entry.members[-1] if entry is not None else b""
                plans.append((hkey, fkey, entry, last))
                keys.append(hkey)
                args += (last, 0 if fkey is None else 1)
                if fkey is not None:
                    keys.append(fkey)
        replies: list[Any]
        if len(plans) == 1 and plans[0][1] is None and plans[0][2] is None:
            replies = [(-1, b"", self.client.zrange(keys[0], 0, -1), [])]  # plain and cheapest
        else:
            replies = self._read(keys, args)
        out = []
        for (hkey, fkey, entry, last), reply in zip(plans, replies, strict=True):
            n, first, members, fraud = reply
            h = None
            if entry is not None:
                h = self._apply_since(hkey, entry, last, int(n), first, members, fraud)
                if h is None:  # rare: read this one again, in full
                    again = [hkey] if fkey is None else [hkey, fkey]
                    _, _, members, fraud = self._read(again, [b"", 0 if fkey is None else 1])[0]
            if h is None:
                h = self._adopt(hkey, members, fraud)
            out.append(h)
        return out

    def _adopt(self, hkey: str, members: list[bytes], fraud: list[bytes]) -> History:
        """Decode a full read and keep it in the local copy when it is large."""
        h = _decode(members, fraud)
        with self._lock:
            self.cache_stats["full"] += 1
            old = self._cache.pop(hkey, None)
            if old is not None:
                self._cached_events -= len(old.members)
            if self._cache_min <= len(members) <= self._cache_max:
                self._cache[hkey] = _Cached(members, h)
                self._cached_events += len(members)
                self._evict()
        return h

    def _apply_since(
        self,
        hkey: str,
        entry: _Cached,
        last: bytes,
        n: int,
        first: bytes,
        new: list[bytes],
        fraud: list[bytes],
    ) -> History | None:
        """Bring a local copy up to date; None when it cannot be (read it in full).

        Redis only ever drops a prefix of a history (expiry) and inserts members; so the copy
        minus what precedes the server's first member, plus the members after the copy's last
        one, is the server's history exactly when the first member is in the copy (or after
        it) and the sizes add up. Otherwise another replica wrote before our last member (a
        payment out of time order) or the key was recreated: read it in full.
        """
        with self._lock:
            members = entry.members
            if self._cache.get(hkey) is not entry or not members or members[-1] != last:
                return None  # another thread moved it meanwhile
            if n == 0:
                drop = len(members)
            elif first > last:
                drop = len(members)  # all we had is gone
            else:
                drop = bisect_left(members, first)
                if drop == len(members) or members[drop] != first:
                    drop = -1  # an out-of-order write before our last member
            if drop < 0 or len(members) - drop + len(new) != n:
                self.cache_stats["reread"] += 1
                return None
            h = entry.history
            if drop:
                del members[:drop]
                h.drop_first(drop)
            members.extend(new)
            _append(h, new)
            h.fraud_ts = _fraud_ts(fraud)
            self._cached_events += len(new) - drop
            self.cache_stats["incremental"] += 1
            if members:
                self._cache.move_to_end(hkey)
                self._evict()
            else:
                del self._cache[hkey]
            return h

    def _evict(self) -> None:
        while self._cached_events > self._cache_max and self._cache:
            _, gone = self._cache.popitem(last=False)
            self._cached_events -= len(gone.members)

    def cached_events(self) -> int:
        """Events held in this instance's local copy of large histories."""
        return self._cached_events

    def record_payment(self, event: PaymentEvent) -> None:
        keys = entity_keys(event)
        ts8 = _ts8(event.ts)
        card = event.card_id
        payload = _PAYLOAD.pack(
            event.cents, event.merchant_lat, event.merchant_lon, card is not None
        )
        if card is not None:
            payload += card.encode()
        labelled = [f"{entity}:{key}".encode() for entity, key in labelled_keys(event)]
        index = ts8 + bytes((len(labelled),))
        index += b"".join(_LEN.pack(len(k)) + k for k in labelled)
        hist_prefix = self._hist_prefix
        script_keys: list[str | bytes] = [self._seq_key, self._txn_key, self._txn_ts_key]
        script_keys += [f"{hist_prefix}{entity}:{key}" for entity, key in keys.items()]
        fraud_prefix = self._fraud_prefix.encode()
        script_keys += [fraud_prefix + k for k in labelled]
        args = (
            ts8,
            payload,
            _ts8(event.ts - LOOKBACK_NS + 1),
            self._ttl_ms,
            event.transaction_id,
            index,
            len(keys),
            len(labelled),
        )
        self._record_payment(script_keys, args)

    def record_label(self, transaction_id: str, is_fraud: bool, label_time: int) -> bool:
        """Apply a label; False when the payment is unknown or too old to matter."""
        known = self._record_label(
            (self._txn_key,),
            (transaction_id, 1 if is_fraud else 0, self._fraud_prefix, self._ttl_ms),
        )
        return bool(known)

    def deployment_id(self) -> str | None:
        """The deployment this prefix belongs to (stamped at its first start), if any."""
        stamp = self.client.get(f"{self.prefix}deployment")
        if stamp is None:
            return None
        return stamp.decode() if isinstance(stamp, bytes) else str(stamp)

    def claim_deployment(self, candidate: str) -> str:
        """Stamp the prefix with `candidate` unless it already has a stamp (SET NX: replicas
        starting together agree); the stamp it has."""
        self.client.set(f"{self.prefix}deployment", candidate, nx=True)
        stamp = self.deployment_id()
        assert stamp is not None
        return stamp

    def has_events(self) -> bool:
        return bool(self.client.exists(self._seq_key))

    def close(self) -> None:
        if self._owns:
            self.client.close()

    # --- maintenance and metrics (SCAN: not for the hot path) ----------------------------------

    def _scan(self, what: str) -> Iterable[bytes]:
        return self.client.scan_iter(match=_glob_escape(self.prefix) + what, count=1000)

    def events_held(self) -> int:
        """Entity events stored under this prefix (the bounded-memory test and metrics)."""
        keys = list(self._scan("h:*"))
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.zcard(k)
        return int(sum(pipe.execute()))

    def transactions_held(self) -> int:
        """Transactions in the label index."""
        return int(self.client.hlen(self._txn_key))

    def sizes(self) -> dict[str, int]:
        """Entities held per kind, like `MemoryState.sizes`."""
        out: dict[str, int] = {}
        start = len(self._hist_prefix)
        for k in self._scan("h:*"):
            entity = k.decode()[start:].split(":", 1)[0]
            out[entity] = out.get(entity, 0) + 1
        return out

    def prune(self, now: int) -> None:
        """Forget everything older than the look-back, including idle entities."""
        cutoff = b"(" + _ts8(now - LOOKBACK_NS + 1)
        pipe = self.client.pipeline(transaction=False)
        for pattern in ("h:*", "f:*"):
            for k in self._scan(pattern):
                pipe.zremrangebylex(k, b"-", cutoff)
        pipe.execute()  # the label index expires with the payments (as in MemoryState)

    def clear(self) -> int:
        """Delete every key under this prefix (tests, or retiring a namespace; not while other
        replicas use it: the arrival counter starts again)."""
        with self._lock:
            self._cache.clear()
            self._cached_events = 0
        removed = 0
        batch: list[bytes] = []
        for k in self._scan("*"):
            batch.append(k)
            if len(batch) >= 1000:
                removed += int(self.client.unlink(*batch))
                batch.clear()
        if batch:
            removed += int(self.client.unlink(*batch))
        return removed
