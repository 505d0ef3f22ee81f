"""API keys with roles: parsed from RISKGATE_API_KEYS, kept only as digests."""

from __future__ import annotations

import hashlib

import pytest

from serving.core.auth import AuthError, KeyRing, Principal, require

BACKEND_KEY = "backend-secret-key-000001"
REVIEWER_KEY = "reviewer-secret-key-00002"
ADMIN_KEY = "admin-secret-key-00000003"
SPEC = f"backend:{BACKEND_KEY}, reviewer:alice:{REVIEWER_KEY},admin:{ADMIN_KEY}"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.parse(SPEC)


def test_keys_are_kept_only_as_sha256_digests(ring):
    kept = repr(ring)

    for key in (BACKEND_KEY, REVIEWER_KEY, ADMIN_KEY):
        assert key not in kept
        assert hashlib.sha256(key.encode()).hexdigest() in kept
    assert all(len(d) == 64 for d, _ in ring.entries)


def test_each_key_authenticates_as_its_role_and_name(ring):
    backend = ring.authenticate(f"Bearer {BACKEND_KEY}")
    reviewer = ring.authenticate(f"bearer {REVIEWER_KEY}")
    admin = ring.authenticate(f"Bearer  {ADMIN_KEY} ")

    assert (backend.role, reviewer.role, admin.role) == ("backend", "reviewer", "admin")
    assert reviewer.name == "alice"
    assert backend.name.startswith("backend-")
    assert BACKEND_KEY not in backend.name


def test_key_id_is_stable_and_reveals_nothing_of_the_key(ring):
    first = ring.authenticate(f"Bearer {BACKEND_KEY}")
    again = KeyRing.parse(SPEC).authenticate(f"Bearer {BACKEND_KEY}")

    assert first.key_id == again.key_id
    assert first.key_id == hashlib.sha256(BACKEND_KEY.encode()).hexdigest()[:12]
    assert first.key_id not in BACKEND_KEY


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        f"Basic {BACKEND_KEY}",
        BACKEND_KEY,
        "Bearer unknown-key-1234567",
    ],
    ids=["none", "empty", "no-key", "blank-key", "basic", "no-scheme", "unknown"],
)
def test_missing_malformed_or_unknown_key_is_401(ring, header):
    with pytest.raises(AuthError) as err:
        ring.authenticate(header)

    assert err.value.status == 401


def test_wrong_role_is_403_and_names_the_needed_role(ring):
    reviewer = ring.authenticate(f"Bearer {REVIEWER_KEY}")

    with pytest.raises(AuthError) as err:
        require(reviewer, ("backend",))

    assert err.value.status == 403
    assert "backend" in err.value.message
    require(reviewer, ("reviewer", "admin"))  # allowed: no error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no key"),
        (" , ,", "no key"),
        ("backend", "entry 1: use role:KEY"),
        (f"backend:{BACKEND_KEY},a:b:c:{ADMIN_KEY}", "entry 2: use role:KEY"),
        (f"root:{ADMIN_KEY}", "entry 1: unknown role 'root'"),
        ("backend:short-key", "entry 1: key shorter than 16"),
        (f"backend:{BACKEND_KEY},reviewer:bob:tiny", "entry 2: key shorter than 16"),
        (f"backend:{BACKEND_KEY},merchant:{ADMIN_KEY}", "entry 2: a merchant key needs its"),
        (f"merchant: :{ADMIN_KEY}", "entry 1: a merchant key needs its merchant id"),
    ],
)
def test_bad_key_spec_is_refused_with_the_entry_named(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        KeyRing.parse(spec)

    for key in (BACKEND_KEY, ADMIN_KEY, "short-key", "tiny"):
        assert key not in str(err.value), "the error must not print a key"


def test_principal_is_immutable(ring):
    who = ring.authenticate(f"Bearer {BACKEND_KEY}")

    assert isinstance(who, Principal)
    with pytest.raises(AttributeError):
        who.role = "admin"  # type: ignore[misc]


def test_supervisor_and_merchant_keys_carry_their_scope():
    ring = KeyRing.parse(
        f"supervisor:carol:{REVIEWER_KEY},merchant:merch_000341:{ADMIN_KEY},backend:{BACKEND_KEY}"
    )
    carol = ring.authenticate(f"Bearer {REVIEWER_KEY}")
    shop = ring.authenticate(f"Bearer {ADMIN_KEY}")
    backend = ring.authenticate(f"Bearer {BACKEND_KEY}")

    assert (carol.role, carol.name, carol.merchant_id) == ("supervisor", "carol", None)
    assert (shop.role, shop.merchant_id) == ("merchant", "merch_000341")
    assert backend.merchant_id is None
