"""What the correlation benchmark times: the cases (shapes and arguments of
real networks), the implementations, the configurations of each case and
why some are skipped, the inputs and call of one configuration, and the
start-up check that every implementation agrees with F.correlation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import peers
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    shape: tuple[int, int, int, int]
    max_displacement: object
    kwargs: dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        n, c, h, w = self.shape
        args = [f"max_displacement={self.max_displacement}"]
        args += [f"{k}={_fmt_arg(v)}" for k, v in self.kwargs.items()]
        return f"B={n}, C={c}, {h}x{w}, " + ", ".join(args)


def _fmt_arg(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


CASES = [
    Case("pwc", "PWC-Net level", (4, 128, 48, 64), 4, {"scale": 1.0 / 128}),
    Case("pwc_fine", "PWC-Net fine level", (4, 32, 96, 128), 4),
    Case("flownetc", "FlowNetC", (4, 256, 48, 64), 20, {"displacement_stride": 2}),
    # GwcNet's group-wise volume (48 disparities, 40 groups) in its own order:
    # disparity d, i.e. displacement -d, in channel g * 48 + d.
    Case("gwcnet", "GwcNet stereo", (2, 320, 64, 128), (0, 0),
         {"min_displacement": (0, -47), "displacement_stride": (1, -1), "groups": 40,
          "scale": 40 / 320}),
    # DispNetC's 1-D correlation at 1/4 resolution of a 384x768 pair, 40
    # disparities in the same order.
    Case("dispnetc", "DispNetC stereo", (2, 256, 96, 192), (0, 0),
         {"min_displacement": (0, -39), "displacement_stride": (1, -1), "scale": 1 / 256}),
    # VCN's per-channel 4-D volume (9x9 displacements, one group per channel).
    Case("vcn", "VCN 4-D volume", (2, 16, 56, 128), 4, {"groups": 16}),
    Case("small", "small", (1, 64, 64, 64), 3),
]

IMPLS = ("ours", "sampler", "shift_loop", "unfold_einsum", "all_pairs", "gwc_loop", "vcn_loop")
IMPL_LABELS = {
    "ours": "F.correlation",
    "sampler": "spatial-correlation-sampler",
    "shift_loop": "shift loop (PyTorch)",
    "unfold_einsum": "unfold+einsum (PyTorch)",
    "all_pairs": "all-pairs matmul (PyTorch)",
    "gwc_loop": "GwcNet loop (PyTorch)",
    "vcn_loop": "VCN loop (PyTorch)",
}
# The peers that only compute their own model's geometry, and the check
# that says why they cannot compute another.
MODEL_LOOP_REASONS = {
    "gwc_loop": peers.gwc_loop_unsupported_reason,
    "vcn_loop": peers.vcn_loop_unsupported_reason,
}
PASSES = ("fwd", "fwd+bwd")
# Forward is one correlation pass; the backward computes grad_input1 and
# grad_input2, each as much work as the forward.
PASS_FLOP_FACTOR = {"fwd": 1, "fwd+bwd": 3}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

# unfold+einsum materializes input2's whole displacement window (D times
# input2) and einsum copies it once more; above this it is skipped.
UNFOLD_LIMIT_BYTES = 2 * 2**30
# The all-pairs matmul materializes an (N, groups, H*W, H*W) volume; above
# this it is skipped.
ALL_PAIRS_LIMIT_BYTES = 2 * 2**30
# A peer whose first configuration of a (case, pass) takes longer than this
# per call is timed only in that configuration (float32, most threads,
# contiguous), to keep the default run near 15 minutes on 2 cores, except
# where a target compares with it (targets.peer_configs).
SLOW_PEER_SECONDS = 1.5


_CALLS = {
    "ours": lambda *args, **kwargs: F.correlation(*args, **kwargs),  # F.correlation is bound on import
    "sampler": peers.sampler_correlation,
    "shift_loop": peers.shift_loop_correlation,
    "unfold_einsum": peers.unfold_einsum_correlation,
    "all_pairs": peers.all_pairs_correlation,
    "gwc_loop": peers.gwc_loop_correlation,
    "vcn_loop": peers.vcn_loop_correlation,
}


def call_impl(impl: str, a: torch.Tensor, b: torch.Tensor, case: Case) -> torch.Tensor:
    return _CALLS[impl](a, b, case.max_displacement, **case.kwargs)


# --------------------------------------------------------------------------
# Start-up verification: never compare wrong results
# --------------------------------------------------------------------------

def _small_version(case: Case) -> tuple[int, int, int, int]:
    """Two images of 11x17 or more (wider and taller than the displacement
    reach, so that every displacement meets the image) with the case's groups
    and up to 2 channels per group (6 channels for one group)."""
    n, c, h, w = case.shape
    groups = int(case.kwargs.get("groups", 1))
    channels = groups * min(c // groups, 2) if groups > 1 else 6
    g = peers.geometry(torch.empty(case.shape, device="meta"), case.max_displacement, **case.kwargs)
    reach = [max(abs(g.disp_lo(axis)), abs(g.disp_hi(axis))) for axis in range(2)]
    return (2, channels, max(11, reach[0] + 6), max(17, reach[1] + 6))


def verify(device: torch.device) -> list[str]:
    """Checks every implementation against F.correlation on shrunk versions of
    every case (same arguments, small tensors) plus one case exercising
    kernel_size/stride/padding/dilation; forward and both gradients."""
    lines = []
    general = {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (1, 2), "groups": 2,
               "scale": 0.5}
    extras = [
        Case("general", "general geometry", (2, 8, 11, 17), (2, 3),
             {**general, "displacement_stride": (1, 2)}),
        # Descending order on both axes, symmetric and one-sided.
        Case("general_desc", "general geometry, descending", (2, 8, 11, 17), (2, 3),
             {**general, "displacement_stride": (-1, -2)}),
        Case("one_sided_desc", "one-sided, descending", (2, 8, 11, 17), (2, 3),
             {"min_displacement": (-1, -3), "displacement_stride": (-1, -2), "groups": 2}),
        Case("sym_desc", "symmetric, descending", (2, 6, 11, 17), 4,
             {"displacement_stride": (-2, -1), "scale": 0.25}),
    ]
    gen = torch.Generator().manual_seed(0)
    for case in CASES + extras:
        shape = case.shape if case in extras else _small_version(case)
        for dtype, tol in ((torch.float64, {"rtol": 1e-7, "atol": 1e-7}),
                           (torch.float32, {"rtol": 1e-4, "atol": 1e-5})):
            a = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
            b = torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)
            a.requires_grad_(True)
            b.requires_grad_(True)
            ref = call_impl("ours", a, b, case)
            gout = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(device, dtype)
            ref_grads = torch.autograd.grad(ref, (a, b), gout)
            # Our channels_last path must agree with our contiguous one.
            a_cl = a.detach().to(memory_format=torch.channels_last).requires_grad_(True)
            b_cl = b.detach().to(memory_format=torch.channels_last).requires_grad_(True)
            out_cl = call_impl("ours", a_cl, b_cl, case)
            checks = [("ours channels_last", out_cl, torch.autograd.grad(out_cl, (a_cl, b_cl), gout))]
            for impl in IMPLS[1:]:
                try:
                    out = call_impl(impl, a, b, case)
                except peers.PeerUnsupported:
                    continue
                checks.append((impl, out, torch.autograd.grad(out, (a, b), gout)))
            for name, out, grads in checks:
                for what, got, want in (("output", out, ref), ("grad_input1", grads[0], ref_grads[0]),
                                        ("grad_input2", grads[1], ref_grads[1])):
                    if got.shape != want.shape or not torch.allclose(got, want, **tol):
                        err = (got - want).abs().max().item() if got.shape == want.shape else "shape"
                        raise AssertionError(
                            f"verification failed: {name} {what} differs from F.correlation on "
                            f"'{case.key}' ({case.describe()}) shrunk to {shape}, {dtype}: "
                            f"max abs error {err}")
                lines.append(f"{case.key}/{str(dtype).replace('torch.', '')}/{name}")
    return lines


# --------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------
@dataclass
class Config:
    case: str
    pass_: str
    impl: str
    dtype: str
    threads: int
    layout: str


@dataclass
class Result:
    config: Config
    skipped: str | None = None
    error: str | None = None
    median_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)
    reps: int = 0
    gflop: float = 0.0
    gflops: float | None = None
    mm_ratio: float | None = None
    peak_mib: float | None = None      # allocator (profiler / CUDA caching allocator)
    peak_rss_mib: float | None = None  # CPU only: resident-set growth
    needed_mib: float = 0.0          # output (+ both gradients for fwd+bwd)
    # Memory roofline: compulsory DRAM traffic at the same run's copy
    # bandwidth (same thread count); the fraction is bound / median.
    roofline_ms: float | None = None
    roofline_fraction: float | None = None
    # Compute bound: FLOP at the same run's float32 torch.mm rate (same
    # thread count); the fraction is bound / median.
    compute_ms: float | None = None
    compute_fraction: float | None = None
    fresh_roofline_ms: float | None = None
    fresh_roofline_fraction: float | None = None


def configs_for(case: Case, thread_counts: list[int]):
    dtypes = list(DTYPES)
    layouts = ["contiguous", "channels_last"]
    for pass_ in PASSES:
        for impl in IMPLS:
            ordered = []
            # The target configuration first: float32, most threads, contiguous.
            for dtype in dtypes:
                for threads in sorted(thread_counts, reverse=True):
                    for layout in layouts:
                        ordered.append(Config(case.key, pass_, impl, dtype, threads, layout))
            yield pass_, impl, ordered


def skip_reason(cfg: Config, case: Case, quick: bool, slow: dict[tuple[str, str, str], float],
                max_threads: int, target_peers: frozenset[tuple[str, str, str, str, int]] = frozenset()
                ) -> str | None:
    """Why a configuration is not timed, or None. A peer configuration that
    a target compares with (target_peers: (case, pass, impl, dtype, threads),
    contiguous) is timed even when the peer is slow."""
    probe = torch.empty(case.shape, device="meta", dtype=DTYPES[cfg.dtype])
    if cfg.impl == "ours":
        return None
    if cfg.impl == "sampler":
        reason = peers.sampler_unsupported_reason(probe, case.max_displacement, **case.kwargs)
        if reason:
            return reason
    if cfg.impl == "unfold_einsum":
        need = peers.unfold_einsum_extra_bytes(probe, case.max_displacement, **case.kwargs)
        if need > UNFOLD_LIMIT_BYTES:
            return (f"would materialize a {need / 2**30:.1f} GiB unfolded input2 (plus einsum's copy); "
                    f"limit {UNFOLD_LIMIT_BYTES / 2**30:.1f} GiB")
    if cfg.impl in MODEL_LOOP_REASONS:
        reason = MODEL_LOOP_REASONS[cfg.impl](probe, case.max_displacement, **case.kwargs)
        if reason:
            return reason
    if cfg.impl == "all_pairs":
        reason = peers.all_pairs_unsupported_reason(probe, case.max_displacement, **case.kwargs)
        if reason:
            return reason
        need = peers.all_pairs_extra_bytes(probe, case.max_displacement, **case.kwargs)
        if need > ALL_PAIRS_LIMIT_BYTES:
            return (f"would materialize a {need / 2**30:.1f} GiB all-pairs volume; "
                    f"limit {ALL_PAIRS_LIMIT_BYTES / 2**30:.1f} GiB")
    if cfg.layout != "contiguous":
        return "peers are timed on contiguous inputs only (time budget)"
    if quick and cfg.impl in ("unfold_einsum", "all_pairs"):
        return f"--quick: {IMPL_LABELS[cfg.impl]} is timed only in the full run"
    if quick and cfg.impl == "shift_loop" and (case.key != "pwc" or cfg.dtype != "float32"):
        return "--quick: the shift loop is timed only on the PWC-Net level in float32"
    key = (cfg.case, cfg.pass_, cfg.impl)
    if key in slow and (*key, cfg.dtype, cfg.threads) not in target_peers:
        return (f"slow peer ({slow[key]:.1f} s per call in float32 with {max_threads} threads, "
                "contiguous): timed only there")
    return None


def make_step(cfg: Config, case: Case, device: torch.device):
    """Inputs and one call of cfg's pass (forward, or forward and backward):
    (step, geometry, output bytes, MiB of output plus gradients, compulsory
    DRAM traffic in bytes)."""
    dtype = DTYPES[cfg.dtype]
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(case.shape, generator=gen).to(device, dtype)
    b = torch.randn(case.shape, generator=gen).to(device, dtype)
    if cfg.layout == "channels_last":
        a = a.to(memory_format=torch.channels_last)
        b = b.to(memory_format=torch.channels_last)
    geo = peers.geometry(a, case.max_displacement, **case.kwargs)
    out_shape = (geo.batch, geo.groups * geo.displacements, geo.out_h, geo.out_w)
    out_bytes = math.prod(out_shape) * a.element_size()
    if cfg.pass_ == "fwd":
        def step():
            with torch.no_grad():
                call_impl(cfg.impl, a, b, case)
        needed_mib = out_bytes / 2**20
        traffic = 2 * a.nbytes + out_bytes
    else:
        a.requires_grad_(True)
        b.requires_grad_(True)
        # Laid out like F.correlation's output (input1's memory format).
        fmt = torch.channels_last if cfg.layout == "channels_last" else torch.contiguous_format
        gout = torch.randn(out_shape, generator=gen).to(device, dtype).contiguous(memory_format=fmt)

        def step():
            out = call_impl(cfg.impl, a, b, case)
            torch.autograd.grad(out, (a, b), gout)
        needed_mib = (out_bytes + 2 * a.nbytes) / 2**20
        # forward reads both inputs, writes out; backward reads grad_output
        # and both inputs, writes both gradients.
        traffic = (2 * a.nbytes + out_bytes) + (out_bytes + 2 * a.nbytes + 2 * a.nbytes)
    return step, geo, out_bytes, needed_mib, traffic




def find(results: list[Result], **want) -> Result | None:
    for r in results:
        c = asdict(r.config)
        if all(c[k] == v for k, v in want.items()):
            return r
    return None


def speedup_vs(results: list[Result], r: Result) -> float | None:
    """How many times faster ours is than r, same configuration."""
    if r.median_ms is None:
        return None
    c = r.config
    ours = find(results, case=c.case, pass_=c.pass_, impl="ours", dtype=c.dtype,
                threads=c.threads, layout=c.layout)
    if ours is None or ours.median_ms is None:
        return None
    return r.median_ms / ours.median_ms

