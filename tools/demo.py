"""The main job: a cost volume of an image pair with known motion.

Makes a textured image (embedded default: a procedurally generated scene, so
nothing has to be downloaded; ``--image PATH`` uses a .npy or .pt grayscale
or RGB array instead), moves it by a known (dy, dx), computes the cost volume
with ``torch.nn.functional.correlation`` on simple features, and checks that
the per-pixel argmax over displacements recovers the motion.

    python tools/demo.py [--motion DY DX] [--max-displacement 4] [--image PATH]

Exits non-zero if the recovered motion is wrong, so it doubles as a smoke
test of an installation.
"""

import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

import torch_correlation  # noqa: F401  (registers aten::correlation)


def embedded_scene(height: int = 96, width: int = 128, seed: int = 0) -> torch.Tensor:
    """A deterministic grayscale scene: blobs, edges and fine texture."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    img = torch.zeros(height, width)
    for _ in range(24):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([height, width])
        r = 4 + 12 * torch.rand((), generator=g)
        img += torch.randn((), generator=g) * torch.exp(
            -((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r)
        )
    img += 0.3 * torch.sin(x / 3.1 + 0.7 * torch.sin(y / 5.3)) * torch.cos(y / 4.7)
    img += 0.2 * torch.rand(height, width, generator=g)
    return (img - img.mean()) / img.std()


def features(img: torch.Tensor) -> torch.Tensor:
    """Normalized 5x5 patch features (C=25): a stand-in for a CNN encoder."""
    patches = F.unfold(img[None, None], kernel_size=5, padding=2)  # (1, 25, H*W)
    patches = patches - patches.mean(1, keepdim=True)
    patches = patches / (patches.norm(dim=1, keepdim=True) + 1e-6)
    return patches.view(1, 25, *img.shape)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--motion", type=int, nargs=2, default=(2, -3), metavar=("DY", "DX")
    )
    parser.add_argument("--max-displacement", type=int, default=4)
    parser.add_argument("--image", help="a .npy or .pt array (H, W) or (H, W, 3)")
    args = parser.parse_args()
    dy, dx = args.motion
    md = args.max_displacement
    if max(abs(dy), abs(dx)) > md:
        parser.error("--motion must lie within --max-displacement")

    if args.image:
        if args.image.endswith(".npy"):
            import numpy as np

            img = torch.from_numpy(np.load(args.image)).float()
        else:
            img = torch.load(args.image).float()
        if img.dim() == 3:
            img = img.mean(-1)
        img = (img - img.mean()) / img.std()
    else:
        img = embedded_scene()

    # frame2[y, x] = frame1[y - dy, x - dx]: content moves by (dy, dx).
    frame1 = img
    frame2 = torch.roll(img, shifts=(dy, dx), dims=(0, 1))
    f1, f2 = features(frame1), features(frame2)

    start = time.perf_counter()
    cost = F.correlation(f1, f2, md, scale=1.0 / f1.shape[1])  # (1, (2md+1)^2, H, W)
    elapsed = time.perf_counter() - start
    k = 2 * md + 1
    best = cost[0].argmax(0)
    est_dy, est_dx = best // k - md, best % k - md

    # Ignore the border, where the roll wraps around.
    m = md + 3
    inner = (slice(m, img.shape[0] - m), slice(m, img.shape[1] - m))
    correct = ((est_dy[inner] == dy) & (est_dx[inner] == dx)).float().mean().item()

    print(
        f"image {tuple(img.shape)}, features {tuple(f1.shape)}, true motion (dy, dx) = ({dy}, {dx})"
    )
    print(
        f"cost volume {tuple(cost.shape)} ({k}x{k} displacements) in {elapsed * 1e3:.1f} ms"
    )
    votes = torch.bincount(best[inner].flatten(), minlength=k * k).view(k, k)
    print("argmax votes over the displacement grid (rows: dy, columns: dx):")
    print("      " + " ".join(f"{d:>5d}" for d in range(-md, md + 1)))
    for a in range(k):
        print(f"{a - md:>5d} " + " ".join(f"{int(v):>5d}" for v in votes[a]))
    mode = int(votes.flatten().argmax())
    print(
        f"most voted displacement: ({mode // k - md}, {mode % k - md}); "
        f"pixels recovering the true motion: {100 * correct:.1f}%"
    )
    ok = (
        (mode // k - md, mode % k - md) == (dy, dx)
        and correct > 0.9
        and math.isfinite(cost.sum().item())
    )
    print(
        "OK: the argmax recovers the motion"
        if ok
        else "FAIL: the motion was not recovered"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
