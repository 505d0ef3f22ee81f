"""Fresh scoring: online features, the model under its deadline, the capacity band, the policy
and the explanation, up to the response body. Writes nothing; the caller holds the order lock."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np

from features.online import FeatureRow, OnlineFeatures, prepare
from serving.core.metrics import m
from serving.core.settings import Settings
from serving.scoring import explain
from serving.scoring.capacity import CapacityConfig, CapacityGovernor
from serving.scoring.facts import thresholds_doc
from serving.scoring.holder import Loaded, ModelHolder
from serving.scoring.policy import PolicyConfig, decide
from training import drift
from training.model import RiskModel, Thresholds

DRIFT_WINDOW = 5_000  # recent payments the score drift looks at
DRIFT_EVERY = 500  # recompute it every this many payments
NAN_CAUSE = "nan"  # the model answered, with NaN: a fallback cause of its own
MODEL_SLOTS = 2  # model calls running at once (late ones included); more: the fallback decides


CAUSE_TEXT = {"busy": "busy: every model slot is held by calls past their deadline"}


class ModelBusyError(Exception):
    """Every model slot is still running a call that missed its deadline."""


def inline_model(model: RiskModel, X: np.ndarray) -> bool:
    """A compiled predictor on a small input is called inline: its time is bounded by the
    trees' depth (tens of us, no allocation, no lock), so the hop to a pool thread (0.3-0.5 ms
    of handoff on this machine, the profile's largest item) would only add latency."""
    compiled = getattr(model, "compiled", None)
    return compiled is not None and len(X) <= COMPILED_INLINE_ROWS


COMPILED_INLINE_ROWS = 64

STATUS_OF = {"approve": "settled", "review": "held_for_review", "decline": "declined"}


class Tally:
    """A batch's metrics, counted as its payments are decided and added once at its end (the
    same totals as one increment per payment, without a labelled lookup and a lock each)."""

    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self.adjusted = 0
        self.review_threshold: float | None = None  # the last band set

    def flush(self) -> None:
        metrics = m()
        for (decision, source), n in self.decisions.items():
            metrics.decisions.labels(decision=decision, source=source).inc(n)
        for cause, n in self.fallbacks.items():
            metrics.fallbacks.labels(cause=cause).inc(n)
        if self.adjusted:
            metrics.capacity_adjusted.inc(self.adjusted)
        if self.review_threshold is not None:
            metrics.review_threshold.set(self.review_threshold)


def model_contrib(loaded: Loaded, X: np.ndarray) -> list[float]:
    """SHAP values of one row (without the bias term)."""
    assert loaded.model is not None
    return [float(v) for v in loaded.model.contributions(X)[0, :-1]]


class FreshScorer:
    """Decides payments not seen before. The bodies carry `_features` and `_factors` for the
    durable write (which pops them)."""

    def __init__(
        self,
        holder: ModelHolder,
        policy: Callable[[], PolicyConfig],
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.holder = holder
        self.policy = policy
        # (id, policy) of a shadow policy: decided beside the live one, stored, never acted on
        self.shadow: Callable[[], tuple[str, PolicyConfig] | None] = lambda: None
        self.settings = settings
        self.clock = clock
        self._recent: deque[float] = deque(maxlen=DRIFT_WINDOW)
        self._since_drift = 0
        self._pool = ThreadPoolExecutor(max_workers=MODEL_SLOTS, thread_name_prefix="model")
        self._slots = threading.BoundedSemaphore(MODEL_SLOTS)  # model calls running at most
        shed_budget = settings.capacity_max_shed_loss_per_day
        self.governor = CapacityGovernor(
            CapacityConfig(
                enabled=settings.capacity_enabled,
                # each worker process sees about 1/workers of the payments
                reviews_per_hour=settings.capacity_reviews_per_hour / settings.workers,
                max_review_threshold=settings.capacity_max_review_probability,
                max_shed_loss_per_day=(
                    None if shed_budget is None else shed_budget / settings.workers
                ),
            )
        )
        # reviews an hour the team on shift at t (seconds) can take (RISKGATE_CAPACITY_PLAN=team:
        # the simulator's plan, set by the runtime); None: the fixed capacity_reviews_per_hour
        self.capacity_at: Callable[[float], float] | None = None
        self._last_doc: tuple[Thresholds | None, dict[str, Any] | None] = (None, None)

    # -- the model call, under its deadline ---------------------------------------------------
    def _call_model(self, model: RiskModel, X: np.ndarray, timeout: float) -> np.ndarray:
        """predict_proba within `timeout` seconds. A call starts only on a free model slot
        (MODEL_SLOTS, one thread each), so it never waits in a queue behind late calls: a call
        that misses its deadline keeps its slot until it returns, and while every slot is held
        the fallback decides at once (ModelBusyError). No budget left: the deadline already passed
        while the payment waited for its turn. RISKGATE_MODEL_DEADLINE_MS=0 (documented: no
        deadline, benchmarks' what-if) calls the model inline and never falls back for time."""
        if self.settings.model_deadline_ms == 0 or inline_model(model, X):
            return model.predict_proba(X)
        if timeout <= 0:
            raise FutureTimeout
        if not self._slots.acquire(blocking=False):
            raise ModelBusyError
        try:
            future = self._pool.submit(self._run_model, model, X)
        except BaseException:
            self._slots.release()
            raise
        return future.result(timeout=timeout)

    def _run_model(self, model: RiskModel, X: np.ndarray) -> np.ndarray:
        try:
            return model.predict_proba(X)
        finally:
            self._slots.release()

    def _budget(self, started: float, scale: float = 1.0) -> float:
        """Seconds left of the model deadline for a payment that arrived at `started`
        (perf_counter): the deadline bounds the answer, not just the model call."""
        deadline = self.settings.model_deadline_ms / 1000.0 * scale
        return deadline - (time.perf_counter() - started)

    def _predict(
        self, model: RiskModel, X: np.ndarray, started: float
    ) -> tuple[float | None, str | None]:
        try:
            p = float(self._call_model(model, X, self._budget(started))[0])
        except FutureTimeout:
            return None, "deadline"
        except ModelBusyError:
            return None, "busy"
        except Exception:  # a broken model must not stop payments: the fallback decides
            return None, "error"
        if not np.isfinite(p):
            return None, NAN_CAUSE
        return p, None

    def _predict_many(
        self, model: RiskModel, X: np.ndarray, started: float
    ) -> tuple[list[float | None], list[str | None]]:
        """(probabilities, causes): each payment's probability, or None with its fallback
        cause (the whole batch for a deadline or an error, row by row for NaN output)."""
        try:
            p = self._call_model(model, X, self._budget(started, max(1.0, len(X) / 100)))
        except FutureTimeout:
            return [None] * len(X), ["deadline"] * len(X)
        except ModelBusyError:
            return [None] * len(X), ["busy"] * len(X)
        except Exception:  # the fallback decides the whole batch
            return [None] * len(X), ["error"] * len(X)
        # Python floats first: math.isfinite on them is ~20x np.isfinite on numpy scalars
        probs = [v if math.isfinite(v) else None for v in np.asarray(p, np.float64).tolist()]
        return probs, [None if v is not None else NAN_CAUSE for v in probs]

    def probe(self, loaded: Loaded) -> bool:
        """A prediction on an all-zero row, under the model deadline, is finite: the model
        answers (for readiness; a model that returns NaN for everything is not ready)."""
        if loaded.model is None:
            return False
        X = np.zeros((1, len(loaded.model.features)), dtype=np.float64)
        return self._predict(loaded.model, X, time.perf_counter())[0] is not None

    # -- one payment ----------------------------------------------------------------------------
    def one(
        self, record: dict[str, Any], started: float
    ) -> tuple[dict[str, Any], dict[str, Any], OnlineFeatures]:
        """(body, prepared payment, online executor): the caller updates the online state with
        the prepared payment once the decision is written."""
        loaded = self.holder.current
        prepared = prepare(record)
        t_feat = time.perf_counter()
        values = loaded.online.compute(prepared)
        m().stage_of["features"].observe(time.perf_counter() - t_feat)
        model = loaded.model
        probability: float | None = None
        cause: str | None = "no_model"
        X = np.ascontiguousarray(values.reshape(1, -1), dtype=np.float64)
        if model is not None:
            t_model = time.perf_counter()
            probability, cause = self._predict(model, X, started)
            m().stage_of["model"].observe(time.perf_counter() - t_model)
        body = self.finish(
            record, loaded, values, probability, cause, lambda: model_contrib(loaded, X), started
        )
        return body, prepared, loaded.online

    # -- many payments: features in order, one model call ---------------------------------------
    def many(
        self, loaded: Loaded, records: Sequence[dict[str, Any]], started: float
    ) -> list[dict[str, Any]]:
        """Features in order (each payment sees the ones before it: the online state is
        updated as it goes, so run this inside the store's `deferred_commits`), then one model
        call for all of them."""
        rows = []
        for record in records:
            prepared = prepare(record)
            rows.append(loaded.online.compute(prepared))
            loaded.online.update(prepared)  # later payments of the group must see this one
        X = np.ascontiguousarray(np.vstack(rows), dtype=np.float64)
        probs: list[float | None] = [None] * len(records)
        causes: list[str | None] = ["no_model"] * len(records)
        if loaded.model is not None:
            probs, causes = self._predict_many(loaded.model, X, started)
        tally = Tally()
        try:
            return [
                self.finish(
                    record,
                    loaded,
                    X[j],
                    probs[j],
                    causes[j],
                    functools.partial(model_contrib, loaded, X[j : j + 1]),
                    started,
                    tally,
                )
                for j, record in enumerate(records)
            ]
        finally:
            tally.flush()

    def finish(
        self,
        record: dict[str, Any],
        loaded: Loaded,
        values: np.ndarray,
        probability: float | None,
        cause: str | None,
        contributions: Callable[[], list[float]],
        started: float,
        tally: Tally | None = None,
    ) -> dict[str, Any]:
        """Capacity band, policy, explanation and the response body for one scored payment.
        `tally`: count the metrics there (a batch adds them once), else here."""
        names = loaded.online.names
        features = FeatureRow(loaded.online.name_tuple, values)  # by name only when asked
        model = loaded.model
        if model is not None and probability is not None:
            self._watch_drift(model, probability)
        config = self.policy()
        thresholds = model.thresholds if model else None
        adjusted = False
        review_score = model_review = 0.0
        if thresholds is not None and probability is not None:
            now_s = self.clock().timestamp()
            ceiling = (
                self.settings.capacity_max_review_saving
                if thresholds.review_by == "saving"
                else self.settings.capacity_max_review_probability
            )
            if self.capacity_at is not None:
                per_worker = max(float(self.capacity_at(now_s)) / self.settings.workers, 1e-9)
                if per_worker != self.governor.config.reviews_per_hour:
                    self.governor.config = replace(
                        self.governor.config, reviews_per_hour=per_worker
                    )
            model_review = thresholds.review
            review_score = float(thresholds.review_score(probability, float(record["amount"])))
            band = self.governor.band(now_s, thresholds.review, thresholds.decline, ceiling)
            self.governor.observe(now_s, review_score)
            adjusted = band.adjusted
            if adjusted:
                thresholds = replace(thresholds, review=band.review)
            if tally is None:
                if adjusted:
                    m().capacity_adjusted.inc()
                m().review_threshold.set(band.review)
            else:
                tally.adjusted += adjusted
                tally.review_threshold = band.review
        outcome = decide(record, features, probability, thresholds, config)
        if adjusted and outcome.decision == "approve" and review_score >= model_review:
            # the raised band let this one through: its expected loss spends today's budget
            self.governor.shed(now_s, float(probability or 0.0) * float(record["amount"]))
        shadow = self.shadow()
        shadow_decision = (
            None
            if shadow is None
            else (shadow[0], decide(record, features, probability, thresholds, shadow[1]).decision)
        )
        if tally is None:
            if outcome.source == "fallback":
                m().fallbacks.labels(cause=cause or "unknown").inc()
            metrics = m()
            key = (outcome.decision, outcome.source)
            child = metrics.decision_of.get(key)
            (child or metrics.decisions.labels(decision=key[0], source=key[1])).inc()
        else:
            if outcome.source == "fallback":
                tally.fallbacks[cause or "unknown"] += 1
            tally.decisions[(outcome.decision, outcome.source)] += 1

        reasons: list[dict[str, Any]] = []
        factors: list[dict[str, Any]] = []
        if model is not None and probability is not None and outcome.decision != "approve":
            t_exp = time.perf_counter()
            contrib = contributions()
            vals = values.tolist()
            factors = explain.all_factors(names, vals, contrib, record)
            reasons = explain.towards_fraud(factors, top=self.settings.explain_top)
            m().stage_of["explain"].observe(time.perf_counter() - t_exp)
        if not reasons and outcome.rules:
            reasons = [
                {"feature": "rule", "value": None, "contribution": 0.0, "text": r}
                for r in outcome.rules
            ]
        if outcome.source == "fallback":
            reasons.append(
                {
                    "feature": "fallback",
                    "value": None,
                    "contribution": 0.0,
                    "text": f"model unavailable ({CAUSE_TEXT.get(cause or '', cause)}): "
                    "fallback rules decided",
                }
            )
        body: dict[str, Any] = {
            "transaction_id": record["transaction_id"],
            "decision": outcome.decision,
            "decision_source": outcome.source,
            "probability": probability,
            "score": None if probability is None else min(99, int(probability * 100)),
            "reasons": reasons,
            "rules": list(outcome.rules),
            "model_version": loaded.version,
            "case_id": None,
            "status": STATUS_OF[outcome.decision],
            "replayed": False,
            "review_threshold": thresholds.review if thresholds else None,
            "review_by": thresholds.review_by if thresholds else None,
            "capacity_adjusted": adjusted,
            "elapsed_ms": 0.0,
            "_features": features,
            "_factors": factors,
            "_thresholds": self._thresholds_doc(thresholds),
            "_shadow": shadow_decision,
        }
        body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return body

    def _thresholds_doc(self, thresholds: Thresholds | None) -> dict[str, Any] | None:
        """The stored form of the thresholds in force: one document for the payments that
        share the thresholds object (the model's own, outside a raised capacity band), which
        the durable write then encodes once. Nobody changes it: it is only stored."""
        last, doc = self._last_doc
        if thresholds is None or thresholds is not last:
            doc = thresholds_doc(thresholds)
            self._last_doc = (thresholds, doc)
        return doc

    def _watch_drift(self, model: RiskModel, probability: float) -> None:
        """Score PSI over the recent payments against the training profile, every DRIFT_EVERY."""
        self._recent.append(probability)
        self._since_drift += 1
        if self._since_drift < DRIFT_EVERY or model.profile is None:
            return
        self._since_drift = 0
        if drift.SCORE in model.profile:
            value = drift.psi(model.profile[drift.SCORE], np.fromiter(self._recent, np.float64))
            m().score_psi.set(value)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
