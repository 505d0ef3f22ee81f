"""The decision store and the online state must belong to one deployment.

They are configured apart (RISKGATE_DB_URL; RISKGATE_STATE_PATH, relative to the working
directory by default, or RISKGATE_STATE_URL + PREFIX), so a service can start on a fresh
decision database beside an old state: the same payments are then scored again and their
history counted twice. At the first start both stores are stamped with one deployment id (the
`deployment` row of the settings table; the state's own stamp); a start on stores whose stamps
show they served different deployments is refused with one line saying which and how to fix.

An unstamped store joins (a fresh one, a state warmed from history before going live, or both
stores of a deployment from before the stamp); a stamped state with payments beside an
unstamped decision store is refused: that state served another decision store.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, exists, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from data import pan
from serving.core.schemas import now_utc
from serving.core.settings import Settings
from serving.store import db

log = logging.getLogger("riskgate")
SETTING = "deployment"


class DeploymentMismatchError(RuntimeError):
    """The decision store and the online state are from different deployments."""


@dataclass(frozen=True)
class Seen:
    """What one store says about itself: its stamp (None: never stamped) and whether it holds
    anything (decisions / payment events)."""

    stamp: str | None
    has_data: bool


def db_seen(engine: Engine) -> Seen:
    with engine.connect() as conn:
        row = conn.execute(
            select(db.settings_table.c.value).where(db.settings_table.c.name == SETTING)
        ).first()
        has = bool(conn.execute(select(exists().select_from(db.decisions))).scalar())
    stamp = row.value.get("id") if row is not None and isinstance(row.value, dict) else None
    return Seen(None if stamp is None else str(stamp), has)


def db_claim(engine: Engine, candidate: str) -> str:
    """Stamp the decision store with `candidate` unless it has a stamp; the stamp it has
    (workers and replicas starting together: the first insert wins)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(db.settings_table).values(
                    name=SETTING,
                    value={"id": candidate},
                    updated_at=now_utc(),
                    updated_by="system",
                )
            )
    except IntegrityError:
        pass
    stamp = db_seen(engine).stamp
    assert stamp is not None
    return stamp


def state_seen(store: Any) -> Seen:
    return Seen(store.deployment_id(), bool(store.has_events()))


def db_label(settings: Settings) -> str:
    """The decision store as an operator configured it (a password never shown)."""
    return make_url(settings.db_url).render_as_string(hide_password=True)


def state_label(settings: Settings) -> str:
    if settings.state_url:
        url = make_url(settings.state_url).render_as_string(hide_password=True)
        return f"{url} prefix {settings.state_prefix!r}"
    return settings.state_path


def _fix(settings: Settings) -> str:
    state_vars = (
        "RISKGATE_STATE_URL/RISKGATE_STATE_PREFIX" if settings.state_url else "RISKGATE_STATE_PATH"
    )
    return (
        f"point RISKGATE_DB_URL and {state_vars} at the same deployment's stores (a relative "
        "RISKGATE_STATE_PATH depends on the working directory), or move the state away to "
        "start the online features from empty"
    )


def problem(settings: Settings, decisions: Seen, state: Seen) -> str | None:
    """Why the two stores cannot be served together, in one line; None when they can."""
    where_db, where_state = db_label(settings), state_label(settings)
    if decisions.stamp and state.stamp and decisions.stamp != state.stamp:
        return (
            f"the decision store ({where_db}, deployment {decisions.stamp[:8]}) and the online "
            f"state ({where_state}, deployment {state.stamp[:8]}) are from different "
            f"deployments: {_fix(settings)}"
        )
    if state.stamp and not decisions.stamp and state.has_data:
        return (
            f"the online state ({where_state}) holds payments of deployment {state.stamp[:8]}, "
            f"which the decision store ({where_db}) never served (a fresh or another "
            f"database): {_fix(settings)}"
        )
    return None


def ensure_one_deployment(settings: Settings, engine: Engine, store: Any) -> str | None:
    """Check the stores, then stamp each that has no stamp yet; the deployment id (None for a
    state that keeps nothing, e.g. in memory). Raises DeploymentMismatchError."""
    if not callable(getattr(store, "deployment_id", None)):
        return None
    decisions, state = db_seen(engine), state_seen(store)
    found = problem(settings, decisions, state)
    if found is not None:
        raise DeploymentMismatchError(found)
    if decisions.has_data and not state.has_data and not state.stamp:
        log.warning(
            "the online state (%s) is empty beside a decision store with decisions: the "
            "velocity features start from empty (if the state lives elsewhere, set %s)",
            state_label(settings),
            "RISKGATE_STATE_URL" if settings.state_url else "RISKGATE_STATE_PATH",
        )
    chosen = decisions.stamp or state.stamp or pan.id_without_pan(lambda _: uuid.uuid4().hex)
    stamp = db_claim(engine, chosen)
    if store.claim_deployment(stamp) != stamp:  # another process stamped the state first
        raise DeploymentMismatchError(
            problem(settings, db_seen(engine), state_seen(store)) or "stamps disagree"
        )
    return stamp


def check_before_serve(settings: Settings) -> str | None:
    """For `riskgate serve`, before any worker starts: the stores' problem in one line, or
    None (and both stores stamped). The state is not replayed: only its stamp is read."""
    from features.state import SQLiteStamp

    engine = db.make_engine(settings.db_url, synchronous=settings.sqlite_synchronous)
    store: Any
    if settings.state_url:
        from features.redis_state import RedisState

        store = RedisState.from_url(settings.state_url, prefix=settings.state_prefix)
    else:
        store = SQLiteStamp(settings.state_path)
    try:
        db.create_schema(engine)
        ensure_one_deployment(settings, engine, store)
    except DeploymentMismatchError as exc:
        return str(exc)
    finally:
        store.close()
        engine.dispose()
    return None
