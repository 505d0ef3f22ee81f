"""Service configuration, read once from the environment (RISKGATE_*) at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob an operator may turn; defaults run the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="RISKGATE_", frozen=True, extra="ignore")

    api_keys: str | None = Field(default=None, description="role:KEY[,role:name:KEY...]")
    db_url: str = "sqlite:///.riskgate/riskgate.db"
    state_path: str = ".riskgate/state.db"
    state_url: str | None = Field(
        default=None, description="redis://host:port/db: online state shared by all replicas"
    )
    state_prefix: str = "riskgate:"  # Redis key namespace (one per deployment)
    model_dir: str | None = Field(default=None, description="serve a local artifact directory")
    model_alias: str = "champion"
    bento_model: str | None = Field(
        default=None, description="a BentoML model tag (set in the Bento): serve it, not MLflow"
    )
    model_deadline_ms: float = Field(
        default=200.0,
        ge=0,
        le=60_000,
        allow_inf_nan=False,
        description="beyond it the fallback decides; 0 turns the deadline off (model inline)",
    )
    policy_file: str | None = None
    sla_minutes: float = 15.0
    appeals_sla_minutes: float = Field(
        default=240.0, gt=0, description="SLA of the appeals queue (a merchant's appeal)"
    )
    claim_minutes: float = 15.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    sqlite_synchronous: str = "NORMAL"
    sqlite_cache_mib: int = Field(
        default=64, ge=1, le=4096, description="SQLite's page cache per connection (MiB)"
    )
    sqlite_mmap_mib: int = Field(
        default=2048,
        ge=0,
        le=65536,
        description="SQLite reads the database through a memory map up to this size (MiB; 0: "
        "off; SQLite caps it, at 2 GiB in Python's build)",
    )
    explain_top: int = 5
    max_batch: int = 1_000
    max_body_bytes: int = Field(
        default=2_000_000, ge=1_000, description="larger request bodies get 413 before parsing"
    )
    wal_checkpoint_seconds: float = Field(
        default=0.25,
        ge=0.0,
        le=3600.0,
        description="SQLite WAL checkpoints on a thread of their own this often (0: inside "
        "commits, SQLite's default)",
    )
    score_group_max: int = Field(
        default=64, ge=1, description="/score requests scored together at most (1: one by one)"
    )
    score_groups_on: Literal["loop", "thread"] = Field(
        default="loop",
        description="who scores a /score group: the event loop itself (a thread only while "
        "another worker holds the order lock) or one scoring thread",
    )
    gc_threshold: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt] = Field(
        default=(20_000, 50, 100), description="gc.set_threshold in each worker, e.g. [700,10,10]"
    )
    workers: int = Field(default=1, ge=1, description="worker processes (set by riskgate serve)")
    config_poll_seconds: float = Field(
        default=2.0, gt=0, description="how soon other workers follow a policy change or reload"
    )
    capacity_enabled: bool = Field(default=False, description="adapt the review band to capacity")
    capacity_reviews_per_hour: float = 30.0
    capacity_max_review_probability: float = 0.2  # ceiling when the model reviews by probability
    capacity_max_review_saving: float = 50.0  # ceiling (money) when it reviews by expected saving
    capacity_max_shed_loss_per_day: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="most expected fraud loss the raised band may let through per UTC day",
    )
    capacity_plan: Literal["fixed", "team"] = Field(
        default="fixed",
        description="fixed: capacity_reviews_per_hour; team: the team on shift, SLA-planned",
    )
    four_eyes_amount: float | None = Field(
        default=None, ge=0, description="above this amount a review decision needs a 2nd key"
    )
    explain_arms: str | None = Field(
        default=None, description="e.g. score,score+facts,score+facts+shap: random arm per case"
    )

    @field_validator("explain_arms")
    @classmethod
    def _known_arms(cls, v: str | None) -> str | None:
        known = ("score", "score+facts", "score+facts+shap")
        arms = [a.strip() for a in (v or "").split(",") if a.strip()]
        bad = [a for a in arms if a not in known]
        if bad or len(set(arms)) != len(arms):
            raise ValueError(f"each arm once, one of {', '.join(known)} (got {v!r})")
        return ",".join(arms) or None

    # the staffed review team (merchant settlement times and the wait forecast)
    team_shifts: str = Field(
        default="08-20:2,20-08:1",
        pattern=r"^\s*\d{1,2}(\.\d+)?-\d{1,2}(\.\d+)?:\d{1,4}(\s*,\s*\d{1,2}(\.\d+)?-\d{1,2}(\.\d+)?:\d{1,4})*\s*$",
        description="START-END:REVIEWERS,... hours UTC",
    )
    team_handling_minutes: float = Field(default=4.0, gt=0, le=600, description="median per case")
    forecast_runs: int = Field(
        default=200,
        ge=1,
        le=200,
        description="queue simulations per wait forecast: its p90 band is their 5th-95th "
        "percentile, steady at 200 (~3-4 s of one core, at most once a minute per worker)",
    )
