#pragma once

// The device code of the CUDA correlation kernels: the kernels, their device
// helpers, the tile planners and the launch sequence, which starts kernels
// through a `launch` callable supplied by the includer:
//
//   launch(&kernel, blocks, threads, shared_bytes, args...)
//
// starts `kernel` on a 1-D grid of `blocks` blocks of `threads` threads with
// `shared_bytes` of dynamic shared memory, which the kernels reach through
// dynamic_shared_memory<T>(), also defined by the includer.
// SpatialCorrelation.cu supplies both for a CUDA stream. The kernels use only
// the grid and block indices, dynamic shared memory and __syncthreads (no
// warp-level primitives, atomics or static shared memory), so a host
// harness that supplies those built-ins can run them unchanged.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/TensorBase.h>
#include <ATen/cuda/detail/KernelUtils.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <c10/macros/Macros.h>

#include <ATen/cuda/detail/IndexUtils.cuh>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <ATen/cuda/detail/TensorInfo.cuh>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <limits>

// NOTE [ Correlation CUDA Kernels ]
//
// Notation (see NOTE [ correlation Native Functions ] in
// SpatialCorrelation.cpp): displacement (a, b) is (dy, dx) = (disp_min_h +
// a*step_h, disp_min_w + b*step_w), a < Ky, b < Kx, D = Ky*Kx, G is
// grad_output. The kernels walk the displacement numbers (a, b) in
// ascending order; a negative displacement_stride only reverses the output
// channels they land in, so every output write and grad_output read goes
// through displacement_channel(geo, a, b) (a*Kx + b when ascending, which
// the formulas below write for short).
//
// Two paths compute the same sums:
//
// * Tiled kernels, for kernel_size 1 and stride 1: the configuration of
//   FlowNetC, PWC-Net, DispNetC and GwcNet. Output pixel (oy, ox) is then
//   input pixel (y, x) = (oy - pad_h, ox - pad_w), and
//
//     forward:      out[g*D + a*Kx + b, oy, ox] = sum_c in1[c, y, x] * in2[c, y
//     + dy, x + dx] grad_input1:  gi1[c, y, x] = sum_{a,b} G[a*Kx + b, y +
//     pad_h, x + pad_w] * in2[c, y + dy, x + dx] grad_input2:  gi2[c, y, x] =
//     sum_{a,b} G[a*Kx + b, u + pad_h, v + pad_w] * in1[c, u, v],
//                   (u, v) = (y - dy, x - dx)
//
//   A block owns a tile of 32 columns (one per lane) by tile_h rows of one
//   (n, group) and stages the tile of one operand plus the displaced tile
//   (tile + halo) of the other into shared memory, converted to opmath_t
//   and with zeros outside the image, so the inner loops have no bounds
//   checks and read shared memory without bank conflicts (a warp reads 32
//   consecutive columns of one row). Each value loaded from global memory is
//   then reused by every displacement and every neighbouring pixel that
//   touches it.
//
//   Registers add a second level of reuse. A thread owns kRows pixels of one
//   column whose rows are P = step_h apart, and kDispRows consecutive
//   displacement rows a. Pixel q and displacement row a read the displaced
//   operand at row q*P + a*step_h = (q + a)*P (relative), so the
//   kRows*kDispRows products of one channel and one b need only
//   kRows + kDispRows - 1 displaced loads instead of kRows*kDispRows. This is
//   why the rows of a thread are P apart rather than adjacent, and why the
//   tiled path needs a small vertical step (at most kMaxRowPhases).
//
//   The forward's sum runs over channels: a block owns a range of
//   displacements and loops over chunks of channels. The backward's sums run
//   over displacements: a block owns a range of channels and loops over
//   chunks of displacements, staging the grad_output values of the chunk next
//   to the displaced operand.
//
// * Generic kernels, for every other configuration (kernel_size > 1,
//   stride > 1, large displacement steps or tiles that do not fit in shared
//   memory): one thread per output or gradient element, reading through
//   strides with explicit bounds checks.
//
// Both backward paths are gathers: every gradient element is computed by
// exactly one thread, which sums its terms in a fixed order, so the results
// are deterministic and there are no atomics.
//
// Every tensor is read and written through its strides (NCHW, channels_last
// or any view). Offsets use 32-bit math when every tensor allows it
// (canUse32BitIndexMath) and the geometry's coordinates fit comfortably in
// int, and 64-bit math otherwise.

namespace at::native::correlation_cuda {

using at::cuda::detail::canUse32BitIndexMath;
using at::cuda::detail::getTensorInfo;
using at::cuda::detail::IntDivider;
using at::cuda::detail::TensorInfo;

// The block's dynamic shared memory, as T values: the includer defines it.
template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory();

// The tiled kernels map the 32 lanes of a warp onto 32 consecutive columns.
// CUDA warps have 32 lanes (C10_WARP_SIZE is device-only).
constexpr int kWarpSize = 32;
constexpr int kTileW = kWarpSize;
// Pixels (rows) per thread, displacement rows per thread and, in the
// backward, channels per thread: a 4x4 register tile.
constexpr int kRows = 4;
constexpr int kDispRows = 4;
constexpr int kChannels = 4;
// Threads of a tiled block, at most.
constexpr int kMaxWarps = 16;
constexpr int kMaxThreads = kMaxWarps * kWarpSize;
// Largest vertical displacement step the tiled kernels take: the block
// stacks P row phases of kRows rows each.
constexpr int kMaxRowPhases = 8;
// Shared memory per tiled block: the default limit, so no opt-in is needed
// and four blocks fit on an SM of an A100 or H100.
constexpr int64_t kSharedMemoryBytes = 48 * 1024;
constexpr int kGenericThreads = 256;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Odd strides between the shared-memory planes make a warp that writes 32
// consecutive planes (channels_last staging) hit 32 different banks. In
// int64_t: the planners compare it with the shared-memory budget before any
// narrowing, so an absurd tile (a huge displacement step) is rejected rather
// than wrapped into a small one.
inline int64_t odd(int64_t value) {
  return value | 1;
}

// A single displacement along an axis makes its step irrelevant; it is
// normalized to 1 so that the tiled kernels' row phases stay small.
inline int64_t effective_step(int64_t disp_count, int64_t disp_step) {
  return disp_count == 1 ? 1 : disp_step;
}

// CorrelationParams as the kernels use it: in index_t (32-bit arithmetic
// when use_32bit_indexing() allows it), with effective displacement steps.
template <typename index_t>
struct CorrelationGeometry {
  index_t groups, channels_per_group, displacements;
  index_t height, width, out_h, out_w;
  index_t kernel_h, kernel_w, stride_h, stride_w;
  index_t pad_h, pad_w, dilation_h, dilation_w;
  index_t disp_min_h, disp_min_w, disp_step_h, disp_step_w, disp_count_h,
      disp_count_w;
  bool disp_descending_h, disp_descending_w;

  explicit CorrelationGeometry(const CorrelationParams& p)
      : groups(p.groups),
        channels_per_group(p.channels_per_group()),
        displacements(p.displacements()),
        height(p.height),
        width(p.width),
        out_h(p.out_h),
        out_w(p.out_w),
        kernel_h(p.kernel_h),
        kernel_w(p.kernel_w),
        stride_h(p.stride_h),
        stride_w(p.stride_w),
        pad_h(p.pad_h),
        pad_w(p.pad_w),
        dilation_h(p.dilation_h),
        dilation_w(p.dilation_w),
        disp_min_h(p.disp_min_h),
        disp_min_w(p.disp_min_w),
        disp_step_h(effective_step(p.disp_count_h, p.disp_step_h)),
        disp_step_w(effective_step(p.disp_count_w, p.disp_step_w)),
        disp_count_h(p.disp_count_h),
        disp_count_w(p.disp_count_w),
        disp_descending_h(p.disp_descending_h),
        disp_descending_w(p.disp_descending_w) {}
};

// Position along one axis of the output channels of displacement number i
// (ascending): reversed for a descending axis. An involution, so it also
// maps a channel position back to its displacement number.
template <typename index_t>
__device__ __forceinline__ index_t
displacement_position(index_t i, index_t count, bool descending) {
  return descending ? count - 1 - i : i;
}

// Output channel (within a group) of displacement numbers (a, b):
// CorrelationParams::displacement_channel on the device.
template <typename index_t>
__device__ __forceinline__ index_t displacement_channel(
    const CorrelationGeometry<index_t>& geo,
    index_t a,
    index_t b) {
  return displacement_position(a, geo.disp_count_h, geo.disp_descending_h) *
      geo.disp_count_w +
      displacement_position(b, geo.disp_count_w, geo.disp_descending_w);
}

// The row phases P of the tiled kernels for a call, or 0 when it needs the
// generic kernels: the tiled kernels take kernel_size 1 and stride 1, and
// stack P = (vertical displacement step) row phases, at most kMaxRowPhases.
inline int64_t tiled_row_phases(const CorrelationParams& p) {
  if (p.kernel_h != 1 || p.kernel_w != 1 || p.stride_h != 1 ||
      p.stride_w != 1) {
    return 0;
  }
  const int64_t P = effective_step(p.disp_count_h, p.disp_step_h);
  return P <= kMaxRowPhases ? P : 0;
}

// canUse32BitIndexMath bounds the offsets of the elements, but the kernels
// also form coordinates outside the image (padding, displacements, tile
// halos) and products such as oy*stride. Taking the 32-bit path only when
// every such quantity is far below 2^31 keeps them all in range.
inline bool geometry_fits_int32(const CorrelationParams& p) {
  constexpr int64_t limit = std::numeric_limits<int32_t>::max() / 8;
  const int64_t values[] = {
      p.height,
      p.width,
      p.out_h,
      p.out_w,
      p.pad_h,
      p.pad_w,
      p.kernel_h * p.dilation_h,
      p.kernel_w * p.dilation_w,
      p.out_h * p.stride_h,
      p.out_w * p.stride_w,
      std::abs(p.disp_min_h),
      std::abs(p.disp_min_w),
      std::abs(p.disp_max_h()),
      std::abs(p.disp_max_w()),
      p.disp_count_h * p.disp_step_h,
      p.disp_count_w * p.disp_step_w,
      p.channels,
      p.out_channels()};
  return std::all_of(std::begin(values), std::end(values), [](int64_t v) {
    return v >= 0 && v <= limit;
  });
}

// A box of planes x rows x cols values staged into shared memory: plane i
// at dst + i * plane_stride, rows of `cols` values. Built on the host
// (IntDivider's magic numbers), per tensor, since the order in which the
// threads walk the box follows the tensor's layout: consecutive threads take
// consecutive columns, or consecutive planes when the planes are adjacent in
// memory (channels_last), so that the global reads coalesce either way.
struct StagedBox {
  IntDivider<unsigned int> outer;  // rows * cols, or planes when planes_inner
  IntDivider<unsigned int> cols;
  int planes, rows, plane_stride;
  bool planes_inner;
};

inline StagedBox make_box(
    int64_t planes,
    int64_t rows,
    int64_t cols,
    int64_t plane_stride,
    bool planes_inner) {
  StagedBox box;
  box.outer = IntDivider<unsigned int>(
      static_cast<unsigned int>(planes_inner ? planes : rows * cols));
  box.cols = IntDivider<unsigned int>(static_cast<unsigned int>(cols));
  box.planes = static_cast<int>(planes);
  box.rows = static_cast<int>(rows);
  box.plane_stride = static_cast<int>(plane_stride);
  box.planes_inner = planes_inner;
  return box;
}

inline bool planes_adjacent(const TensorBase& t) {
  return t.stride(1) < t.stride(3);
}

// Number of loads each thread has in flight while staging.
constexpr int kStageUnroll = 4;

// Fills the first `planes` planes of `box` with load(plane, row, col), which
// returns zero outside the tensor. The loads of kStageUnroll elements are
// issued before any of them is stored, so that a thread waits for one round
// trip to global memory per kStageUnroll elements rather than per element.
template <typename opmath_t, typename Load>
__device__ __forceinline__ void stage_box(
    opmath_t* dst,
    const StagedBox& box,
    int planes,
    const Load& load) {
  const int cols = static_cast<int>(box.cols.divisor);
  const unsigned int count = static_cast<unsigned int>(
      (box.planes_inner ? box.planes : planes) * box.rows * cols);
  for (unsigned int base = threadIdx.x; base < count;
       base += kStageUnroll * blockDim.x) {
    opmath_t values[kStageUnroll];
    int offsets[kStageUnroll];
#pragma unroll
    for (int u = 0; u < kStageUnroll; ++u) {
      const unsigned int e = base + u * blockDim.x;
      offsets[u] = -1;
      if (e < count) {
        const auto outer = box.outer.divmod(e);
        const unsigned int plane = box.planes_inner ? outer.mod : outer.div;
        const auto rc =
            box.cols.divmod(box.planes_inner ? outer.div : outer.mod);
        if (static_cast<int>(plane) < planes) {
          offsets[u] = static_cast<int>(plane) * box.plane_stride +
              static_cast<int>(rc.div * cols + rc.mod);
          values[u] = load(
              static_cast<int>(plane),
              static_cast<int>(rc.div),
              static_cast<int>(rc.mod));
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kStageUnroll; ++u) {
      if (offsets[u] >= 0) {
        dst[offsets[u]] = values[u];
      }
    }
  }
}

template <typename index_t>
__device__ __forceinline__ bool inside(
    index_t y,
    index_t x,
    index_t h,
    index_t w) {
  return y >= 0 && y < h && x >= 0 && x < w;
}

// The next digit of a mixed-radix number: returns value % radix and leaves
// value / radix in `value`. The kernels decode their block or element index
// this way, least significant digit first.
template <typename T>
__device__ __forceinline__ T next_digit(T& value, T radix) {
  const T digit = value % radix;
  value /= radix;
  return digit;
}

// Channel c of image n of a 4D tensor: where its (y, x) offsets start.
template <typename T, typename index_t>
__device__ __forceinline__ T* channel_plane(
    const TensorInfo<T, index_t>& t,
    index_t n,
    index_t c) {
  return t.data + n * t.strides[0] + c * t.strides[1];
}

// Element (n, c, y, x) of a 4D tensor.
template <typename T, typename index_t>
__device__ __forceinline__ T& element(
    const TensorInfo<T, index_t>& t,
    index_t n,
    index_t c,
    index_t y,
    index_t x) {
  return t.data
      [n * t.strides[0] + c * t.strides[1] + y * t.strides[2] +
       x * t.strides[3]];
}

// Stages planes [0, planes) of `box`: plane c, row r, column x holds
// channel c_first + c of image n of `in` at (y0 + r, x0 + x), in opmath_t,
// and zero outside the image or when c >= channels.
template <typename scalar_t, typename index_t, typename opmath_t>
__device__ __forceinline__ void stage_image_tile(
    opmath_t* dst,
    const StagedBox& box,
    int planes,
    const TensorInfo<const scalar_t, index_t>& in,
    const CorrelationGeometry<index_t>& geo,
    index_t n,
    index_t c_first,
    index_t channels,
    index_t y0,
    index_t x0) {
  const index_t sc = in.strides[1], sh = in.strides[2], sw = in.strides[3];
  const scalar_t* base = in.data + n * in.strides[0] + c_first * sc;
  stage_box(dst, box, planes, [&](int c, int r, int x) -> opmath_t {
    const index_t y = y0 + r, xx = x0 + x;
    return c < channels && inside(y, xx, geo.height, geo.width)
        ? static_cast<opmath_t>(base[c * sc + y * sh + xx * sw])
        : opmath_t(0);
  });
}

// ---------------------------------------------------------------------------
// Tiled forward.

// How a tiled forward block splits its work; chosen by plan_forward().
struct ForwardPlan {
  int row_phases;  // P: a thread's rows are P apart (P = step_h)
  int row_groups;  // warps stacked vertically within one phase
  int disp_groups;  // groups of kDispRows displacement rows per block
  int disp_cols;  // displacement columns b per block, one warp each
  int chunk_channels;  // channels staged per step
  int tile_h;  // output rows per block: kRows * P * row_groups
  int halo_rows;  // rows and columns of the staged input2 tile
  int halo_cols;
  int tile_stride;  // shared-memory stride between channels of the
  int halo_stride;  // input1 tile and of the input2 tile
  int threads;
  int64_t tiles_x, tiles_y, chunks_h, chunks_w;
  int64_t blocks;
  int64_t shared_bytes;
  StagedBox box1, box2;  // the input1 tile and the input2 tile + halo
};

// The work of one thread of a tiled forward block. Warp w: phase w % P,
// then row group, then displacement column, then displacement row group.
// Pixel q of the thread is tile row row1 + q*P; its input2 value for
// displacement row a_first + al is at row row2 + (q + al)*P, column col2
// of the input2 tile.
template <typename index_t>
struct ForwardTile {
  index_t n, group;
  index_t oy0, ox0;  // first output pixel of the block
  index_t a0, b0;  // first displacement row and column of the block
  index_t a_first, b;  // the thread's first displacement row, its column
  int lane;
  int na;  // displacement rows of the thread; 0: idle thread
  int row1, row2, col2;
};

template <typename index_t>
__device__ __forceinline__ ForwardTile<index_t> forward_tile(
    const CorrelationGeometry<index_t>& geo,
    const ForwardPlan& plan) {
  ForwardTile<index_t> t;
  int64_t block = blockIdx.x;
  const index_t tile_x = next_digit(block, plan.tiles_x);
  const index_t tile_y = next_digit(block, plan.tiles_y);
  const index_t chunk_w = next_digit(block, plan.chunks_w);
  const index_t chunk_h = next_digit(block, plan.chunks_h);
  t.group = block % geo.groups;
  t.n = block / geo.groups;
  t.oy0 = tile_y * plan.tile_h;
  t.ox0 = tile_x * kTileW;
  t.a0 = chunk_h * plan.disp_groups * kDispRows;
  t.b0 = chunk_w * plan.disp_cols;

  const int P = plan.row_phases;
  const int warp = threadIdx.x / kWarpSize;
  t.lane = threadIdx.x % kWarpSize;
  const int phase = warp % P;
  int rest = warp / P;
  const int row_group = rest % plan.row_groups;
  rest /= plan.row_groups;
  const int col = rest % plan.disp_cols;
  const int disp_group = rest / plan.disp_cols;
  t.a_first = t.a0 + disp_group * kDispRows;
  t.b = t.b0 + col;
  const bool active = disp_group < plan.disp_groups &&
      t.a_first < geo.disp_count_h && t.b < geo.disp_count_w;
  t.na = active
      ? static_cast<int>(std::min(
            static_cast<index_t>(kDispRows), geo.disp_count_h - t.a_first))
      : 0;
  t.row1 = phase + row_group * kRows * P;
  t.row2 = phase + (row_group * kRows + disp_group * kDispRows) * P;
  t.col2 = col * static_cast<int>(geo.disp_step_w) + t.lane;
  return t;
}

// acc[q][al] += sum over the `chunk` staged channels of input1 at pixel q
// times input2 at pixel q displaced by row a_first + al.
template <typename index_t, typename opmath_t>
__device__ __forceinline__ void accumulate_forward_chunk(
    opmath_t (&acc)[kRows][kDispRows],
    const opmath_t* tile1,
    const opmath_t* tile2,
    int chunk,
    const ForwardPlan& plan,
    const ForwardTile<index_t>& t) {
  const int P = plan.row_phases;
  for (int c = 0; c < chunk; ++c) {
    const opmath_t* t1 =
        tile1 + c * plan.tile_stride + t.row1 * kTileW + t.lane;
    const opmath_t* t2 =
        tile2 + c * plan.halo_stride + t.row2 * plan.halo_cols + t.col2;
    opmath_t v1[kRows];
    opmath_t v2[kRows + kDispRows - 1];
#pragma unroll
    for (int q = 0; q < kRows; ++q) {
      v1[q] = t1[q * P * kTileW];
    }
    // Rows past the thread's last displacement row may lie outside the
    // staged tile; they would only feed accumulators that are never stored.
#pragma unroll
    for (int k = 0; k < kRows + kDispRows - 1; ++k) {
      v2[k] = k < kRows + t.na - 1 ? t2[k * P * plan.halo_cols] : opmath_t(0);
    }
#pragma unroll
    for (int q = 0; q < kRows; ++q) {
#pragma unroll
      for (int al = 0; al < kDispRows; ++al) {
        acc[q][al] += v1[q] * v2[q + al];
      }
    }
  }
}

// Writes the thread's outputs: pixels q inside the image, displacement rows
// al < na.
template <typename scalar_t, typename index_t, typename opmath_t>
__device__ __forceinline__ void store_forward_tile(
    const TensorInfo<scalar_t, index_t>& output,
    const CorrelationGeometry<index_t>& geo,
    const ForwardPlan& plan,
    const ForwardTile<index_t>& t,
    const opmath_t (&acc)[kRows][kDispRows],
    opmath_t scale) {
  const index_t ox = t.ox0 + t.lane;
  if (ox >= geo.out_w) {
    return;
  }
  const index_t so_n = output.strides[0], so_c = output.strides[1];
  const index_t so_h = output.strides[2], so_w = output.strides[3];
  scalar_t* out = output.data + t.n * so_n + ox * so_w +
      (t.group * geo.displacements +
       displacement_channel(geo, t.a_first, t.b)) *
          so_c;
  // Displacement rows a_first + al are Kx channels apart, backwards when
  // the vertical order is descending.
  const index_t so_a =
      (geo.disp_descending_h ? -geo.disp_count_w : geo.disp_count_w) * so_c;
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
    const index_t oy = t.oy0 + t.row1 + q * plan.row_phases;
    if (oy < geo.out_h) {
#pragma unroll
      for (int al = 0; al < kDispRows; ++al) {
        if (al < t.na) {
          out[oy * so_h + al * so_a] =
              static_cast<scalar_t>(acc[q][al] * scale);
        }
      }
    }
  }
}

// Per chunk of channels, the block stages the input1 tile (kernel 1 and
// stride 1: output pixel (oy, ox) reads input1 at (oy - pad_h, ox - pad_w))
// and the input2 tile shifted by the block's first displacement and
// extended by the halo of its displacements.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kMaxThreads)
__global__ void correlation_forward_tiled_kernel(
    TensorInfo<scalar_t, index_t> output,
    TensorInfo<const scalar_t, index_t> input1,
    TensorInfo<const scalar_t, index_t> input2,
    const CorrelationGeometry<index_t> geo,
    const ForwardPlan plan,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  opmath_t* tile1 = dynamic_shared_memory<opmath_t>();
  opmath_t* tile2 = tile1 + plan.chunk_channels * plan.tile_stride;
  const auto t = forward_tile(geo, plan);
  const index_t y1 = t.oy0 - geo.pad_h;
  const index_t x1 = t.ox0 - geo.pad_w;
  const index_t y2 = y1 + geo.disp_min_h + t.a0 * geo.disp_step_h;
  const index_t x2 = x1 + geo.disp_min_w + t.b0 * geo.disp_step_w;
  const index_t c_begin = t.group * geo.channels_per_group;

  opmath_t acc[kRows][kDispRows];
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
#pragma unroll
    for (int al = 0; al < kDispRows; ++al) {
      acc[q][al] = opmath_t(0);
    }
  }
  for (index_t c0 = 0; c0 < geo.channels_per_group; c0 += plan.chunk_channels) {
    const int chunk = static_cast<int>(
        std::min<index_t>(plan.chunk_channels, geo.channels_per_group - c0));
    // The previous chunk must be consumed before it is overwritten.
    __syncthreads();
    stage_image_tile(
        tile1,
        plan.box1,
        chunk,
        input1,
        geo,
        t.n,
        c_begin + c0,
        index_t(chunk),
        y1,
        x1);
    stage_image_tile(
        tile2,
        plan.box2,
        chunk,
        input2,
        geo,
        t.n,
        c_begin + c0,
        index_t(chunk),
        y2,
        x2);
    __syncthreads();
    if (t.na > 0) {
      accumulate_forward_chunk(acc, tile1, tile2, chunk, plan, t);
    }
  }
  if (t.na > 0) {
    store_forward_tile(output, geo, plan, t, acc, scale);
  }
}

// Picks the forward tiling, or returns false when the configuration needs
// the generic kernel. Warps are spent on displacement columns first (each
// block stages one input2 tile for all of them), then on displacement rows,
// then on more pixel rows.
inline bool plan_forward(
    const CorrelationParams& p,
    int64_t elem_size,
    ForwardPlan& plan) {
  const int64_t P = tiled_row_phases(p);
  if (P == 0) {
    return false;
  }
  const int64_t step_w = effective_step(p.disp_count_w, p.disp_step_w);
  const int64_t Ky = p.disp_count_h, Kx = p.disp_count_w;
  int64_t disp_cols = std::min<int64_t>(Kx, kMaxWarps / P);
  const int64_t chunks_w = ceil_div(Kx, disp_cols);
  disp_cols = ceil_div(Kx, chunks_w);
  const int64_t row_blocks = ceil_div(Ky, kDispRows);
  int64_t disp_groups =
      std::clamp<int64_t>(kMaxWarps / (P * disp_cols), 1, row_blocks);
  const int64_t chunks_h = ceil_div(row_blocks, disp_groups);
  disp_groups = ceil_div(row_blocks, chunks_h);
  const int64_t max_row_groups = std::clamp<int64_t>(
      kMaxWarps / (P * disp_cols * disp_groups),
      1,
      ceil_div(p.out_h, kRows * P));

  const int64_t budget = kSharedMemoryBytes / elem_size;
  const int64_t cpg = std::max<int64_t>(p.channels_per_group(), 1);
  for (int64_t row_groups = max_row_groups; row_groups >= 1; --row_groups) {
    const int64_t tile_h = kRows * P * row_groups;
    const int64_t halo_rows =
        tile_h + (std::min<int64_t>(disp_groups * kDispRows, Ky) - 1) * P;
    const int64_t halo_cols = kTileW + (disp_cols - 1) * step_w;
    const int64_t tile_stride = odd(tile_h * kTileW);
    const int64_t halo_stride = odd(halo_rows * halo_cols);
    const int64_t chunk =
        std::min<int64_t>({cpg, 16, budget / (tile_stride + halo_stride)});
    // A shallow channel chunk means many block-wide barriers per channel;
    // prefer fewer pixel rows then.
    if (chunk < 1 || (row_groups > 1 && chunk < std::min<int64_t>(cpg, 4))) {
      continue;
    }
    plan.row_phases = static_cast<int>(P);
    plan.row_groups = static_cast<int>(row_groups);
    plan.disp_groups = static_cast<int>(disp_groups);
    plan.disp_cols = static_cast<int>(disp_cols);
    plan.chunk_channels = static_cast<int>(chunk);
    plan.tile_h = static_cast<int>(tile_h);
    plan.halo_rows = static_cast<int>(halo_rows);
    plan.halo_cols = static_cast<int>(halo_cols);
    plan.tile_stride = static_cast<int>(tile_stride);
    plan.halo_stride = static_cast<int>(halo_stride);
    plan.threads =
        static_cast<int>(P * row_groups * disp_cols * disp_groups * kWarpSize);
    plan.tiles_x = ceil_div(p.out_w, kTileW);
    plan.tiles_y = ceil_div(p.out_h, tile_h);
    plan.chunks_h = chunks_h;
    plan.chunks_w = chunks_w;
    plan.shared_bytes = chunk * (tile_stride + halo_stride) * elem_size;
    plan.blocks =
        plan.tiles_x * plan.tiles_y * chunks_h * chunks_w * p.batch * p.groups;
    return plan.blocks <= std::numeric_limits<int32_t>::max();
  }
  return false;
}

// ---------------------------------------------------------------------------
// Tiled backward.

// How a tiled backward block splits its work; chosen by plan_backward() and
// shared by the grad_input1 and grad_input2 kernels.
struct BackwardPlan {
  int row_phases;  // P: a thread's rows are P apart (P = step_h)
  int row_groups;  // warps stacked vertically within one phase
  int channel_groups;  // warps along channels, kChannels channels each
  int disp_rows;  // min(kDispRows, Ky): displacement rows per step
  int disp_cols;  // displacement columns per step
  int tile_h;  // input rows per block: kRows * P * row_groups
  int halo_rows;  // rows and columns of the staged displaced tile
  int halo_cols;
  int halo_stride;  // shared-memory stride between its channels
  int grad_stride;  // and between the staged grad_output planes
  int threads;
  int64_t tiles_x, tiles_y, channel_blocks;
  int64_t blocks;
  int64_t shared_bytes;
  // The grad_output planes (disp_rows x disp_cols, one per displacement)
  // and the displaced operand's tile + halo.
  StagedBox grad_box, halo_box;
};

// Decodes the block and warp of a tiled backward kernel.
template <typename index_t>
struct BackwardTile {
  index_t n, group, y0, x0, c0;  // c0: first channel of the block, in the group
  int phase, row_group, channel_group, lane;
  int row;  // tile row of the thread's pixel q = 0
};

template <typename index_t>
__device__ __forceinline__ BackwardTile<index_t> backward_tile(
    const CorrelationGeometry<index_t>& geo,
    const BackwardPlan& plan) {
  BackwardTile<index_t> t;
  int64_t block = blockIdx.x;
  const index_t tile_x = next_digit(block, plan.tiles_x);
  const index_t tile_y = next_digit(block, plan.tiles_y);
  const index_t channel_block = next_digit(block, plan.channel_blocks);
  t.group = block % geo.groups;
  t.n = block / geo.groups;
  t.y0 = tile_y * plan.tile_h;
  t.x0 = tile_x * kTileW;
  t.c0 = channel_block * plan.channel_groups * kChannels;
  const int warp = threadIdx.x / kWarpSize;
  t.lane = threadIdx.x % kWarpSize;
  t.phase = warp % plan.row_phases;
  const int rest = warp / plan.row_phases;
  t.row_group = rest % plan.row_groups;
  t.channel_group = rest / plan.row_groups;
  t.row = t.phase + t.row_group * kRows * plan.row_phases;
  return t;
}

// Writes the kRows x kChannels gradient values of a thread.
template <typename scalar_t, typename index_t, typename opmath_t>
__device__ __forceinline__ void store_grad_tile(
    const TensorInfo<scalar_t, index_t>& grad,
    const CorrelationGeometry<index_t>& geo,
    const BackwardPlan& plan,
    const BackwardTile<index_t>& t,
    const opmath_t (&acc)[kRows][kChannels],
    opmath_t scale) {
  const index_t x = t.x0 + t.lane;
  if (t.channel_group >= plan.channel_groups || x >= geo.width) {
    return;
  }
  const index_t c_first = t.c0 + t.channel_group * kChannels;
  scalar_t* out = grad.data + t.n * grad.strides[0] + x * grad.strides[3] +
      (t.group * geo.channels_per_group + c_first) * grad.strides[1];
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
    const index_t y = t.y0 + t.row + q * plan.row_phases;
    if (y < geo.height) {
#pragma unroll
      for (int cb = 0; cb < kChannels; ++cb) {
        if (c_first + cb < geo.channels_per_group) {
          out[y * grad.strides[2] + cb * grad.strides[1]] =
              static_cast<scalar_t>(acc[q][cb] * scale);
        }
      }
    }
  }
}

// The tiled backward kernel gathers the gradient of one input from G and
// the other input, the displaced operand (formulas in the NOTE above). Per
// step of disp_rows x disp_cols displacements (a0 + al, b0 + bl) the
// block stages G (one plane per displacement, for its tile of pixels) and
// the displaced operand's tile + halo of its channels, then each thread
// adds its kRows pixels x kChannels channels. The two gradients differ only
// in where they read:
//
// * grad_input1 reads G at the pixel itself, and input2 at the pixel plus
//   the displacement: the halo's origin is the step's first displacement,
//   and pixel q, displacement (a0 + al, b0 + bl) read tile row
//   row + (q + al)*P, column lane + bl*step_w.
// * grad_input2 reads G at (u, v), zero where (u, v) is outside the image
//   (input1 is zero there, and so is the term), and input1 at (u, v): the
//   halo's origin is the step's last displacement (a0 + disp_rows - 1,
//   b0 + disp_cols - 1), and pixel q, displacement (a0 + al, b0 + bl) read
//   tile row row + (q + disp_rows - 1 - al)*P, column
//   lane + (disp_cols - 1 - bl)*step_w.
enum class BackwardTarget { kInput1, kInput2 };

// Splits a plane index of the staged G into its displacement (al, bl):
// d = al * disp_cols + bl with al < kDispRows, so a few subtractions.
__device__ __forceinline__ void split_displacement(
    int d,
    int disp_cols,
    int& al,
    int& bl) {
  al = 0;
  bl = d;
  while (bl >= disp_cols) {
    bl -= disp_cols;
    ++al;
  }
}

// Stages G for displacements (a0 + al, b0 + bl), al < na, bl < nb (zero
// planes past them); see BackwardTarget for the positions.
template <
    BackwardTarget target,
    typename scalar_t,
    typename index_t,
    typename opmath_t>
__device__ __forceinline__ void stage_grad_output(
    opmath_t* dst,
    const TensorInfo<const scalar_t, index_t>& grad_output,
    const CorrelationGeometry<index_t>& geo,
    const BackwardPlan& plan,
    const BackwardTile<index_t>& t,
    index_t a0,
    index_t b0,
    int na,
    int nb) {
  const index_t sgc = grad_output.strides[1];
  const index_t sgh = grad_output.strides[2], sgw = grad_output.strides[3];
  // (y + pad_h, x + pad_w) is a valid output position for every pixel
  // (y, x) of the image.
  const scalar_t* grad_base = grad_output.data + t.n * grad_output.strides[0] +
      (t.group * geo.displacements) * sgc + geo.pad_h * sgh + geo.pad_w * sgw;
  stage_box(
      dst,
      plan.grad_box,
      plan.grad_box.planes,
      [&](int d, int r, int x) -> opmath_t {
        int al, bl;
        split_displacement(d, plan.disp_cols, al, bl);
        if (al >= na || bl >= nb) {
          return opmath_t(0);
        }
        const index_t a = a0 + al, b = b0 + bl;
        index_t y = t.y0 + r, xx = t.x0 + x;
        if constexpr (target == BackwardTarget::kInput2) {
          y -= geo.disp_min_h + a * geo.disp_step_h;
          xx -= geo.disp_min_w + b * geo.disp_step_w;
        }
        if (!inside(y, xx, geo.height, geo.width)) {
          return opmath_t(0);
        }
        return static_cast<opmath_t>(
            grad_base
                [displacement_channel(geo, a, b) * sgc + y * sgh + xx * sgw]);
      });
}

template <typename scalar_t, typename index_t, BackwardTarget target>
C10_LAUNCH_BOUNDS_1(kMaxThreads)
__global__ void correlation_backward_tiled_kernel(
    TensorInfo<scalar_t, index_t> grad_input,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> displaced,
    const CorrelationGeometry<index_t> geo,
    const BackwardPlan plan,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr bool kInput2 = target == BackwardTarget::kInput2;
  opmath_t* grad_tile = dynamic_shared_memory<opmath_t>();
  opmath_t* halo =
      grad_tile + plan.disp_rows * plan.disp_cols * plan.grad_stride;

  const auto t = backward_tile(geo, plan);
  const int P = plan.row_phases;
  const int block_channels = plan.channel_groups * kChannels;
  const bool active = t.channel_group < plan.channel_groups;
  const int step_w = static_cast<int>(geo.disp_step_w);
  const index_t c_first = t.group * geo.channels_per_group + t.c0;
  const index_t channels_left = geo.channels_per_group - t.c0;
  // Register k of a channel holds halo row halo_row + k*P. For grad_input1,
  // k past kRows + na - 2 is unused; for grad_input2, k below kDispRows - na.
  const int halo_row =
      kInput2 ? t.row - (kDispRows - plan.disp_rows) * P : t.row;

  opmath_t acc[kRows][kChannels];
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
#pragma unroll
    for (int cb = 0; cb < kChannels; ++cb) {
      acc[q][cb] = opmath_t(0);
    }
  }

  for (index_t a0 = 0; a0 < geo.disp_count_h; a0 += plan.disp_rows) {
    const int na = static_cast<int>(
        std::min<index_t>(plan.disp_rows, geo.disp_count_h - a0));
    const index_t halo_y = kInput2
        ? t.y0 - geo.disp_min_h - (a0 + plan.disp_rows - 1) * geo.disp_step_h
        : t.y0 + geo.disp_min_h + a0 * geo.disp_step_h;
    for (index_t b0 = 0; b0 < geo.disp_count_w; b0 += plan.disp_cols) {
      const int nb = static_cast<int>(
          std::min<index_t>(plan.disp_cols, geo.disp_count_w - b0));
      const index_t halo_x = kInput2
          ? t.x0 - geo.disp_min_w - (b0 + plan.disp_cols - 1) * geo.disp_step_w
          : t.x0 + geo.disp_min_w + b0 * geo.disp_step_w;
      // The previous step must be consumed before it is overwritten.
      __syncthreads();
      stage_grad_output<target>(
          grad_tile, grad_output, geo, plan, t, a0, b0, na, nb);
      stage_image_tile(
          halo,
          plan.halo_box,
          block_channels,
          displaced,
          geo,
          t.n,
          c_first,
          channels_left,
          halo_y,
          halo_x);
      __syncthreads();
      if (!active) {
        continue;
      }
      for (int bl = 0; bl < nb; ++bl) {
        // gv[q][al]: G of pixel q and displacement (a0 + al, b0 + bl).
        opmath_t gv[kRows][kDispRows];
#pragma unroll
        for (int al = 0; al < kDispRows; ++al) {
          const opmath_t* g = grad_tile +
              (al * plan.disp_cols + bl) * plan.grad_stride + t.row * kTileW +
              t.lane;
#pragma unroll
          for (int q = 0; q < kRows; ++q) {
            gv[q][al] = al < na ? g[q * P * kTileW] : opmath_t(0);
          }
        }
        const int col =
            (kInput2 ? plan.disp_cols - 1 - bl : bl) * step_w + t.lane;
#pragma unroll
        for (int cb = 0; cb < kChannels; ++cb) {
          const opmath_t* v = halo +
              (t.channel_group * kChannels + cb) * plan.halo_stride + col;
          opmath_t vd[kRows + kDispRows - 1];
#pragma unroll
          for (int k = 0; k < kRows + kDispRows - 1; ++k) {
            const bool used =
                kInput2 ? k >= kDispRows - na : k < kRows + na - 1;
            vd[k] = used ? v[(halo_row + k * P) * plan.halo_cols] : opmath_t(0);
          }
#pragma unroll
          for (int q = 0; q < kRows; ++q) {
#pragma unroll
            for (int al = 0; al < kDispRows; ++al) {
              // Guarded rather than multiplied by a zero gv, so that an
              // inf in a staged value cannot turn into a NaN.
              if (al < na) {
                acc[q][cb] +=
                    gv[q][al] * vd[kInput2 ? q + kDispRows - 1 - al : q + al];
              }
            }
          }
        }
      }
    }
  }
  store_grad_tile(grad_input, geo, plan, t, acc, scale);
}

// Picks the backward tiling, or returns false when the configuration needs
// the generic kernels. Warps are spent on channels first (each staged G
// value is reused by every channel of the block), then on pixel rows; the
// shared memory then bounds the displacement columns per step.
inline bool plan_backward(
    const CorrelationParams& p,
    int64_t elem_size,
    BackwardPlan& plan) {
  const int64_t P = tiled_row_phases(p);
  if (P == 0) {
    return false;
  }
  const int64_t step_w = effective_step(p.disp_count_w, p.disp_step_w);
  const int64_t Kx = p.disp_count_w;
  const int64_t disp_rows = std::min<int64_t>(kDispRows, p.disp_count_h);
  const int64_t budget = kSharedMemoryBytes / elem_size;
  const int64_t cpg = std::max<int64_t>(p.channels_per_group(), 1);
  const int64_t max_row_groups = ceil_div(p.height, kRows * P);

  // Returns the shared-memory elements of a candidate.
  auto footprint =
      [&](int64_t channel_groups, int64_t row_groups, int64_t disp_cols) {
        const int64_t tile_h = kRows * P * row_groups;
        const int64_t halo_rows = tile_h + (disp_rows - 1) * P;
        const int64_t halo_cols = kTileW + (disp_cols - 1) * step_w;
        return disp_rows * disp_cols * odd(tile_h * kTileW) +
            channel_groups * kChannels * odd(halo_rows * halo_cols);
      };

  int64_t best_cg = 0, best_rg = 0, best_cols = 0;
  // First choice: as many channel warps as useful with at least
  // min(Kx, 4) displacement columns per step.
  const int64_t wanted_cols = std::min<int64_t>(Kx, 4);
  for (int64_t cg = std::min<int64_t>(kMaxWarps / P, ceil_div(cpg, kChannels));
       cg >= 1 && best_cg == 0;
       --cg) {
    const int64_t rg_max =
        std::clamp<int64_t>(kMaxWarps / (P * cg), 1, max_row_groups);
    for (int64_t rg = rg_max; rg >= 1 && best_cg == 0; --rg) {
      for (int64_t cols = std::min<int64_t>(Kx, 8); cols >= wanted_cols;
           --cols) {
        if (footprint(cg, rg, cols) <= budget) {
          best_cg = cg, best_rg = rg, best_cols = cols;
          break;
        }
      }
    }
  }
  // Fallback: one channel warp, one row group, fewer columns.
  for (int64_t cols = wanted_cols; cols >= 1 && best_cg == 0; --cols) {
    if (footprint(1, 1, cols) <= budget) {
      best_cg = 1, best_rg = 1, best_cols = cols;
    }
  }
  if (best_cg == 0) {
    return false;
  }
  // Even out the column steps (e.g. 9 columns as 5 + 4 rather than 8 + 1).
  best_cols = ceil_div(Kx, ceil_div(Kx, best_cols));

  const int64_t tile_h = kRows * P * best_rg;
  const int64_t halo_rows = tile_h + (disp_rows - 1) * P;
  const int64_t halo_cols = kTileW + (best_cols - 1) * step_w;
  plan.row_phases = static_cast<int>(P);
  plan.row_groups = static_cast<int>(best_rg);
  plan.channel_groups = static_cast<int>(best_cg);
  plan.disp_rows = static_cast<int>(disp_rows);
  plan.disp_cols = static_cast<int>(best_cols);
  plan.tile_h = static_cast<int>(tile_h);
  plan.halo_rows = static_cast<int>(halo_rows);
  plan.halo_cols = static_cast<int>(halo_cols);
  plan.halo_stride = static_cast<int>(odd(halo_rows * halo_cols));
  plan.grad_stride = static_cast<int>(odd(tile_h * kTileW));
  plan.threads = static_cast<int>(P * best_rg * best_cg * kWarpSize);
  plan.tiles_x = ceil_div(p.width, kTileW);
  plan.tiles_y = ceil_div(p.height, tile_h);
  plan.channel_blocks = ceil_div(cpg, best_cg * kChannels);
  plan.shared_bytes = footprint(best_cg, best_rg, best_cols) * elem_size;
  plan.blocks =
      plan.tiles_x * plan.tiles_y * plan.channel_blocks * p.batch * p.groups;
  return plan.blocks <= std::numeric_limits<int32_t>::max();
}

// ---------------------------------------------------------------------------
// Generic kernels: one thread per element, any kernel size, stride and
// dilation.

template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_forward_generic_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> output,
    TensorInfo<const scalar_t, index_t> input1,
    TensorInfo<const scalar_t, index_t> input2,
    const CorrelationGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t out_channels = geo.groups * geo.displacements;
  const index_t s1n = input1.strides[0], s1c = input1.strides[1];
  const index_t s1h = input1.strides[2], s1w = input1.strides[3];
  const index_t s2n = input2.strides[0], s2c = input2.strides[1];
  const index_t s2h = input2.strides[2], s2w = input2.strides[3];
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    const index_t ox = index % geo.out_w;
    const index_t oy = (index / geo.out_w) % geo.out_h;
    const index_t channel = (index / (geo.out_w * geo.out_h)) % out_channels;
    const index_t n = index / (geo.out_w * geo.out_h * out_channels);
    const index_t group = channel / geo.displacements;
    const index_t d = channel % geo.displacements;
    // The displacement numbers of channel d (displacement_channel inverted).
    const index_t a = displacement_position(
        d / geo.disp_count_w, geo.disp_count_h, geo.disp_descending_h);
    const index_t b = displacement_position(
        d % geo.disp_count_w, geo.disp_count_w, geo.disp_descending_w);
    const index_t dy = geo.disp_min_h + a * geo.disp_step_h;
    const index_t dx = geo.disp_min_w + b * geo.disp_step_w;
    const index_t c_begin = group * geo.channels_per_group;
    const scalar_t* base1 = input1.data + n * s1n + c_begin * s1c;
    const scalar_t* base2 = input2.data + n * s2n + c_begin * s2c;

    opmath_t acc = 0;
    for (index_t i = 0; i < geo.kernel_h; ++i) {
      const index_t y = oy * geo.stride_h - geo.pad_h + i * geo.dilation_h;
      if (y < 0 || y >= geo.height || y + dy < 0 || y + dy >= geo.height) {
        continue;
      }
      for (index_t j = 0; j < geo.kernel_w; ++j) {
        const index_t x = ox * geo.stride_w - geo.pad_w + j * geo.dilation_w;
        if (x < 0 || x >= geo.width || x + dx < 0 || x + dx >= geo.width) {
          continue;
        }
        const scalar_t* p1 = base1 + y * s1h + x * s1w;
        const scalar_t* p2 = base2 + (y + dy) * s2h + (x + dx) * s2w;
        for (index_t c = 0; c < geo.channels_per_group; ++c) {
          acc += static_cast<opmath_t>(p1[c * s1c]) *
              static_cast<opmath_t>(p2[c * s2c]);
        }
      }
    }
    element(output, n, channel, oy, ox) = static_cast<scalar_t>(acc * scale);
  }
}

// Output rows whose kernel row i covers input row y: oy*stride - pad + i*dil
// = y. Calls f(oy) for each valid one (likewise for columns).
template <typename index_t, typename F>
__device__ __forceinline__ void for_each_window(
    index_t pos,
    index_t pad,
    index_t kernel,
    index_t dilation,
    index_t stride,
    index_t out_size,
    const F& f) {
  for (index_t i = 0; i < kernel; ++i) {
    const index_t shifted = pos + pad - i * dilation;
    if (shifted < 0) {
      break;  // decreasing in i
    }
    if (shifted % stride != 0) {
      continue;
    }
    const index_t o = shifted / stride;
    if (o < out_size) {
      f(o);
    }
  }
}

// The windows (oy, ox) whose kernel covers input pixel (y, x): calls
// f(oy, ox) for each, row by row.
template <typename index_t, typename F>
__device__ __forceinline__ void for_each_covering_window(
    const CorrelationGeometry<index_t>& geo,
    index_t y,
    index_t x,
    const F& f) {
  for_each_window(
      y,
      geo.pad_h,
      geo.kernel_h,
      geo.dilation_h,
      geo.stride_h,
      geo.out_h,
      [&](index_t oy) {
        for_each_window(
            x,
            geo.pad_w,
            geo.kernel_w,
            geo.dilation_w,
            geo.stride_w,
            geo.out_w,
            [&](index_t ox) { f(oy, ox); });
      });
}

// The sums of the generic backward kernels for gradient element (n, c, y, x),
// before the scale: `grad` is G of image n from the first channel of c's
// group on, `in2` (`in1`) channel c of image n of input2 (input1).
//
// grad_input1[c, y, x]: the sum over the windows (oy, ox) whose kernel covers
// (y, x) and over the displacements of G[d, oy, ox] * in2[c, y + dy, x + dx].
template <typename scalar_t, typename index_t>
__device__ __forceinline__ at::opmath_type<scalar_t> grad_input1_generic_sum(
    const TensorInfo<const scalar_t, index_t>& grad_output,
    const scalar_t* grad,
    const TensorInfo<const scalar_t, index_t>& input2,
    const scalar_t* in2,
    const CorrelationGeometry<index_t>& geo,
    index_t y,
    index_t x) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t sgc = grad_output.strides[1];
  opmath_t acc = 0;
  for_each_covering_window(geo, y, x, [&](index_t oy, index_t ox) {
    const scalar_t* g =
        grad + oy * grad_output.strides[2] + ox * grad_output.strides[3];
    for (index_t a = 0; a < geo.disp_count_h; ++a) {
      const index_t y2 = y + geo.disp_min_h + a * geo.disp_step_h;
      if (y2 < 0 || y2 >= geo.height) {
        continue;
      }
      for (index_t b = 0; b < geo.disp_count_w; ++b) {
        const index_t x2 = x + geo.disp_min_w + b * geo.disp_step_w;
        if (x2 < 0 || x2 >= geo.width) {
          continue;
        }
        acc += static_cast<opmath_t>(g[displacement_channel(geo, a, b) * sgc]) *
            static_cast<opmath_t>(
                   in2[y2 * input2.strides[2] + x2 * input2.strides[3]]);
      }
    }
  });
  return acc;
}

// grad_input2[c, y, x]: the sum over the displacements, with (u, v) =
// (y - dy, x - dx) in the image, of in1[c, u, v] times the sum of
// G[d, oy, ox] over the windows (oy, ox) whose kernel covers (u, v).
template <typename scalar_t, typename index_t>
__device__ __forceinline__ at::opmath_type<scalar_t> grad_input2_generic_sum(
    const TensorInfo<const scalar_t, index_t>& grad_output,
    const scalar_t* grad,
    const TensorInfo<const scalar_t, index_t>& input1,
    const scalar_t* in1,
    const CorrelationGeometry<index_t>& geo,
    index_t y,
    index_t x) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t sgc = grad_output.strides[1];
  opmath_t acc = 0;
  for (index_t a = 0; a < geo.disp_count_h; ++a) {
    const index_t u = y - geo.disp_min_h - a * geo.disp_step_h;
    if (u < 0 || u >= geo.height) {
      continue;
    }
    for (index_t b = 0; b < geo.disp_count_w; ++b) {
      const index_t v = x - geo.disp_min_w - b * geo.disp_step_w;
      if (v < 0 || v >= geo.width) {
        continue;
      }
      const scalar_t* g = grad + displacement_channel(geo, a, b) * sgc;
      opmath_t grad_sum = 0;
      for_each_covering_window(geo, u, v, [&](index_t oy, index_t ox) {
        grad_sum += static_cast<opmath_t>(
            g[oy * grad_output.strides[2] + ox * grad_output.strides[3]]);
      });
      acc += grad_sum *
          static_cast<opmath_t>(
                 in1[u * input1.strides[2] + v * input1.strides[3]]);
    }
  }
  return acc;
}

// The generic backward kernels: one thread per element (n, c, y, x) of the
// gradient of one input, gathered from G and the other input (`displaced`,
// as in the tiled kernel: input2 for grad_input1, input1 for grad_input2).
template <BackwardTarget target, typename scalar_t, typename index_t>
__device__ __forceinline__ void backward_generic(
    const int64_t count,
    const TensorInfo<scalar_t, index_t>& grad_input,
    const TensorInfo<const scalar_t, index_t>& grad_output,
    const TensorInfo<const scalar_t, index_t>& displaced,
    const CorrelationGeometry<index_t>& geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t channels = geo.groups * geo.channels_per_group;
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    const index_t x = index % geo.width;
    const index_t y = (index / geo.width) % geo.height;
    const index_t c = (index / (geo.width * geo.height)) % channels;
    const index_t n = index / (geo.width * geo.height * channels);
    const index_t group = c / geo.channels_per_group;
    const scalar_t* other = channel_plane(displaced, n, c);
    const scalar_t* grad =
        channel_plane(grad_output, n, group * geo.displacements);
    opmath_t acc;
    if constexpr (target == BackwardTarget::kInput1) {
      acc = grad_input1_generic_sum(
          grad_output, grad, displaced, other, geo, y, x);
    } else {
      acc = grad_input2_generic_sum(
          grad_output, grad, displaced, other, geo, y, x);
    }
    element(grad_input, n, c, y, x) = static_cast<scalar_t>(acc * scale);
  }
}

template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_backward_input1_generic_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> grad_input1,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> input2,
    const CorrelationGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  backward_generic<BackwardTarget::kInput1>(
      count, grad_input1, grad_output, input2, geo, scale);
}

template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_backward_input2_generic_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> grad_input2,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> input1,
    const CorrelationGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  backward_generic<BackwardTarget::kInput2>(
      count, grad_input2, grad_output, input1, geo, scale);
}

// ---------------------------------------------------------------------------
// Launchers.

inline int generic_blocks(int64_t count) {
  // The kernels loop over the elements, so the grid can be capped. The loop
  // step blockDim.x * gridDim.x is computed in 32-bit unsigned arithmetic
  // (CUDA_KERNEL_LOOP_TYPE), so the cap keeps it at or below 2^31.
  return static_cast<int>(std::min<int64_t>(
      ceil_div(count, kGenericThreads),
      std::numeric_limits<int32_t>::max() / kGenericThreads));
}

template <typename scalar_t, typename index_t, typename Launch>
void launch_correlation_forward(
    const Launch& launch,
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const CorrelationGeometry<index_t> geo(p);
  const auto scale = static_cast<opmath_t>(p.scale);
  auto out_info = getTensorInfo<scalar_t, index_t>(output);
  auto in1_info = getTensorInfo<const scalar_t, index_t>(input1);
  auto in2_info = getTensorInfo<const scalar_t, index_t>(input2);

  ForwardPlan plan;
  if (plan_forward(p, sizeof(opmath_t), plan)) {
    plan.box1 = make_box(
        plan.chunk_channels,
        plan.tile_h,
        kTileW,
        plan.tile_stride,
        planes_adjacent(input1));
    plan.box2 = make_box(
        plan.chunk_channels,
        plan.halo_rows,
        plan.halo_cols,
        plan.halo_stride,
        planes_adjacent(input2));
    launch(
        &correlation_forward_tiled_kernel<scalar_t, index_t>,
        plan.blocks,
        plan.threads,
        plan.shared_bytes,
        out_info,
        in1_info,
        in2_info,
        geo,
        plan,
        scale);
    return;
  }
  const int64_t count = output.numel();
  launch(
      &correlation_forward_generic_kernel<scalar_t, index_t>,
      generic_blocks(count),
      kGenericThreads,
      0,
      count,
      out_info,
      in1_info,
      in2_info,
      geo,
      scale);
}

// Launches the kernel of one input's gradient (`target`), which reads G and
// the other input, `displaced`: the tiled kernel when there is a `tiled` plan
// (its halo box is set here, for the displaced input's layout), the generic
// one otherwise.
template <
    BackwardTarget target,
    typename scalar_t,
    typename index_t,
    typename Launch>
void launch_input_gradient(
    const Launch& launch,
    const TensorBase& grad_input,
    const TensorInfo<const scalar_t, index_t>& grad_info,
    const TensorBase& displaced,
    const CorrelationGeometry<index_t>& geo,
    const BackwardPlan* tiled,
    const at::opmath_type<scalar_t> scale) {
  if (!grad_input.defined() || grad_input.numel() == 0) {
    return;
  }
  auto grad_input_info = getTensorInfo<scalar_t, index_t>(grad_input);
  auto displaced_info = getTensorInfo<const scalar_t, index_t>(displaced);
  if (tiled != nullptr) {
    BackwardPlan plan = *tiled;
    plan.halo_box = make_box(
        plan.channel_groups * kChannels,
        plan.halo_rows,
        plan.halo_cols,
        plan.halo_stride,
        planes_adjacent(displaced));
    launch(
        &correlation_backward_tiled_kernel<scalar_t, index_t, target>,
        plan.blocks,
        plan.threads,
        plan.shared_bytes,
        grad_input_info,
        grad_info,
        displaced_info,
        geo,
        plan,
        scale);
    return;
  }
  const int64_t count = grad_input.numel();
  launch(
      target == BackwardTarget::kInput1
          ? &correlation_backward_input1_generic_kernel<scalar_t, index_t>
          : &correlation_backward_input2_generic_kernel<scalar_t, index_t>,
      generic_blocks(count),
      kGenericThreads,
      0,
      count,
      grad_input_info,
      grad_info,
      displaced_info,
      geo,
      scale);
}

template <typename scalar_t, typename index_t, typename Launch>
void launch_correlation_backward(
    const Launch& launch,
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const CorrelationGeometry<index_t> geo(p);
  const auto scale = static_cast<opmath_t>(p.scale);
  const auto grad_info = getTensorInfo<const scalar_t, index_t>(grad_output);

  BackwardPlan plan;
  const BackwardPlan* tiled = nullptr;
  if (plan_backward(p, sizeof(opmath_t), plan)) {
    plan.grad_box = make_box(
        plan.disp_rows * plan.disp_cols,
        plan.tile_h,
        kTileW,
        plan.grad_stride,
        planes_adjacent(grad_output));
    tiled = &plan;
  }
  launch_input_gradient<BackwardTarget::kInput1, scalar_t>(
      launch, grad_input1, grad_info, input2, geo, tiled, scale);
  launch_input_gradient<BackwardTarget::kInput2, scalar_t>(
      launch, grad_input2, grad_info, input1, geo, tiled, scale);
}

// Whether the 32-bit kernels can serve a call: every defined tensor has at
// most max_elem elements within reach of its strides (canUse32BitIndexMath)
// and the geometry's coordinates fit.
inline bool use_32bit_indexing(
    const CorrelationParams& p,
    std::initializer_list<const TensorBase*> tensors,
    int64_t max_elem = std::numeric_limits<int32_t>::max()) {
  for (const TensorBase* t : tensors) {
    if (t->defined() && !canUse32BitIndexMath(*t, max_elem)) {
      return false;
    }
  }
  return geometry_fits_int32(p);
}

// Calls f(index_t()) with the kernels' index type: int when use_32bit,
// int64_t otherwise.
template <typename F>
void with_index_type(bool use_32bit, const F& f) {
  if (use_32bit) {
    f(int());
  } else {
    f(int64_t());
  }
}

// The forward on batched 4D tensors, in 32- or 64-bit indexing.
template <typename Launch>
void run_correlation_forward(
    const Launch& launch,
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params,
    int64_t max_elem_32bit = std::numeric_limits<int32_t>::max()) {
  if (output.numel() == 0) {
    return;
  }
  const bool use_32bit =
      use_32bit_indexing(params, {&output, &input1, &input2}, max_elem_32bit);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_cuda", [&] {
        with_index_type(use_32bit, [&](auto index) {
          launch_correlation_forward<scalar_t, decltype(index)>(
              launch, output, input1, input2, params);
        });
      });
}

// The backward on batched 4D tensors; an undefined gradient is skipped.
template <typename Launch>
void run_correlation_backward(
    const Launch& launch,
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params,
    int64_t max_elem_32bit = std::numeric_limits<int32_t>::max()) {
  if (!grad_input1.defined() && !grad_input2.defined()) {
    return;
  }
  const bool use_32bit = use_32bit_indexing(
      params,
      {&grad_input1, &grad_input2, &grad_output, &input1, &input2},
      max_elem_32bit);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_backward_cuda", [&] {
        with_index_type(use_32bit, [&](auto index) {
          launch_correlation_backward<scalar_t, decltype(index)>(
              launch,
              grad_input1,
              grad_input2,
              grad_output,
              input1,
              input2,
              params);
        });
      });
}

}  // namespace at::native::correlation_cuda
