"""Service configuration, read once from the environment (RISKGATE_*) at start-up."""

from __future__ import annotations

from pydantic import Field, NonNegativeInt
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
    model_deadline_ms: float = 200.0
    policy_file: str | None = None
    sla_minutes: float = 15.0
    claim_minutes: float = 15.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    sqlite_synchronous: str = "NORMAL"
    explain_top: int = 5
    max_batch: int = 1_000
    max_body_bytes: int = 2_000_000
    score_group_max: int = Field(
        default=64, ge=1, description="/score requests scored together at most (1: one by one)"
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
    # the staffed review team (merchant settlement times and the wait forecast)
    team_shifts: str = Field(
        default="08-20:2,20-08:1",
        pattern=r"^\s*\d{1,2}(\.\d+)?-\d{1,2}(\.\d+)?:\d{1,4}(\s*,\s*\d{1,2}(\.\d+)?-\d{1,2}(\.\d+)?:\d{1,4})*\s*$",
        description="START-END:REVIEWERS,... hours UTC",
    )
    team_handling_minutes: float = Field(default=4.0, gt=0, le=600, description="median per case")
