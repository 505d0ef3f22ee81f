"""LightGBM on a Dask cluster (`riskgate train --dask`): the same model as `training.fit`, fitted
data-parallel across workers, returned as an ordinary local `lightgbm.Booster`.

Nothing here runs at import time and dask / distributed are imported inside the functions, so
importing this module costs nothing and works without the `dask` extra installed.

Why anything that starts processes must sit behind `if __name__ == "__main__":` (or in a
function the CLI calls): `LocalCluster(processes=True)` starts its workers with the
`multiprocessing` "spawn" method, and a spawned process re-imports the parent's `__main__`
module (as `__mp_main__`, so only its `__main__` block is skipped). Module-level code that
starts a cluster (or trains) would run again in every worker, each trying to start a cluster of
its own, which multiprocessing refuses with a "bootstrapping phase" RuntimeError. The
`riskgate` entry point (`serving.cli`) only does work under its `__main__` guard or in
`main()`, and this module only inside `fit_booster_dask`.

Early stopping: LightGBM's Dask interface (4.7) accepts `eval_set` but does not support early
stopping (lightgbm issues #3712, #4189, #6351): each worker would evaluate only its own slice
of the validation data, decide to stop on its own, and leave the others blocked in a collective
(hang or "socket error 104"). So the Dask fit always grows `n_estimators` trees, without an
eval set, and the early-stopping rule of `training.fit` is then applied exactly on the client:
validation average precision after every round (from the booster's per-tree leaf outputs, all
validation rows at once), the best round so far, stop once `early_stopping_rounds` rounds have
passed without improvement (checked against `lgb.early_stopping`: the same round on the same
curve). The booster is cut to that round and `best_iteration` set, as `lgb.train` returns it.
The cost is the rounds after the stop, which the cluster grows for nothing.

The result is close to, not identical with, the single-machine booster: in data-parallel mode
each worker draws its own bagging sample from its own rows, and the histogram bin edges of a
feature come from the rows of the worker that owns that feature. Rows are shuffled (with the
seed) before they are split across workers, so every worker sees all periods; part i is pinned
to the i-th worker and LightGBM's machine ranks are made to follow the same order (see
`_ranks_in_worker_order`), so the same data, seed and number of workers give the same model.

Network: the Dask scheduler, its HTTP endpoint (health, metrics; no dashboard), the nannies and
the workers of a cluster started here listen on 127.0.0.1 only, on free ports. LightGBM's own
collective sockets (one per worker, for the duration of a fit) are bound by its C++ network code
to 0.0.0.0 on a free port; that is not configurable from Python.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from training.config import LightGBMParams

if TYPE_CHECKING:
    from distributed import Client

LOCALHOST = "127.0.0.1"
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler, and for it to have a worker
_TREE_BLOCK = 50  # trees whose validation leaf indices are held at once
# lines of a model's parameter block that only describe the cluster of one fit
_NETWORK_PARAMS = ("[machines: ", "[local_listen_port: ", "[num_machines: ", "[time_out: ")


@dataclass(frozen=True)
class DaskSettings:
    """Where the fit runs: a local cluster of `n_workers` processes, or an existing scheduler."""

    n_workers: int = 2
    scheduler: str | None = None  # e.g. tcp://127.0.0.1:8786; then n_workers is not used

    def __post_init__(self) -> None:
        if self.n_workers < 1:
            raise ValueError(f"the Dask worker count must be at least 1, got {self.n_workers}")


def dask_params(params: LightGBMParams, seed: int) -> dict[str, Any]:
    """`training.fit`'s LightGBM parameters for `DaskLGBMClassifier` (scikit-learn names).

    `n_jobs` is left out: LightGBM's Dask interface sets each worker's thread count from the
    worker's own thread count (1 on the local cluster started here). No metric is set: the
    cluster evaluates nothing, validation is scored on the client (see the module docstring).
    """
    p = asdict(params)
    return {
        "objective": "binary",
        "n_estimators": p["n_estimators"],
        "learning_rate": p["learning_rate"],
        "num_leaves": p["num_leaves"],
        "max_depth": p["max_depth"],
        "min_child_samples": p["min_child_samples"],
        "subsample": p["subsample"],
        "subsample_freq": p["subsample_freq"],
        "colsample_bytree": p["colsample_bytree"],
        "reg_lambda": p["reg_lambda"],
        "scale_pos_weight": p["scale_pos_weight"],
        "random_state": seed,
        "deterministic": True,
        "force_row_wise": True,
        "tree_learner": "data",
        "verbosity": -1,
    }


@contextmanager
def dask_client(
    client: Client | None = None, n_workers: int = 2, scheduler: str | None = None
) -> Iterator[Client]:
    """The given client; else a connection to `scheduler`; else a local cluster of processes.

    A local cluster is bound to 127.0.0.1 without a dashboard, one thread per worker, and is shut
    down (workers and scheduler) on the way out, also after an error. Only call this from a
    function (see the module docstring).
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            remote = Client(scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with remote:
            yield remote
        return
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host=LOCALHOST,
        dashboard_address=None,  # no dashboard ...
        # ... and the scheduler's remaining HTTP endpoint (health, metrics) on a free local port,
        # not on the dashboard's 8787 (which another cluster may hold)
        scheduler_kwargs={"dashboard_address": f"{LOCALHOST}:0"},
        scheduler_port=0,
        silence_logs=logging.WARNING,
    )
    try:
        with Client(cluster, set_as_default=False) as local:
            local.run(_silence_stdout)
            yield local
    finally:
        cluster.close()


def _silence_stdout() -> None:
    """On a worker started here: its stdout to /dev/null, so the CLI's stdout stays the report.

    LightGBM's C++ code prints its network log (ports, ranks) there from the training thread;
    `lgb.register_logger` cannot catch it (the C++ log callback is thread-local). Errors still
    reach the client as exceptions.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _spread(
    client: Client, X: np.ndarray, y: np.ndarray, workers: list[str], seed: int
) -> tuple[Any, Any]:
    """Shuffled rows in one part per worker, each part pinned there: (dask X, dask y).

    A worker without rows would fail the fit: never more workers than rows. Scattered with
    fresh keys (`hash=False`): hashed keys are the same for the same rows, so a second fit of
    the same data could reuse a key the scheduler is still releasing from the first and wait
    for it forever (dask/distributed#8576, #3703; seen once in CI as a 600 s hang).
    """
    import dask.array as da

    workers = workers[: max(1, min(len(workers), len(y)))]
    order = np.random.default_rng(seed).permutation(len(y))
    bounds = np.linspace(0, len(y), len(workers) + 1).astype(int)
    xs, ys = [], []
    for w, lo, hi in zip(workers, bounds[:-1], bounds[1:], strict=True):
        rows = np.sort(order[lo:hi])
        fx = client.scatter(np.ascontiguousarray(X[rows]), workers=[w], hash=False)
        fy = client.scatter(np.ascontiguousarray(y[rows]), workers=[w], hash=False)
        xs.append(da.from_delayed(fx, shape=(hi - lo, X.shape[1]), dtype=X.dtype))
        ys.append(da.from_delayed(fy, shape=(hi - lo,), dtype=y.dtype))
    return da.concatenate(xs, axis=0), da.concatenate(ys, axis=0)


def _local_model(model_str: str) -> str:
    """The model text without the cluster's network settings (ports of a finished fit)."""
    return "\n".join(line for line in model_str.split("\n") if not line.startswith(_NETWORK_PARAMS))


@contextmanager
def _ranks_in_worker_order(client: Client) -> Iterator[None]:
    """Make LightGBM's machine ranks follow the sorted worker addresses during a fit.

    `lightgbm.dask` numbers the machines in the order `client.who_has` lists the data parts, and
    `Client.who_has` builds that order from a Python set of task keys: it changes from one fit to
    the next. The rank decides which worker's rows set the histogram bins of which features, so
    the model changed with it. Listed by worker address, rank i is the i-th worker in sorted
    order, which `_spread` gave part i: the same model for the same data, seed and cluster size.
    Only this client object is touched, and only until the fit returns.
    """
    original = client.who_has

    def who_has(futures: Any = None, **kwargs: Any) -> Any:
        found = original(futures, **kwargs)
        return type(found)(sorted(found.items(), key=lambda item: (sorted(item[1]), item[0])))

    client.who_has = who_has  # type: ignore[method-assign]
    try:
        yield
    finally:
        del client.who_has


def _average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision with tied scores counted together (scikit-learn's definition)."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of equal scores
    tp = np.cumsum(t)[last]
    positives = tp[-1]
    if positives == 0:
        return 0.0
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / positives
    return float(np.sum(recall_gain * precision))


def best_round(
    booster: lgb.Booster,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    stopping_rounds: int,
    progress: Callable[[int, float], None] | None = None,
    floor: int = 1,
) -> tuple[int, float]:
    """`training.fit`'s early stopping replayed on the client: (best round, 1-based; its
    validation AP). As there, the best round is taken at or after `floor` trees.

    The raw score after round i is the sum of the first i trees' leaf outputs (the first tree
    holds the initial score), so one `pred_leaf` pass gives the whole validation curve.
    """
    n_trees = booster.num_trees()
    y = np.asarray(y_valid, dtype=np.float64)
    raw = np.zeros(len(X_valid), dtype=np.float64)
    best_i, best_ap, best_any = 0, -math.inf, -math.inf
    floor = max(1, min(floor, n_trees))
    for start in range(0, n_trees, _TREE_BLOCK):  # blocks: leaf indices of every tree at once
        count = min(_TREE_BLOCK, n_trees - start)
        leaves = np.asarray(
            booster.predict(
                X_valid, pred_leaf=True, start_iteration=start, num_iteration=count, num_threads=1
            )
        ).reshape(len(X_valid), count)
        for j in range(count):
            i = start + j
            col = leaves[:, j]
            out = np.array([booster.get_leaf_output(i, leaf) for leaf in range(int(col.max()) + 1)])
            raw += out[col]
            ap = _average_precision(y, raw)
            best_any = max(best_any, ap)
            if progress is not None:
                progress(i + 1, best_any)
            if (i + 1 >= floor or i + 1 == n_trees) and ap > best_ap:
                best_i, best_ap = i, ap
            elif i - best_i >= stopping_rounds and i + 1 >= floor:
                return best_i + 1, best_ap
    return best_i + 1, best_ap


def fit_booster_dask(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    params: LightGBMParams,
    seed: int,
    client: Client | None = None,
    n_workers: int = 2,
    *,
    scheduler: str | None = None,
    progress: Callable[[int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> lgb.Booster:
    """`training.fit.fit_booster` on Dask: a local Booster with `best_iteration` set.

    Uses `client` if given, else connects to `scheduler`, else starts (and afterwards shuts
    down) a local cluster of `n_workers` single-threaded processes on 127.0.0.1. The data is
    sent to the workers from these numpy arrays; validation is scored here, not on the cluster.
    """
    from lightgbm import DaskLGBMClassifier

    tell = say or (lambda _msg: None)
    started = client is None and scheduler is None
    if started:
        tell(f"starting a local Dask cluster: {n_workers} worker processes on {LOCALHOST}")
    with dask_client(client, n_workers, scheduler) as c:
        info = c.scheduler_info(n_workers=-1)
        if not info["workers"]:
            try:
                c.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except TimeoutError:
                raise ValueError(f"the Dask cluster at {info['address']} has no workers") from None
            info = c.scheduler_info(n_workers=-1)
        workers = sorted(info["workers"])
        where = f"local cluster on {LOCALHOST}" if started else f"scheduler {info['address']}"
        tell(
            f"lightgbm on Dask ({where}): {len(workers)} worker{'s' * (len(workers) != 1)}, "
            f"{params.n_estimators} rounds (early stopping replayed on validation afterwards)"
        )
        X, y = _spread(c, X_train, np.asarray(y_train, dtype=np.float64), workers, seed)
        model = DaskLGBMClassifier(client=c, **dask_params(params, seed))
        with (
            c.as_current(),
            _ranks_in_worker_order(c),
            warnings.catch_warnings(),
            redirect_stdout(sys.stderr),  # lightgbm.dask prints its progress
        ):
            # as_current: lightgbm.dask waits on the current client. n_jobs: DaskLGBMClassifier
            # always carries n_jobs=None, which lightgbm.dask then drops with a warning.
            warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored", UserWarning)
            model.fit(X, y, feature_name=list(names))
        local = model.to_local()
    best, ap = best_round(
        local.booster_, X_valid, y_valid, params.early_stopping_rounds, progress, params.min_trees
    )
    # Kept to the best round, like the booster `lgb.train` returns after early stopping.
    booster = lgb.Booster(
        model_str=_local_model(local.booster_.model_to_string(num_iteration=best))
    )
    booster.best_iteration = best
    tell(f"lightgbm on Dask: best round {best} of {params.n_estimators} (validation AP {ap:.3f})")
    return booster
