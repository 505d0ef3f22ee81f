"""The figures people read: trade-off labels never overlap, calibration readable at 0.5% fraud."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.text import Text

from training import plots
from training.config import BusinessInputs


def _rows(review_rates: list[float]) -> list[dict[str, float]]:
    caps = BusinessInputs().capacities
    return [
        {
            "capacity_share": c,
            "review_rate": r,
            "fraud_amount_caught": 0.5 + 0.08 * i,
            "fraud_caught": 0.3 + 0.1 * i,
        }
        for i, (c, r) in enumerate(zip(caps, review_rates, strict=True))
    ]


def test_tradeoff_labels_do_not_overlap_each_other_or_leave_the_axes():
    for rates in (
        list(BusinessInputs().capacities),  # the usual spread
        [0.0025, 0.0026, 0.0027, 0.02, 0.05],  # crowded: three capacities review alike
    ):
        fig = plots.tradeoff_figure(_rows(rates))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        # the text itself (an Annotation's own extent includes its leader line)
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
        assert len(boxes) == len(rates)
        for i, a in enumerate(boxes):
            assert ax.get_window_extent(renderer).contains(a.x0, a.y0), ax.texts[i].get_text()
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (rates, ax.texts[i].get_text())
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_calibration_at_half_a_percent_fraud_uses_quantile_bins_on_log_axes(tmp_path: Path):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    p = np.clip(rng.beta(0.3, 60, size=20_000), 1e-5, 1)
    y = (rng.random(p.size) < p).astype(int)
    out = plots.calibration(y, p, tmp_path / "calibration.png")
    image = mpimg.imread(out)
    assert image.shape[0] > 400  # a real picture was written
    import matplotlib.pyplot as plt

    assert not plt.get_fignums()  # closed after saving
