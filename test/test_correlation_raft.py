# Owner(s): ["module: nn"]
r"""A real client of ``F.correlation(..., offset=...)``: torchvision's RAFT.

RAFT's ``CorrBlock`` computes the all-pairs volume
``V[n, p, q] = <fmap1[n, :, p], fmap2[n, :, q]> / sqrt(C)`` (one matmul, an
``(N, H W, H, W)`` tensor), average-pools it over ``q`` ``num_levels - 1``
times, and at every refinement step samples a ``(2r+1) x (2r+1)`` window of
level ``i`` around ``coords1 / 2**i`` with bilinear ``grid_sample``
(``align_corners=True``, zeros outside).

The volume is linear in ``fmap2``, so pooling it over ``q`` is correlating
with the pooled ``fmap2``; and sampling level ``i`` at ``coords / 2**i + d``
is ``F.correlation`` with the offset ``coords / 2**i - p`` (``p`` the output
pixel) and displacement ``d``. :class:`CorrelationLookup` is that
replacement: it keeps the feature maps (``fmap2`` pooled per level) and never
builds the volume. The tests check that its correlation features equal
``CorrBlock``'s for the same coordinates (float32 and float64, values and the
gradients of both feature maps), and that ``raft_small`` with it returns the
same flow as with ``CorrBlock`` (float32) and the same parameter gradients
(float64, away from float32 rounding at the ReLUs' kinks). Some seconds of CPU time
(one thread; more where OpenMP threads spin on a busy machine).

``benchmarks/bench_raft.py`` times the same class.
"""

import math
import unittest
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing._internal.common_utils import run_tests, TestCase

import torch_correlation  # noqa: F401  (registers aten::correlation)

try:
    import torchvision.models.optical_flow.raft as raft_module
    from torchvision.models.optical_flow import raft_small
    from torchvision.models.optical_flow.raft import CorrBlock
except ImportError:  # the test skips; requirements.txt pins torchvision
    raft_module = raft_small = CorrBlock = None


def pixel_grid(batch_size, height, width, *, dtype, device):
    """``(N, 2, H, W)`` pixel coordinates, x in channel 0, y in channel 1 (RAFT's
    ``coords0`` and the layout of ``offset``)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device),
        torch.arange(width, dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack((xs, ys)).expand(batch_size, 2, height, width)


class CorrelationLookup(nn.Module):
    r"""Drop-in replacement for torchvision's RAFT ``CorrBlock`` that samples
    each level's window with ``F.correlation(..., offset=...)`` instead of
    building the all-pairs volume.

    Level ``i`` correlates ``fmap1`` with ``fmap2`` average-pooled ``i`` times
    (2 x 2, stride 2: ``CorrBlock``'s pooling of the volume over ``fmap2``'s
    pixels), with the offset ``coords / 2^i - p`` at output pixel ``p``:

    .. math::
        \text{out}_i[n, (d_x, d_y), p] = \frac{1}{\sqrt{C}} \sum_c
        \text{fmap1}[n, c, p]\, S(\text{fmap2}_i[n, c], \text{coords}[n, :, p] / 2^i + d)

    for ``|d_x|, |d_y| <= r``, ``S`` bilinear with zeros outside. Memory is
    that of the feature maps, ``O(N C H W)``, instead of the volume's
    ``O(N (H W)^2)``.

    Shapes: ``build_pyramid`` takes ``fmap1``, ``fmap2`` of ``(N, C, H, W)``;
    ``index_pyramid`` takes ``centroids_coords`` ``(N, 2, H, W)`` (x, y) and
    returns ``(N, num_levels * (2r+1)^2, H, W)`` in ``CorrBlock``'s channel
    order.

    Example::

        >>> model = raft_small(weights=None)
        >>> model.corr_block = CorrelationLookup(num_levels=4, radius=3)
    """

    def __init__(self, *, num_levels: int = 4, radius: int = 4):
        super().__init__()
        self.num_levels = num_levels
        self.radius = radius
        self.out_channels = num_levels * (2 * radius + 1) ** 2

    def build_pyramid(self, fmap1, fmap2):
        if fmap1.shape != fmap2.shape:
            raise ValueError(
                f"expected feature maps of the same shape, but got {fmap1.shape} and {fmap2.shape}"
            )
        # CorrBlock's limit: grid_sample of a level thinner than 2 pixels
        # divides by zero in its normalisation; keep the same inputs valid.
        min_size = 2**self.num_levels
        if min(fmap1.shape[-2:]) < min_size:
            raise ValueError(
                f"expected feature maps of at least {min_size} x {min_size}, but got {fmap1.shape[-2:]}"
            )
        self.fmap1 = fmap1
        self.fmap2_pyramid = [fmap2]
        for _ in range(self.num_levels - 1):
            self.fmap2_pyramid.append(
                F.avg_pool2d(self.fmap2_pyramid[-1], kernel_size=2, stride=2)
            )
        self.scale = 1.0 / math.sqrt(fmap1.shape[1])

    def index_pyramid(self, centroids_coords):
        batch_size, _, height, width = centroids_coords.shape
        side = 2 * self.radius + 1
        grid = pixel_grid(
            batch_size,
            height,
            width,
            dtype=centroids_coords.dtype,
            device=centroids_coords.device,
        )
        levels = []
        for i, fmap2 in enumerate(self.fmap2_pyramid):
            corr = F.correlation(
                self.fmap1,
                fmap2,
                self.radius,
                offset=centroids_coords / 2**i - grid,
                scale=self.scale,
            )
            # F.correlation's channels run over dy, then dx; CorrBlock's window
            # (meshgrid "ij" of the x and y deltas) over dx, then dy.
            levels.append(
                corr.view(batch_size, side, side, height, width).transpose(1, 2)
            )
        # One copy into CorrBlock's layout, like its permute().contiguous().
        return torch.stack(levels, dim=1).view(
            batch_size, self.out_channels, height, width
        )


@unittest.skipIf(
    raft_small is None, "torchvision is not installed (requirements.txt pins it)"
)
class TestCorrelationRAFT(TestCase):
    # raft_small's feature maps: 128 channels at 1/8 of the image. 16 x 17 is
    # the smallest RAFT accepts (16) with an odd width, so that the pooled
    # levels (16 x 17, 8 x 8, 4 x 4, 2 x 2) drop a column as the volume's do.
    def _features(self, dtype, channels=128, height=16, width=17, batch_size=2):
        g = torch.Generator().manual_seed(0)
        fmap1, fmap2 = torch.randn(
            2, batch_size, channels, height, width, generator=g, dtype=dtype
        ).unbind(0)
        # Flow of a few pixels, some of it leaving the image (zeros there),
        # with fractional parts everywhere.
        flow = 3.0 * torch.randn(batch_size, 2, height, width, generator=g, dtype=dtype)
        coords = pixel_grid(batch_size, height, width, dtype=dtype, device="cpu") + flow
        return fmap1, fmap2, coords

    def _lookups(self, radius, fmap1, fmap2, coords):
        ref, ours = (
            CorrBlock(num_levels=4, radius=radius),
            CorrelationLookup(num_levels=4, radius=radius),
        )
        ref.build_pyramid(fmap1, fmap2)
        ours.build_pyramid(fmap1, fmap2)
        return ref.index_pyramid(coords), ours.index_pyramid(coords)

    def test_lookup_matches_corr_block(self):
        for dtype, radius in (
            (torch.float32, 3),
            (torch.float32, 4),
            (torch.float64, 3),
        ):
            with self.subTest(dtype=dtype, radius=radius):
                fmap1, fmap2, coords = self._features(dtype)
                expected, actual = self._lookups(radius, fmap1, fmap2, coords)
                self.assertEqual(actual.shape, (2, 4 * (2 * radius + 1) ** 2, 16, 17))
                if dtype == torch.float32:
                    # Sums of 128 products of O(1) terms, scaled to O(1):
                    # agreement to a few ulps of the sum of magnitudes.
                    self.assertEqual(actual, expected, atol=1e-5, rtol=1e-5)
                else:
                    # CorrBlock divides by sqrt(C) computed in float32
                    # (torch.tensor(C) is float32): every value of its volume
                    # is off by that rounding, 1.7e-8 here; undone, the two
                    # agree to float64 rounding.
                    sqrt_c32 = torch.sqrt(torch.tensor(128.0)).item()
                    self.assertEqual(
                        actual * (math.sqrt(128) / sqrt_c32),
                        expected,
                        atol=1e-12,
                        rtol=1e-12,
                    )

    def test_lookup_gradients_match_corr_block(self):
        # RAFT detaches coords1; training differentiates the feature maps.
        fmap1, fmap2, coords = self._features(torch.float32)
        grad_out = torch.randn(
            2, 4 * 49, 16, 17, generator=torch.Generator().manual_seed(1)
        )
        grads = []
        for cls in (CorrBlock, CorrelationLookup):
            f1, f2 = fmap1.clone().requires_grad_(), fmap2.clone().requires_grad_()
            block = cls(num_levels=4, radius=3)
            block.build_pyramid(f1, f2)
            grads.append(
                torch.autograd.grad(block.index_pyramid(coords), (f1, f2), grad_out)
            )
        self.assertEqual(grads[1], grads[0], atol=1e-4, rtol=1e-5)

    def _raft_small_runs(self, dtype):
        """Final flow and parameter gradients of ``raft_small`` with
        ``CorrBlock`` and with :class:`CorrelationLookup`, in ``dtype``."""
        torch.manual_seed(0)
        model = raft_small(weights=None).eval().to(dtype)
        # The smallest images RAFT accepts (feature maps of 16 pixels) with an
        # odd feature width, as above.
        image1, image2 = (2 * torch.rand(2, 2, 3, 128, 136, dtype=dtype) - 1).unbind(0)
        # Like RAFT's sequence loss, every prediction contributes, through a
        # fixed random cotangent each.
        cotangents = torch.randn(3, 2, 2, 128, 136, dtype=dtype)
        # A conv bias followed by an instance norm (the feature encoder's) is
        # cancelled by the norm's mean subtraction: its gradient is zero up to
        # rounding noise, which is no test of the lookup.
        cancelled = {
            id(seq[0].bias)
            for seq in model.modules()
            if isinstance(seq, nn.Sequential)
            and len(seq) > 1
            and isinstance(seq[1], nn.InstanceNorm2d)
        }
        params = [p for p in model.parameters() if id(p) not in cancelled]
        # RAFT makes its pixel grid in float32 whatever the model's dtype.
        make_grid = raft_module.make_coords_grid
        with mock.patch.object(
            raft_module,
            "make_coords_grid",
            lambda *args, **kwargs: make_grid(*args, **kwargs).to(dtype),
        ):
            results = []
            for block in (model.corr_block, CorrelationLookup(num_levels=4, radius=3)):
                model.corr_block = block
                flows = model(image1, image2, num_flow_updates=3)
                loss = sum((f * g).sum() for f, g in zip(flows, cotangents))
                results.append((flows[-1].detach(), torch.autograd.grad(loss, params)))
        return results

    def test_raft_small_flow(self):
        (flow_ref, _), (flow, _) = self._raft_small_runs(torch.float32)
        self.assertGreater(flow_ref.abs().max().item(), 1e-3)  # a real flow, not zeros
        # Three GRU steps feed the features back; float32 rounding of the
        # features (either implementation's) moves the flow by ~1e-5 px.
        self.assertEqual(flow, flow_ref, atol=1e-4, rtol=1e-5)

    def test_raft_small_gradients(self):
        # In float64: the network's ReLUs make its parameter gradients jump
        # where a pre-activation crosses zero, and in float32 the two
        # implementations' rounding differences (1e-7 relative) do cross one
        # now and then: with 2 threads one element of the motion encoder's
        # convflow2 output is exactly 0 with CorrBlock and 2e-9 with the
        # lookup, which moves the convflow gradients by 3% (neither is wrong).
        # In float64 the two differ by CorrBlock's float32 sqrt(C) (1.7e-8
        # relative, see above), a fixed difference whatever the threads.
        (flow_ref, grads_ref), (flow, grads) = self._raft_small_runs(torch.float64)
        for actual, expected in zip((flow, *grads), (flow_ref, *grads_ref)):
            self.assertEqual(
                actual, expected, atol=1e-6 * expected.abs().max().item(), rtol=1e-6
            )


if __name__ == "__main__":
    run_tests()
