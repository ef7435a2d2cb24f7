"""Generate the figures of the documentation into ``docs/_static/``.

Run from the repository root after building the preview package::

    PYTHONPATH=. python tools/make_figures.py

Figures:

* ``cost_volume.png``: one pixel's displacement grid on a real image pair.
  Frame 1 is a crop of the ``grace_hopper.jpg`` sample image that ships inside
  the matplotlib wheel; frame 2 is the same image cropped at an offset, so the
  content moves by a known ``(dy, dx)``. The cost volume is computed with
  ``torch.nn.functional.correlation`` on normalized 5x5 patches (so every
  entry is a normalized cross-correlation in [-1, 1]); the figure shows the
  search window of one pixel in both frames, its 13x13 slice of the volume,
  and where the argmax recovers the motion over the whole frame.
* ``displacement_layout.png``: which output channel holds which displacement,
  for a symmetric window, a strided (FlowNetC-style) window and a one-sided
  (stereo) range.
* ``offset_window.png``: a flow-guided (``offset=``) window on a real stereo
  pair, the Middlebury 2014 motorcycle pair with its ground-truth disparities
  that ships inside the scikit-image wheel (``skimage.data.stereo_motorcycle``,
  read from the installed package, no download). Frame 1 is a crop of the left
  image, frame 2 the same crop of the right one; the offset is the
  ground-truth motion ``(u, v) = (-disparity, 0)``, fractional. The figure
  shows one pixel, its fractional position in frame 2 with the sampled
  window and the four bilinear taps, and the window of
  ``F.correlation(..., offset=...)`` at the ground truth and at an estimate
  off by a known amount. Needs ``pip install scikit-image``; without it this
  figure is skipped (the committed one stays) and the script says so.

The figures are written small (well under 300 KB each) so they can be
committed. If the compiled extension is not importable, a slow pure-PyTorch
shift loop with the same semantics (for the arguments used here) stands in,
and the script says so; the committed figures are made with the real op.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Callable
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.patches import FancyArrowPatch, Rectangle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "docs", "_static")

# The known motion of frame 2 relative to frame 1: content at (y, x) in frame 1
# is at (y + dy, x + dx) in frame 2.
TRUE_MOTION = (2, -3)
MAX_DISPLACEMENT = 6
PATCH = 5


def _shift_loop_correlation(
    input1: torch.Tensor,
    input2: torch.Tensor,
    max_displacement: int,
    *,
    scale: float = 1.0,
) -> torch.Tensor:
    """Stand-in with the op's semantics for kernel_size=1, stride=1, padding=0."""
    m = max_displacement
    _, _, h, w = input1.shape
    padded = F.pad(input2, (m, m, m, m))
    planes = []
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            window = padded[:, :, m + dy : m + dy + h, m + dx : m + dx + w]
            planes.append((input1 * window).sum(1) * scale)
    return torch.stack(planes, 1)


def _correlation_op() -> tuple[Callable[..., torch.Tensor], bool]:
    try:
        import torch_correlation  # noqa: F401  (installs F.correlation)
    except ImportError as exc:
        print(
            f"make_figures: torch_correlation is not importable ({exc}); using the "
            "pure-PyTorch stand-in. Build the extension before committing figures.",
            file=sys.stderr,
        )
        return _shift_loop_correlation, False
    return F.correlation, True


def _load_frames(height: int = 112, width: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Two grayscale crops of one sample image, offset by TRUE_MOTION."""
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        rgb = plt.imread(fh, format="jpg").astype(np.float32) / 255.0
    gray = rgb[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # Box-filter downsampling by 3 keeps the texture that matching needs while
    # making the pixels large enough to see one displacement grid.
    f = 3
    hh, ww = gray.shape[0] // f * f, gray.shape[1] // f * f
    small = gray[:hh, :ww].reshape(hh // f, f, ww // f, f).mean((1, 3))
    y0, x0 = 14, 28
    dy, dx = TRUE_MOTION
    frame1 = small[y0 : y0 + height, x0 : x0 + width]
    frame2 = small[y0 - dy : y0 - dy + height, x0 - dx : x0 - dx + width]
    return frame1, frame2


def _patch_features(frame: np.ndarray) -> torch.Tensor:
    """(1, PATCH*PATCH, H, W) zero-mean, unit-norm patches: dot product = NCC."""
    t = torch.from_numpy(np.ascontiguousarray(frame))[None, None]
    cols = F.unfold(t, PATCH, padding=PATCH // 2)  # (1, P*P, H*W)
    cols = cols - cols.mean(1, keepdim=True)
    cols = cols / cols.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return cols.view(1, PATCH * PATCH, *frame.shape)


def make_cost_volume_figure(path: str) -> None:
    corr, real = _correlation_op()
    frame1, frame2 = _load_frames()
    f1, f2 = _patch_features(frame1), _patch_features(frame2)
    m = MAX_DISPLACEMENT
    k = 2 * m + 1
    cost = corr(
        f1, f2, m
    )  # (1, k*k, H, W); channel a*k + b <-> (dy, dx) = (a - m, b - m)
    assert cost.shape == (1, k * k, *frame1.shape), cost.shape
    best = cost[0].argmax(0)
    best_dy, best_dx = best // k - m, best % k - m

    # Evaluate away from the border, where the true match is inside frame 2.
    inner = (slice(m + PATCH, -m - PATCH), slice(m + PATCH, -m - PATCH))
    hit = (best_dy == TRUE_MOTION[0]) & (best_dx == TRUE_MOTION[1])
    hit_rate = hit[inner].float().mean().item()

    # The pixel to show: the most textured pixel on the glasses whose argmax is right.
    gy, gx = np.gradient(frame1)
    energy = torch.from_numpy(gy**2 + gx**2)
    energy = F.avg_pool2d(energy[None, None], 5, 1, 2)[0, 0]
    region = torch.zeros_like(hit)
    region[44:62, 36:80] = True
    candidates = torch.where(region & hit, energy, torch.full_like(energy, -1.0))
    y, x = divmod(int(candidates.argmax()), frame1.shape[1])
    window = cost[0, :, y, x].view(k, k).numpy()
    wy, wx = divmod(int(window.argmax()), k)
    my, mx = wy - m, wx - m

    fig, axes = plt.subplots(
        1, 4, figsize=(13.0, 3.7), gridspec_kw={"width_ratios": [1, 1, 1, 1.15]}
    )
    zoom = 2 * m
    panels = (
        (axes[0], frame1, "input1 (frame 1)", False),
        (axes[1], frame1, "input1, zoomed: pixel (y, x), its window", True),
        (axes[2], frame2, f"input2: content moved by (dy, dx) = {TRUE_MOTION}", True),
    )
    for ax, frame, title, zoomed in panels:
        ax.imshow(frame, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(
            Rectangle(
                (x - m - 0.5, y - m - 0.5),
                k,
                k,
                fill=False,
                edgecolor="#ffcc00",
                linewidth=1.4,
                linestyle="--",
            )
        )
        ax.plot([x], [y], marker="o", color="#e41a1c", markersize=4 if zoomed else 3)
        ax.set_title(title, fontsize=9.5)
        ax.set_xticks([])
        ax.set_yticks([])
        if zoomed:
            ax.set_xlim(x - zoom - 0.5, x + zoom + 0.5)
            ax.set_ylim(y + zoom + 0.5, y - zoom - 0.5)
    axes[0].add_patch(
        Rectangle(
            (x - zoom - 0.5, y - zoom - 0.5),
            2 * zoom + 1,
            2 * zoom + 1,
            fill=False,
            edgecolor="#377eb8",
            linewidth=1.0,
        )
    )
    gy_pts, gx_pts = np.mgrid[-m : m + 1, -m : m + 1]
    axes[2].scatter(
        x + gx_pts.ravel(), y + gy_pts.ravel(), s=3, color="#ffcc00", linewidths=0
    )
    axes[2].plot(
        [x + mx], [y + my], marker="x", color="#4daf4a", markersize=9, markeredgewidth=2
    )
    axes[2].add_patch(
        FancyArrowPatch(
            (x, y),
            (x + mx, y + my),
            arrowstyle="->",
            mutation_scale=10,
            color="#4daf4a",
            linewidth=1.5,
        )
    )

    im = axes[3].imshow(
        window,
        cmap="viridis",
        vmin=-1,
        vmax=1,
        extent=(-m - 0.5, m + 0.5, m + 0.5, -m - 0.5),
        interpolation="nearest",
    )
    axes[3].plot(
        [mx], [my], marker="x", color="#e41a1c", markersize=9, markeredgewidth=2
    )
    axes[3].set_xlabel(f"dx (index b = dx + {m})", fontsize=9)
    axes[3].set_ylabel(f"dy (index a = dy + {m})", fontsize=9)
    axes[3].set_title(
        f"cost[0, :, y, x].view({k}, {k}): argmax ({my}, {mx})", fontsize=9.5
    )
    fig.colorbar(
        im, ax=axes[3], fraction=0.046, pad=0.04, label="normalized correlation"
    )
    source = "F.correlation" if real else "pure-PyTorch stand-in (not the op)"
    fig.suptitle(
        f"cost = {source}(f1, f2, max_displacement={m}) on 5x5 normalized patches: "
        f"the argmax is the true motion at {100 * hit_rate:.0f}% of interior pixels",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(
        f"make_figures: wrote {path} (pixel ({y}, {x}), hit rate {hit_rate:.3f}, real op: {real})"
    )


# The flow-guided figure: window radius (RAFT's r), the crop of the stereo pair
# (rows, columns of the full-size images) and the error of the "estimate".
OFFSET_RADIUS = 4
STEREO_CROP = (slice(150, 330), slice(140, 460))
ESTIMATE_ERROR = (1.8, -1.2)  # (du, dv) added to the ground-truth offset


def _load_stereo_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Grayscale left/right crops and the left image's disparities (inf: unknown)."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        print(
            f"make_figures: scikit-image is not importable ({exc}); skipping "
            "offset_window.png (pip install scikit-image: the stereo pair ships "
            "inside its wheel)",
            file=sys.stderr,
        )
        return None
    left, right, disparity = skdata.stereo_motorcycle()
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gray = [(im[..., :3].astype(np.float32) / 255.0) @ weights for im in (left, right)]
    rows, cols = STEREO_CROP
    return (
        np.ascontiguousarray(gray[0][rows, cols]),
        np.ascontiguousarray(gray[1][rows, cols]),
        np.ascontiguousarray(disparity[rows, cols].astype(np.float32)),
    )


def make_offset_figure(path: str) -> bool:
    pair = _load_stereo_pair()
    if pair is None:
        return False
    corr, real = _correlation_op()
    if not real:
        print(
            "make_figures: offset_window.png needs the real op; skipped",
            file=sys.stderr,
        )
        return False
    frame1, frame2, disparity = pair
    h, w = frame1.shape
    r = OFFSET_RADIUS
    k = 2 * r + 1
    f1, f2 = _patch_features(frame1), _patch_features(frame2)

    # Rectified stereo: left (x, y) shows the point that the right image has at
    # (x - d, y), so the motion from frame 1 to frame 2 is (u, v) = (-d, 0).
    d = torch.from_numpy(disparity)
    valid = torch.isfinite(d)
    u_true = torch.where(valid, -d, torch.zeros(()))
    truth = torch.stack([u_true, torch.zeros_like(u_true)])[None]
    du, dv = ESTIMATE_ERROR
    estimate = truth + torch.tensor([du, dv]).view(1, 2, 1, 1)
    cost_truth = corr(f1, f2, r, offset=truth)  # (1, k*k, h, w)
    cost_estimate = corr(f1, f2, r, offset=estimate)
    assert cost_truth.shape == (1, k * k, h, w), cost_truth.shape

    # The correction the estimate's window should point to, to the nearest pixel.
    want = (round(-dv), round(-du))
    centre = r * k + r
    want_channel = (want[0] + r) * k + (want[1] + r)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    margin = r + PATCH + 3
    inside = (
        valid
        & (xs + u_true >= margin)
        & (xs + u_true < w - margin)
        & (ys >= margin)
        & (ys < h - margin)
        & (xs >= margin)
        & (xs < w - margin)
    )
    best_truth = cost_truth[0].argmax(0)
    best_estimate = cost_estimate[0].argmax(0)
    rate_truth = (best_truth == centre)[inside].float().mean().item()
    rate_estimate = (best_estimate == want_channel)[inside].float().mean().item()

    # The pixel to show: among those on the engine whose windows both peak
    # where they should, the one whose ground-truth peak stands out most over
    # the window outside its 3x3 neighbourhood (an edge would give a ridge).
    away = torch.ones(k, k, dtype=torch.bool)
    away[r - 1 : r + 2, r - 1 : r + 2] = False
    rest = cost_truth[0].view(k, k, h, w)[away].amax(0)
    margin_over_rest = cost_truth[0, centre] - rest
    region = torch.zeros_like(inside)
    region[70:170, 120:300] = True
    good = inside & region & (best_truth == centre) & (best_estimate == want_channel)
    y, x = divmod(int(torch.where(good, margin_over_rest, -9.0).argmax()), w)
    u, v = estimate[0, 0, y, x].item(), estimate[0, 1, y, x].item()
    cx, cy = x + u, y + v  # the window's centre in frame 2 (fractional)

    fig = plt.figure(figsize=(12.0, 7.4))
    grid = fig.add_gridspec(
        2,
        6,
        height_ratios=[1, 1.05],
        left=0.03,
        right=0.91,
        top=0.87,
        bottom=0.07,
        wspace=0.5,
        hspace=0.22,
    )
    ax1, ax2 = fig.add_subplot(grid[0, 0:3]), fig.add_subplot(grid[0, 3:6])
    ax3, ax4, ax5 = (fig.add_subplot(grid[1, 2 * i : 2 * i + 2]) for i in range(3))
    for ax, frame, title in (
        (ax1, frame1, f"input1 (left image): pixel (y, x) = ({y}, {x})"),
        (ax2, frame2, f"input2 (right image): offset (u, v) = ({u:.2f}, {v:.2f})"),
    ):
        ax.imshow(frame, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9.5)
        ax.set_xticks([])
        ax.set_yticks([])
    ax1.plot([x], [y], marker="o", color="#e41a1c", markersize=4)
    ax2.plot([x], [y], marker="o", color="#e41a1c", markersize=4, fillstyle="none")
    ax2.add_patch(
        FancyArrowPatch(
            (x, y),
            (cx, cy),
            arrowstyle="->",
            mutation_scale=10,
            color="#4daf4a",
            linewidth=1.5,
        )
    )
    ax2.add_patch(
        Rectangle(
            (cx - r, cy - r),
            2 * r,
            2 * r,
            fill=False,
            edgecolor="#ffcc00",
            linewidth=1.2,
        )
    )

    # Zoom on the window in frame 2: pixel centres at integers, the k*k sampled
    # positions share the centre's fractional part and so its four weights.
    zoom = r + 2
    # Contrast stretched to the zoomed pixels (the features are normalized
    # patches, so local contrast is what they see).
    near = frame2[
        max(int(cy) - zoom, 0) : int(cy) + zoom + 2,
        max(int(cx) - zoom, 0) : int(cx) + zoom + 2,
    ]
    ax3.imshow(
        frame2, cmap="gray", vmin=near.min(), vmax=near.max(), interpolation="nearest"
    )
    ax3.set_xlim(cx - zoom, cx + zoom)
    ax3.set_ylim(cy + zoom, cy - zoom)
    gy_pts, gx_pts = np.mgrid[-r : r + 1, -r : r + 1]
    ax3.scatter(
        cx + gx_pts.ravel(), cy + gy_pts.ravel(), s=9, color="#ffcc00", linewidths=0
    )
    xf, yf = int(np.floor(cx)), int(np.floor(cy))
    fx, fy = cx - xf, cy - yf
    for ty in (0, 1):
        for tx in (0, 1):
            weight = (fy if ty else 1 - fy) * (fx if tx else 1 - fx)
            ax3.add_patch(
                Rectangle(
                    (xf + tx - 0.5, yf + ty - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="#377eb8",
                    linewidth=1.6,
                )
            )
            ax3.text(
                xf + tx + (0.55 if tx else -0.55),
                yf + ty + (0.75 if ty else -0.62),
                f"{weight:.2f}",
                color="#377eb8",
                fontsize=7.5,
                ha="right" if not tx else "left",
                va="center",
                bbox={"facecolor": "white", "alpha": 0.75, "pad": 0.6, "linewidth": 0},
            )
    ax3.plot(
        [cx], [cy], marker="+", color="#e41a1c", markersize=10, markeredgewidth=1.6
    )
    ax3.set_title(
        f"{k}x{k} samples around (y, x) = ({cy:.2f}, {cx:.2f})\n"
        "blue: the centre's bilinear taps, weights",
        fontsize=9,
    )
    ax3.set_xticks([])
    ax3.set_yticks([])

    for ax, cost, title in (
        (ax4, cost_truth, "window at the ground truth:\nargmax"),
        (ax5, cost_estimate, f"window at truth + ({du}, {dv}):\nargmax"),
    ):
        window = cost[0, :, y, x].view(k, k).numpy()
        wy, wx = divmod(int(window.argmax()), k)
        im = ax.imshow(
            window,
            cmap="viridis",
            vmin=-1,
            vmax=1,
            extent=(-r - 0.5, r + 0.5, r + 0.5, -r - 0.5),
            interpolation="nearest",
        )
        ax.plot(
            [wx - r],
            [wy - r],
            marker="x",
            color="#e41a1c",
            markersize=9,
            markeredgewidth=2,
        )
        ax.set_title(f"{title} (dy, dx) = ({wy - r}, {wx - r})", fontsize=9)
        ax.set_xlabel("dx", fontsize=8.5)
        ax.set_ylabel("dy", fontsize=8.5)
        ax.tick_params(labelsize=7.5)
    fig.colorbar(im, ax=ax5, fraction=0.046, pad=0.04, label="normalized correlation")
    fig.suptitle(
        f"F.correlation(f1, f2, {r}, offset=(u, v)) on the Middlebury motorcycle pair "
        "(features: 5x5 normalized patches).\nOver the crop, the argmax is (0, 0) "
        f"at the ground truth at {100 * rate_truth:.0f}% of the pixels, and the "
        f"correction {want} at truth + ({du}, {dv}) at {100 * rate_estimate:.0f}%",
        fontsize=9.5,
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(
        f"make_figures: wrote {path} (pixel ({y}, {x}), offset ({u:.3f}, {v:.3f}), "
        f"rates {rate_truth:.3f} / {rate_estimate:.3f})"
    )
    return True


def _layout_panel(ax, dys, dxs, title, label) -> None:
    kx = len(dxs)
    step = max(dxs[1] - dxs[0] if len(dxs) > 1 else 1, 1)
    size = 0.9 * step
    for a, dy in enumerate(dys):
        for b, dx in enumerate(dxs):
            c = a * kx + b
            color = "#fde0c5" if (dy, dx) != (0, 0) else "#f4a261"
            ax.add_patch(
                Rectangle(
                    (dx - size / 2, dy - size / 2),
                    size,
                    size,
                    facecolor=color,
                    edgecolor="#555555",
                )
            )
            ax.text(
                dx, dy, label(c, a, b, dy, dx), ha="center", va="center", fontsize=7
            )
    pad = step
    ax.set_xlim(min(dxs) - pad, max(dxs) + pad)
    ax.set_ylim(max(dys) + pad, min(dys) - pad)
    ax.set_aspect("equal")
    ax.set_xticks(sorted(set(dxs)))
    ax.set_yticks(sorted(set(dys)))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("dx", fontsize=8)
    ax.set_ylabel("dy", fontsize=8)
    ax.set_title(title, fontsize=8.5)


def make_layout_figure(path: str) -> None:
    fig, axes = plt.subplots(
        1, 3, figsize=(11.0, 4.0), gridspec_kw={"width_ratios": [1, 1, 1.25]}
    )
    sym = list(range(-2, 3))
    _layout_panel(
        axes[0],
        sym,
        sym,
        "max_displacement=2\nKy = Kx = 5, channel = a*5 + b",
        lambda c, a, b, dy, dx: str(c),
    )
    strided = list(range(-4, 5, 2))
    _layout_panel(
        axes[1],
        strided,
        strided,
        "max_displacement=4, displacement_stride=2\n(FlowNetC style: 20 and 2 give 21 x 21)",
        lambda c, a, b, dy, dx: str(c),
    )
    one_sided = list(range(-4, 1))
    _layout_panel(
        axes[2],
        [0],
        one_sided,
        "max_displacement=(0, 0), min_displacement=(0, -4)\n(stereo, D = 5): channel b holds disparity D-1-b",
        lambda c, a, b, dy, dx: f"{c}\nd={-dx}",
    )
    axes[2].set_ylim(1.2, -1.2)
    fig.suptitle(
        "Output channel g*D + a*Kx + b: a numbers the dy values from the smallest, "
        "b the dx values (x fastest); group g adds g*D",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"make_figures: wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=OUT_DIR, help="output folder (default: docs/_static)"
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    make_cost_volume_figure(os.path.join(args.out, "cost_volume.png"))
    make_layout_figure(os.path.join(args.out, "displacement_layout.png"))
    written = ["cost_volume.png", "displacement_layout.png"]
    if make_offset_figure(os.path.join(args.out, "offset_window.png")):
        written.append("offset_window.png")
    for name in written:
        size = os.path.getsize(os.path.join(args.out, name))
        if size > 300 * 1024:
            raise SystemExit(
                f"make_figures: {name} is {size} bytes, over the 300 KB budget"
            )


if __name__ == "__main__":
    main()
