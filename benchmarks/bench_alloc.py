"""What the online path allocates per payment (tracemalloc), by stage, and what stays.

    .venv/bin/python benchmarks/bench_alloc.py [-n 2000] [--traced 200] [--json OUT]

The scorer is built in process with warm state as benchmarks/serving_inprocess.py builds it
(simulated payments, the cached model of bench_serving, an SQLite state holding the look-back
before the stream), warmed up, and then `Scorer.score` runs payment by payment, the request
already validated (pydantic's `PaymentIn.model_validate` belongs to the HTTP layer, not here):

1. Plain pass, N payments, tracemalloc on: per stage the high-water of traced memory above the
   stage's start (`peak`) and, around the pass, a `compare_to` of two snapshots after a
   garbage collection: what stays per payment, by allocation site (`retained`).
2. Traced pass (`--traced` payments): a line tracer reads `tracemalloc.get_traced_memory()` at
   every Python line and charges each increase to the line that made it and to the innermost
   stage (`alloc` B/payment, exclusive of the stages nested in it). An object created and freed
   within one line is not seen (an int temporary, a slice consumed on the spot): the figure is
   a lower bound of the gross allocation, a good measure of what a line keeps for a while (a
   list, a dict, an array). Every `--snap-every`-th payment of this pass also takes a snapshot
   at the start and the end of each stage: the blocks and bytes allocated in the stage and
   alive at its end (`out`: what it hands on, e.g. the feature vector, the response body).
   Garbage collection is off during both passes (a collection would free memory mid-stage).

Figures are per payment. Not a test; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from common import (
    BACKEND_KEY,
    KEY_SPEC,
    MODEL_CACHE,
    ROOT,
    copy_state,
    get_model,
    make_frame,
    payment_dicts,
    say,
    warm_state,
)

_gtm = tracemalloc.get_traced_memory
_sizeof = sys.getsizeof
ROOT_STAGE = "score: other (contract, model_dump, lock, metrics)"


@dataclass
class _Open:
    index: int  # stage index
    start: int  # traced bytes at entry
    peak: int  # high-water so far (bytes)
    snap: tracemalloc.Snapshot | None = None


@dataclass
class Meter:
    """Stage wrappers + line tracer: the figures per stage (index = position in `labels`)."""

    labels: list[str]
    tracing: bool = False  # the line tracer is on
    snapping: bool = False  # this payment takes snapshots at stage boundaries
    stack: list[_Open] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    peak: list[int] = field(default_factory=list)  # sum over calls of (peak - start)
    gross: list[int] = field(default_factory=list)  # line-traced increases, exclusive
    out_bytes: list[int] = field(default_factory=list)
    out_blocks: list[int] = field(default_factory=list)
    out_calls: list[int] = field(default_factory=list)
    out_sites: list[dict[str, list[int]]] = field(default_factory=list)
    sites: dict[CodeType, dict[int, int]] = field(default_factory=dict)
    _last: int = 0
    _pending: int = 0
    _locals: dict[FrameType, int] = field(default_factory=dict)
    _code: CodeType | None = None
    _line: int = 0
    _bench_file: str = __file__

    def __post_init__(self) -> None:
        self._tracer = self._local  # one bound method, not a new one per traced call
        n = len(self.labels)
        for name in ("calls", "peak", "gross", "out_bytes", "out_blocks", "out_calls"):
            setattr(self, name, [0] * n)
        self.out_sites = [{} for _ in range(n)]

    # -- the line tracer --------------------------------------------------------------------
    # Tracing itself allocates: a frame object per traced call and, before each trace call,
    # the frame's f_locals dict (grown as the frame binds new locals). Those are subtracted
    # (sizes from sys.getsizeof) and their release after a return is added back, so a line is
    # charged what the code allocates, not what tracing it costs.
    def _charge(self, cur: int, extra: int = 0) -> None:
        d = cur - self._last + self._pending - extra
        self._pending = 0
        if d > 0 and self.stack:
            self.gross[self.stack[-1].index] += d
            code = self._code
            if code is not None:
                per = self.sites.get(code)
                if per is None:
                    per = self.sites[code] = {}
                line = self._line
                per[line] = per.get(line, 0) + d

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        cur = _gtm()[0]  # first: what the tracer does next is not the code's
        if frame.f_code.co_filename == self._bench_file:
            return None  # the wrappers account for themselves
        size = _sizeof(frame.f_locals)
        self._charge(cur, _sizeof(frame) + size)  # the call's set-up: the caller's line
        self._locals[frame] = size
        self._code, self._line = frame.f_code, frame.f_lineno
        self._last = _gtm()[0]
        return self._tracer

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        cur = _gtm()[0]
        size = _sizeof(frame.f_locals)
        self._charge(cur, size - self._locals.get(frame, size))
        if event == "return":
            self._locals.pop(frame, None)
            self._pending = _sizeof(frame) + size  # freed once the frame is gone
            back = frame.f_back
            if back is not None and back.f_code.co_filename != self._bench_file:
                self._code, self._line = back.f_code, back.f_lineno
            else:
                self._code = None
        else:
            self._locals[frame] = size
            self._code, self._line = frame.f_code, frame.f_lineno
        self._last = _gtm()[0]
        return self._tracer

    # -- the stages ---------------------------------------------------------------------------
    def enter(self, index: int) -> None:
        if self.tracing:
            self._charge(_gtm()[0])
            sys.settrace(None)  # the bookkeeping (snapshots) is not traced
        peak = _gtm()[1]
        for o in self.stack:
            o.peak = max(o.peak, peak)
        o = _Open(index, 0, 0, _snapshot() if self.snapping else None)
        self.stack.append(o)
        o.start = o.peak = _gtm()[0]  # after the bookkeeping's own allocations
        tracemalloc.reset_peak()
        self._last = _gtm()[0]
        if self.tracing:
            sys.settrace(self._global)

    def exit(self) -> None:
        if self.tracing:
            self._charge(_gtm()[0])
            sys.settrace(None)
        peak = _gtm()[1]
        o = self.stack.pop()
        o.peak = max(o.peak, peak)
        if self.stack:
            self.stack[-1].peak = max(self.stack[-1].peak, o.peak)
        self.calls[o.index] += 1
        self.peak[o.index] += o.peak - o.start
        if o.snap is not None:
            after = _snapshot()
            diff = after.compare_to(o.snap, "lineno")
            sites = self.out_sites[o.index]
            self.out_calls[o.index] += 1
            for st in diff:
                if st.size_diff > 0 or st.count_diff > 0:
                    self.out_bytes[o.index] += st.size_diff
                    self.out_blocks[o.index] += st.count_diff
                    frame = st.traceback[0]
                    acc = sites.setdefault(f"{_short(frame.filename)}:{frame.lineno}", [0, 0])
                    acc[0] += st.size_diff
                    acc[1] += st.count_diff
        tracemalloc.reset_peak()
        self._last = _gtm()[0]
        if self.tracing:
            sys.settrace(self._global)

    def wrap(self, index: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any, **kwargs: Any) -> Any:
            self.enter(index)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()

        return measured

    def lines_on(self) -> None:
        self.tracing = True
        self._code = None
        sys.settrace(self._global)

    def lines_off(self) -> None:
        sys.settrace(None)
        self.tracing = False


_NOT_MEASURED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, __file__),
)


def _snapshot() -> tracemalloc.Snapshot:
    """A snapshot without this benchmark's own objects (its tables, earlier snapshots)."""
    return tracemalloc.take_snapshot().filter_traces(_NOT_MEASURED)


_CALIBRATION = compile(
    "def _leaf(c):\n"
    "    return c\n"
    "def _mid(c):\n"
    "    return _leaf(c)\n"
    "def run(out, fns, p):\n"
    "    for i, fn in fns:\n"
    "        out[i] = fn(p)\n",
    "<bench_alloc calibration>",
    "exec",
)


def tracer_floor(calls: int = 64) -> float:
    """Bytes the line tracer charges per traced Python call on a call chain that allocates
    nothing (the part of tracing's own frame and f_locals churn it does not subtract)."""
    space: dict[str, Any] = {}
    exec(_CALIBRATION, space)
    fns = [(i % 8, space["_mid"]) for i in range(calls)]
    out = [None] * 8
    meter = Meter(["calibration"])
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start(1)
    try:
        for rep in range(6):
            meter.enter(0)
            meter.lines_on()
            space["run"](out, fns, "p")
            meter.lines_off()
            meter.exit()
            if rep == 0:
                meter.gross = [0]
    finally:
        if not was:
            tracemalloc.stop()
    return meter.gross[0] / 5 / (2 * calls)


def _short(path: str) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        parts = p.parts
        if "site-packages" in parts:
            return "/".join(parts[parts.index("site-packages") + 1 :])
        return "/".join(parts[-2:])


@contextlib.contextmanager
def stages(rt: Any, meter: Meter) -> Iterator[None]:
    """Wrap the scorer's stages (instance / module attributes, restored after)."""
    import serving.scoring.fresh as fresh_mod
    import serving.scoring.scorer as scorer_mod

    scorer = rt.scorer
    loaded = rt.holder.current
    compiled = getattr(loaded.model, "compiled", None)
    targets: list[tuple[str, Any, str]] = [
        ("request hash (body_hash)", scorer_mod, "body_hash"),
        ("replay check", scorer.replays, "replay"),
        ("decide: other (fresh.one)", scorer.fresh, "one"),
        ("prepare", fresh_mod, "prepare"),
        ("features: online compute", loaded.online, "compute"),
        ("model: other (_predict, calibration)", scorer.fresh, "_predict"),
        ("model: compiled margin", compiled, "margin"),
        ("policy+body (finish)", scorer.fresh, "finish"),
        ("durable write", scorer.writer, "write"),
        ("state update (SQLite log)", loaded.online, "update"),
    ]
    undo: list[Callable[[], None]] = []
    for label, obj, name in targets:
        orig = getattr(obj, name, None) if obj is not None else None
        if orig is None:
            say(f"(stage {label!r}: {name} not found, not measured)")
            continue
        had = name in getattr(obj, "__dict__", {})
        setattr(obj, name, meter.wrap(meter.labels.index(label), orig))
        undo.append(
            lambda obj=obj, name=name, orig=orig, had=had: (
                setattr(obj, name, orig) if had else delattr(obj, name)
            )
        )
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


LABELS = [
    ROOT_STAGE,
    "request hash (body_hash)",
    "replay check",
    "decide: other (fresh.one)",
    "prepare",
    "features: online compute",
    "model: other (_predict, calibration)",
    "model: compiled margin",
    "policy+body (finish)",
    "durable write",
    "state update (SQLite log)",
]


def run(
    *,
    n: int = 2_000,
    traced: int = 200,
    warmup: int = 300,
    snap_every: int = 10,
    rows: int = 200_000,
    days: int = 90,
    seed: int = 7,
    model_dir: Path | None = None,
    top: int = 15,
    focus: tuple[str, ...] = ("features/", "training/compiled.py"),
) -> dict[str, Any]:
    from serving.core.auth import KeyRing
    from serving.core.schemas import PaymentIn
    from serving.core.settings import Settings
    from serving.http.runtime import build

    work = Path(tempfile.mkdtemp(prefix="riskgate-alloc-"))
    try:
        say(f"simulating {rows:,} payments over {days} days ...")
        frame = make_frame(rows, days, seed)
        mdir, how = get_model(frame, model_dir or MODEL_CACHE, {"rows": rows, "days": days,
                              "seed": seed})  # fmt: skip
        need = warmup + n + traced
        cut = len(frame) - need
        say(f"warming the online state with the payments before row {cut:,} ...")
        warm = warm_state(frame, cut, work / "warm" / "state.db")
        stream = payment_dicts(frame.iloc[cut:])
        del frame
        copy_state(work / "warm" / "state.db", work / "run" / "state.db")
        settings = Settings(
            api_keys=KEY_SPEC,
            db_url=f"sqlite:///{work / 'run' / 'riskgate.db'}",
            state_path=str(work / "run" / "state.db"),
            model_dir=str(mdir),
        )
        rt = build(settings, KeyRing.parse(KEY_SPEC))
        try:
            who = rt.keys.authenticate(f"Bearer {BACKEND_KEY}")
            models = [PaymentIn.model_validate(p) for p in stream[:need]]
            say(f"warm-up: {warmup} payments ...")
            for pm in models[:warmup]:
                rt.scorer.score(pm, who, pm.transaction_id)
            meter = Meter(list(LABELS))
            plain = models[warmup : warmup + n]
            lined = models[warmup + n :]

            say(f"plain pass: {n:,} payments under tracemalloc ...")
            gc.collect()
            gc.disable()
            tracemalloc.start(1)
            t = time.perf_counter()
            try:
                gc.collect()
                base = _snapshot()
                with stages(rt, meter):
                    for pm in plain:
                        meter.enter(0)
                        try:
                            rt.scorer.score(pm, who, pm.transaction_id)
                        finally:
                            meter.exit()
                gc.collect()
                after = _snapshot()
                plain_s = time.perf_counter() - t
                retained = after.compare_to(base, "lineno")
                peaks = list(meter.peak)
                peak_calls = list(meter.calls)

                say(f"traced pass: {traced:,} payments, line tracer on ...")
                meter.peak = [0] * len(LABELS)
                meter.calls = [0] * len(LABELS)
                del base, after
                tracemalloc.stop()  # a fresh trace table: the stage snapshots stay small
                tracemalloc.start(1)
                with stages(rt, meter):
                    for j, pm in enumerate(lined):
                        meter.snapping = snap_every > 0 and j % snap_every == 1
                        meter.enter(0)
                        meter.lines_on()
                        try:
                            rt.scorer.score(pm, who, pm.transaction_id)
                        finally:
                            meter.lines_off()
                            meter.exit()
                        meter.snapping = False
                        if j == 0:  # the first traced payment fills the tracer's own tables
                            meter.gross = [0] * len(LABELS)
                            meter.sites = {k: dict.fromkeys(v, 0) for k, v in meter.sites.items()}
            finally:
                tracemalloc.stop()
                gc.enable()
        finally:
            rt.close()
        floor = tracer_floor()
        n_lined = max(len(lined) - 1, 1)
        table = []
        for i, label in enumerate(LABELS):
            oc = meter.out_calls[i] or 1
            table.append(
                {
                    "stage": label,
                    "calls_per_payment": round(peak_calls[i] / n, 3),
                    "alloc_bytes": round(meter.gross[i] / n_lined, 1),
                    "peak_bytes": round(peaks[i] / max(peak_calls[i], 1), 1),
                    "out_bytes": round(meter.out_bytes[i] / oc, 1),
                    "out_blocks": round(meter.out_blocks[i] / oc, 2),
                }
            )
        line_sites = sorted(
            (
                (f"{_short(code.co_filename)}:{line} ({code.co_name})", b / n_lined)
                for code, per in meter.sites.items()
                for line, b in per.items()
                if b > 0
            ),
            key=lambda x: -x[1],
        )
        out_sites = []
        for i, label in enumerate(LABELS):
            oc = meter.out_calls[i] or 1
            for site, (b, c) in meter.out_sites[i].items():
                out_sites.append((label, site, b / oc, c / oc))
        out_sites.sort(key=lambda x: -x[2])
        kept = [
            (
                f"{_short(st.traceback[0].filename)}:{st.traceback[0].lineno}",
                st.size_diff / n,
                st.count_diff / n,
            )
            for st in retained
            if st.size_diff or st.count_diff
        ]
        return {
            "meta": {
                "rows": rows,
                "days": days,
                "seed": seed,
                "model": how,
                "model_dir": str(mdir),
                "warm_state": warm,
                "payments_plain": n,
                "payments_traced": n_lined,
                "snapshot_payments": sum(1 for j in range(len(lined)) if j % snap_every == 1)
                if snap_every > 0
                else 0,
                "plain_pass_s": round(plain_s, 2),
                "python": sys.version.split()[0],
                "tracer_floor_bytes_per_call": round(floor, 1),
            },
            "stages": table,
            "total": {
                "alloc_bytes": round(sum(meter.gross) / n_lined, 1),
                "peak_bytes": round(peaks[0] / max(peak_calls[0], 1), 1),
                "retained_bytes": round(sum(st.size_diff for st in retained) / n, 1),
                "retained_blocks": round(sum(st.count_diff for st in retained) / n, 2),
            },
            "alloc_sites": [{"site": s, "bytes": round(b, 1)} for s, b in line_sites[:top]],
            "focus_sites": [
                {"site": s, "bytes": round(b, 1)}
                for s, b in sorted(line_sites)
                if any(s.startswith(f) for f in focus)
            ],
            "out_sites": [
                {"stage": lab, "site": s, "bytes": round(b, 1), "blocks": round(c, 2)}
                for lab, s, b, c in out_sites[:top]
            ],
            "retained_sites": [
                {"site": s, "bytes": round(b, 1), "blocks": round(c, 3)}
                for s, b, c in sorted(kept, key=lambda x: -abs(x[1]))[:top]
            ],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        f"bench_alloc: {m['payments_plain']:,} payments (peak, retained), "
        f"{m['payments_traced']:,} line-traced (alloc), {m['snapshot_payments']} with "
        f"stage snapshots (out); Python {m['python']}; figures per payment",
        "",
        f"{'stage':<42}{'calls':>6}{'alloc B':>10}{'peak B':>10}{'out B':>9}{'out blk':>9}",
    ]
    for s in r["stages"]:
        lines.append(
            f"{s['stage']:<42}{s['calls_per_payment']:>6.2f}{s['alloc_bytes']:>10,.0f}"
            f"{s['peak_bytes']:>10,.0f}{s['out_bytes']:>9,.0f}{s['out_blocks']:>9.1f}"
        )
    t = r["total"]
    lines += [
        f"{'payment (Scorer.score), all stages':<42}{'':>6}{t['alloc_bytes']:>10,.0f}"
        f"{t['peak_bytes']:>10,.0f}",
        f"retained after the payment (gc.collect, snapshot diff): {t['retained_bytes']:,.0f} B, "
        f"{t['retained_blocks']:.1f} blocks",
        "",
        "alloc: line-traced increases of traced memory, charged to the innermost stage",
        f"  (exclusive); tracer floor {m['tracer_floor_bytes_per_call']:,.0f} B per traced Python "
        "call on a chain that allocates",
        "  nothing: a line that only calls Python functions shows about that per call",
        "peak: high-water above the stage's start (inclusive); out: allocated in the stage and",
        "alive at its end (inclusive of nested stages: what it hands on)",
        "",
        "top allocating lines (line-traced, B/payment):",
    ]
    lines += [f"  {a['bytes']:>9,.0f}  {a['site']}" for a in r["alloc_sites"]]
    if r["focus_sites"]:
        lines += ["", "every allocating line in the focus files (line-traced, B/payment):"]
        lines += [f"  {a['bytes']:>9,.0f}  {a['site']}" for a in r["focus_sites"]]
    lines += ["", "top sites alive at a stage's end (snapshot compare_to 'lineno'):"]
    lines += [
        f"  {a['bytes']:>9,.0f} B {a['blocks']:>6.1f} blk  {a['site']}  [{a['stage']}]"
        for a in r["out_sites"]
    ]
    lines += ["", "top retained sites (after gc; snapshot compare_to 'lineno', per payment):"]
    lines += [
        f"  {a['bytes']:>9,.0f} B {a['blocks']:>7.2f} blk  {a['site']}" for a in r["retained_sites"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--payments", type=int, default=2_000, help="plain pass (default 2000)")
    ap.add_argument("--traced", type=int, default=200, help="line-traced payments (default 200)")
    ap.add_argument("--warmup", type=int, default=300, help="untraced payments first")
    ap.add_argument(
        "--snap-every", type=int, default=10, help="stage snapshots every k-th traced payment"
    )
    ap.add_argument("--top", type=int, default=15, help="sites listed per table")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model-dir", type=Path, default=None, help=f"default {MODEL_CACHE}")
    ap.add_argument(
        "--focus",
        default="features/,training/compiled.py",
        help="comma-separated path prefixes whose every allocating line is listed",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    r = run(
        n=a.payments,
        traced=a.traced + 1,
        warmup=a.warmup,
        snap_every=a.snap_every,
        rows=a.rows,
        days=a.days,
        seed=a.seed,
        model_dir=a.model_dir,
        top=a.top,
        focus=tuple(f for f in a.focus.split(",") if f),
    )
    print(report(r))
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
