#pragma once

// The device code of the CUDA correlation kernels with an offset (input2
// sampled bilinearly at per-location fractional positions): the kernels and
// their launch sequence, written like SpatialCorrelation.cuh (whose helpers
// they use) and started through the same `launch` callable supplied by the
// includer. The backward also takes a `workspace` callable,
//
//   workspace(bytes) -> TensorBase
//
// which returns uninitialized device memory of at least `bytes` bytes that
// stays valid (stream-ordered) for the kernels launched afterwards.
// SpatialCorrelation.cu supplies both for a CUDA stream. Like the integer
// kernels, these use only the grid and block indices, dynamic shared memory
// and __syncthreads: no warp-level primitives, atomics or static shared
// memory.

#include <ATen/NumericUtils.h>

#include <ATen/native/cuda/SpatialCorrelation.cuh>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

// NOTE [ Correlation CUDA Offset Kernels ]
//
// With an offset, output location l = (n, oy, ox) samples input2 at
//   (y1 + dy_a + v, x1 + dx_b + u),  (u, v) = offset[n, :, oy, ox],
//   (y1, x1) = (oy*stride_h - pad_h + i*dil_h, ox*stride_w - pad_w + j*dil_w)
// with bilinear interpolation (NOTE [ correlation Native Functions ]). Every
// sample of l has the same fraction (fx, fy) = (u - floor(u), v - floor(v)),
// so all of them share the four weights w_t, t = (ty, tx) in {0, 1}^2, and
// read the integer taps (y1 + dy_a + by + ty, x1 + dx_b + bx + tx) with
// (by, bx) = (floor(v), floor(u)): everything below works on those integer
// positions and applies the weights per location.
//
// * Forward: one thread per location, group, displacement row a and run of
//   kOffsetDispCols consecutive displacement columns b. It accumulates the
//   integer-position dot products D[ty][k] of input1 with input2's taps over
//   the group's channels and the kernel window, then mixes them:
//   out = scale * sum_t w_t * D[t]. With a unit horizontal displacement step
//   the right taps of column b are the left taps of column b + 1, so a run
//   of R columns needs R + 1 tap columns instead of 2R.
// * grad_offset: d out / du mixes the same D[t] with d w_t / du. A thread
//   per location, group and displacement row (the same dot products, over
//   all columns) writes its partial sums, and a second kernel adds the
//   partials of each location in a fixed order: a deterministic reduction
//   with more parallelism than one thread per location.
// * grad_input1: a gather like the integer generic kernel's. Input1 pixel
//   (y, x) is read by the locations whose kernel window covers it (the same
//   set as without offset); one thread per pixel and run of kGatherChannels
//   channels sums, over those locations and the displacements, G times the
//   location's bilinear sample of input2.
// * grad_input2: the input2 pixels a location touches depend on its offset,
//   so they are not known from the pixel alone, and a scatter would need
//   floating-point atomics (nondeterministic sums). The touched pixels are
//   however a fixed box around the location's shifted origin
//   P = (oy*stride_h - pad_h + by, ox*stride_w - pad_w + bx): rows
//   P_y + [box_top, box_bottom], box_top = disp_min_h, box_bottom =
//   (kernel_h - 1)*dil_h + disp_max_h + 1 (likewise columns). So the
//   locations are bucketed by P (one bucket per origin whose box meets
//   input2; locations with a non-finite offset or whose box misses input2
//   go to a sentinel bucket after all others) and sorted by (bucket,
//   location) with a bitonic sort; a binary search gives the first sorted
//   entry of every bucket. Then one thread per input2 pixel and run of
//   channels gathers: for each box row, the buckets of the origins that
//   reach the pixel are one contiguous run of sorted entries, visited in
//   order. The keys are unique, so the sorted order, and with it every sum,
//   is independent of the thread schedule: deterministic without atomics.
//   Work: a sort of N*H_out*W_out keys, then per gradient element one run
//   per box row and the locations whose origin lies in the box (those whose
//   samples can reach it), whatever the offsets' spread. The alternatives
//   were worse: a gather over the neighbourhood the offsets' range allows
//   degrades to all locations once the offsets are spread out, and
//   per-location coefficient planes would still need this search to be
//   gathered deterministically.
//
// Workspace (the includer's `workspace`): grad_offset's partials, 2 * groups
// * Ky opmath_t values per location; grad_input2's sort keys, 16 bytes per
// location (padded to a power of two), and bucket starts, 8 bytes per
// origin bucket ((H2 + box height - 1) * (W2 + box width - 1) per image).
//
// Non-finite offsets: the forward writes NaN for every output of the
// location, the grad_offset reduction NaN for both components, and the
// location contributes nothing to the input gradients. Finite offsets so
// large that every tap is outside input2 are clamped, before the integer
// conversion, to a position that is still outside (OffsetGeometry::limit_h,
// limit_w), so the conversion cannot overflow.

namespace at::native::correlation_cuda {

// Displacement columns per forward / grad_offset thread, and the integer
// tap columns they read at most (2 per column; R + 1 with a unit step).
constexpr int kOffsetDispCols = 4;
constexpr int kOffsetTapCols = 2 * kOffsetDispCols;
// Channels per thread of the input-gradient gathers (within one group).
constexpr int kGatherChannels = 4;
// Keys per block of the shared-memory bitonic stages (one pair per thread).
constexpr int64_t kSortBlock = 2 * kGenericThreads;

// Sort key of a location for the grad_input2 gather: its origin bucket, then
// the location (n*H_out + oy)*W_out + ox, which makes every key unique.
struct OffsetSortKey {
  int64_t bucket;
  int64_t location;
};

__device__ __forceinline__ bool sort_key_less(
    const OffsetSortKey& a,
    const OffsetSortKey& b) {
  return a.bucket < b.bucket ||
      (a.bucket == b.bucket && a.location < b.location);
}

// CorrelationGeometry plus input2's size, the clamp bounds of the offset's
// integer part and the box of input2 pixels around a location's shifted
// origin that its samples touch (inclusive bounds), with the bucket grid of
// the origins whose box meets input2: bucket_rows = height2 + box_bottom -
// box_top origins per column (likewise rows).
template <typename index_t>
struct OffsetGeometry : CorrelationGeometry<index_t> {
  index_t height2, width2;
  index_t limit_h, limit_w;
  index_t box_top, box_bottom, box_left, box_right;
  index_t bucket_rows, bucket_cols;

  explicit OffsetGeometry(const CorrelationParams& p)
      : CorrelationGeometry<index_t>(p),
        height2(p.height2),
        width2(p.width2),
        limit_h(offset_limit(
            p.height,
            p.height2,
            p.pad_h,
            p.kernel_h * p.dilation_h,
            p.disp_min_h,
            p.disp_max_h())),
        limit_w(offset_limit(
            p.width,
            p.width2,
            p.pad_w,
            p.kernel_w * p.dilation_w,
            p.disp_min_w,
            p.disp_max_w())),
        box_top(p.disp_min_h),
        box_bottom((p.kernel_h - 1) * p.dilation_h + p.disp_max_h() + 1),
        box_left(p.disp_min_w),
        box_right((p.kernel_w - 1) * p.dilation_w + p.disp_max_w() + 1),
        bucket_rows(p.height2 + box_bottom - box_top),
        bucket_cols(p.width2 + box_right - box_left) {}

  // Beyond this integer shift from the unshifted window every tap is outside
  // input2 (input1's padded extent, input2's, the window and the
  // displacements), with slack for the rounding of the bound to opmath_t.
  static int64_t offset_limit(
      int64_t size1,
      int64_t size2,
      int64_t pad,
      int64_t window,
      int64_t disp_min,
      int64_t disp_max) {
    return size1 + size2 + 2 * pad + window + std::abs(disp_min) +
        std::abs(disp_max) + 64;
  }
};

// Whether the offset kernels' coordinates fit the 32-bit path: those of the
// integer kernels plus input2's size, the clamped offsets (a tap coordinate
// adds one to a window coordinate and a displacement, each bounded the same
// way) and the bucket grid.
inline bool offset_geometry_fits_int32(const CorrelationParams& p) {
  constexpr int64_t limit = std::numeric_limits<int32_t>::max() / 8;
  const OffsetGeometry<int64_t> geo(p);
  const int64_t values[] = {
      p.height2,
      p.width2,
      geo.limit_h,
      geo.limit_w,
      geo.bucket_rows,
      geo.bucket_cols};
  return geometry_fits_int32(p) &&
      std::all_of(std::begin(values), std::end(values), [](int64_t v) {
           return v >= 0 && v <= limit;
         });
}

// The bilinear sample of one location: whether its offset is finite, the
// integer shift (by, bx) of its (0, 0) taps and the fractions (fy, fx).
template <typename index_t, typename opmath_t>
struct OffsetSample {
  bool finite;
  index_t base_y, base_x;
  opmath_t fy, fx;

  __device__ __forceinline__ opmath_t weight(int ty, int tx) const {
    return (ty ? fy : 1 - fy) * (tx ? fx : 1 - fx);
  }
  // d weight / du and d weight / dv (right-sided at integer positions).
  __device__ __forceinline__ opmath_t weight_du(int ty, int tx) const {
    return (ty ? fy : 1 - fy) * (tx ? opmath_t(1) : opmath_t(-1));
  }
  __device__ __forceinline__ opmath_t weight_dv(int ty, int tx) const {
    return (ty ? opmath_t(1) : opmath_t(-1)) * (tx ? fx : 1 - fx);
  }
};

// floor(value), clamped to +-limit (up to the rounding of limit to opmath_t,
// which the 32-bit bounds leave room for), and value - floor(value).
template <typename index_t, typename opmath_t>
__device__ __forceinline__ void split_offset(
    opmath_t value,
    index_t limit,
    index_t& whole,
    opmath_t& fraction) {
  const opmath_t floor_value = ::floor(value);
  fraction = value - floor_value;
  const opmath_t bound = static_cast<opmath_t>(limit);
  whole = floor_value < -bound ? -limit
      : floor_value > bound    ? limit
                               : static_cast<index_t>(floor_value);
}

template <typename scalar_t, typename index_t>
__device__ __forceinline__ OffsetSample<index_t, at::opmath_type<scalar_t>>
offset_sample(
    const TensorInfo<const scalar_t, index_t>& offset,
    const OffsetGeometry<index_t>& geo,
    index_t n,
    index_t oy,
    index_t ox) {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* p = offset.data + n * offset.strides[0] +
      oy * offset.strides[2] + ox * offset.strides[3];
  const opmath_t u = static_cast<opmath_t>(p[0]);
  const opmath_t v = static_cast<opmath_t>(p[offset.strides[1]]);
  OffsetSample<index_t, opmath_t> s;
  s.finite =
      !(at::_isnan(u) || at::_isinf(u) || at::_isnan(v) || at::_isinf(v));
  s.base_y = s.base_x = 0;
  s.fy = s.fx = 0;
  if (s.finite) {
    split_offset(v, geo.limit_h, s.base_y, s.fy);
    split_offset(u, geo.limit_w, s.base_x, s.fx);
  }
  return s;
}

// Tap column k of a run of displacement columns starting at b0, relative to
// column b0's left tap: with a unit step the run's columns share taps
// (column b reads k = b and b + 1), otherwise column b reads k = 2b, 2b + 1.
template <typename index_t>
__device__ __forceinline__ index_t
tap_column_offset(int k, bool shared_taps, index_t step_w) {
  return shared_taps ? static_cast<index_t>(k)
                     : static_cast<index_t>(k / 2) * step_w + (k % 2);
}

// The dot product of column b's tap tx among d's tap columns. Called with
// compile-time b and tx (unrolled loops), so that d stays in registers.
template <typename opmath_t>
__device__ __forceinline__ opmath_t
tap_dot(const opmath_t (&d)[kOffsetTapCols], int b, int tx, bool shared_taps) {
  return shared_taps ? d[b + tx] : d[2 * b + tx];
}

// A displacement row of one location: location (n, oy, ox), group and
// displacement row a, whose dot products a forward or grad_offset partial
// thread accumulates.
template <typename index_t>
struct OffsetRow {
  index_t n, group, oy, ox, a;
};

// d[ty][k] = sum over the kernel window and the group's channels of input1
// at (y1, x1) times input2 at tap row ty, tap column k of displacement row
// a and columns [b0, b0 + nb) of location (n, oy, ox) (zero outside either
// image).
template <typename scalar_t, typename index_t, typename opmath_t>
__device__ __forceinline__ void accumulate_offset_dots(
    opmath_t (&d)[2][kOffsetTapCols],
    const TensorInfo<const scalar_t, index_t>& input1,
    const TensorInfo<const scalar_t, index_t>& input2,
    const OffsetGeometry<index_t>& geo,
    const OffsetSample<index_t, opmath_t>& sample,
    const OffsetRow<index_t>& row,
    index_t b0,
    int nb) {
  const index_t n = row.n, oy = row.oy, ox = row.ox, a = row.a;
  const index_t c_begin = row.group * geo.channels_per_group;
#pragma unroll
  for (int ty = 0; ty < 2; ++ty) {
#pragma unroll
    for (int k = 0; k < kOffsetTapCols; ++k) {
      d[ty][k] = opmath_t(0);
    }
  }
  const bool shared_taps = geo.disp_step_w == 1;
  const int cols = shared_taps ? nb + 1 : 2 * nb;
  const index_t s1c = input1.strides[1], s1h = input1.strides[2],
                s1w = input1.strides[3];
  const index_t s2c = input2.strides[1], s2h = input2.strides[2],
                s2w = input2.strides[3];
  const scalar_t* base1 = input1.data + n * input1.strides[0] + c_begin * s1c;
  const scalar_t* base2 = input2.data + n * input2.strides[0] + c_begin * s2c;
  const index_t dy = geo.disp_min_h + a * geo.disp_step_h;
  const index_t dx0 = geo.disp_min_w + b0 * geo.disp_step_w;
  for (index_t i = 0; i < geo.kernel_h; ++i) {
    const index_t y1 = oy * geo.stride_h - geo.pad_h + i * geo.dilation_h;
    const index_t y2 = y1 + dy + sample.base_y;
    const bool row_in[2] = {
        y1 >= 0 && y1 < geo.height && y2 >= 0 && y2 < geo.height2,
        y1 >= 0 && y1 < geo.height && y2 + 1 >= 0 && y2 + 1 < geo.height2};
    if (!row_in[0] && !row_in[1]) {
      continue;
    }
    // Offsets are formed only for rows inside input2.
    const index_t row_offset[2] = {
        row_in[0] ? y2 * s2h : index_t(0),
        row_in[1] ? (y2 + 1) * s2h : index_t(0)};
    for (index_t j = 0; j < geo.kernel_w; ++j) {
      const index_t x1 = ox * geo.stride_w - geo.pad_w + j * geo.dilation_w;
      if (x1 < 0 || x1 >= geo.width) {
        continue;
      }
      const index_t x2 = x1 + dx0 + sample.base_x;
      bool col_in[kOffsetTapCols];
      index_t col_offset[kOffsetTapCols];
#pragma unroll
      for (int k = 0; k < kOffsetTapCols; ++k) {
        const index_t x =
            x2 + tap_column_offset(k, shared_taps, geo.disp_step_w);
        col_in[k] = k < cols && x >= 0 && x < geo.width2;
        col_offset[k] = col_in[k] ? x * s2w : index_t(0);
      }
      const scalar_t* p1 = base1 + y1 * s1h + x1 * s1w;
      for (index_t c = 0; c < geo.channels_per_group; ++c) {
        const opmath_t v1 = static_cast<opmath_t>(p1[c * s1c]);
        const scalar_t* plane = base2 + c * s2c;
#pragma unroll
        for (int ty = 0; ty < 2; ++ty) {
          if (!row_in[ty]) {
            continue;
          }
          const scalar_t* row = plane + row_offset[ty];
#pragma unroll
          for (int k = 0; k < kOffsetTapCols; ++k) {
            if (col_in[k]) {
              d[ty][k] += v1 * static_cast<opmath_t>(row[col_offset[k]]);
            }
          }
        }
      }
    }
  }
}

// out[n, g*D + (a, b), oy, ox] for a run of displacement columns b.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_forward_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> output,
    TensorInfo<const scalar_t, index_t> input1,
    TensorInfo<const scalar_t, index_t> input2,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t runs =
      (geo.disp_count_w + kOffsetDispCols - 1) / kOffsetDispCols;
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    index_t rest = index;
    const index_t ox = next_digit(rest, geo.out_w);
    const index_t oy = next_digit(rest, geo.out_h);
    const index_t run = next_digit(rest, runs);
    const index_t a = next_digit(rest, geo.disp_count_h);
    const index_t group = rest % geo.groups;
    const index_t n = rest / geo.groups;
    const index_t b0 = run * kOffsetDispCols;
    const int nb = static_cast<int>(std::min<index_t>(
        static_cast<index_t>(kOffsetDispCols), geo.disp_count_w - b0));

    const auto sample = offset_sample(offset, geo, n, oy, ox);
    opmath_t d[2][kOffsetTapCols];
    if (sample.finite) {
      accumulate_offset_dots(
          d, input1, input2, geo, sample, {n, group, oy, ox, a}, b0, nb);
    }
    const bool shared_taps = geo.disp_step_w == 1;
    scalar_t* out = output.data + n * output.strides[0] +
        oy * output.strides[2] + ox * output.strides[3];
#pragma unroll
    for (int b = 0; b < kOffsetDispCols; ++b) {
      if (b >= nb) {
        break;
      }
      opmath_t value = std::numeric_limits<opmath_t>::quiet_NaN();
      if (sample.finite) {
        value = 0;
#pragma unroll
        for (int ty = 0; ty < 2; ++ty) {
#pragma unroll
          for (int tx = 0; tx < 2; ++tx) {
            value += sample.weight(ty, tx) * tap_dot(d[ty], b, tx, shared_taps);
          }
        }
        value *= scale;
      }
      const index_t channel = group * geo.displacements +
          displacement_channel<index_t>(geo, a, b0 + b);
      out[channel * output.strides[1]] = static_cast<scalar_t>(value);
    }
  }
}

// Partial offset gradients: partial[(n, group, a), component, oy, ox] (in
// opmath_t, contiguous) is sum over the displacement columns of G times
// the derivative of the sample's weights mixed with the dot products.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_grad_offset_partial_kernel(
    const int64_t count,
    at::opmath_type<scalar_t>* partial,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> input1,
    TensorInfo<const scalar_t, index_t> input2,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetGeometry<index_t> geo) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t locations = static_cast<int64_t>(geo.out_h) * geo.out_w;
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    index_t rest = index;
    const index_t ox = next_digit(rest, geo.out_w);
    const index_t oy = next_digit(rest, geo.out_h);
    const index_t a = next_digit(rest, geo.disp_count_h);
    const index_t group = rest % geo.groups;
    const index_t n = rest / geo.groups;

    const auto sample = offset_sample(offset, geo, n, oy, ox);
    opmath_t du = 0;
    opmath_t dv = 0;
    if (sample.finite) {
      const bool shared_taps = geo.disp_step_w == 1;
      const scalar_t* grad = grad_output.data + n * grad_output.strides[0] +
          oy * grad_output.strides[2] + ox * grad_output.strides[3];
      for (index_t b0 = 0; b0 < geo.disp_count_w; b0 += kOffsetDispCols) {
        const int nb = static_cast<int>(std::min<index_t>(
            static_cast<index_t>(kOffsetDispCols), geo.disp_count_w - b0));
        opmath_t d[2][kOffsetTapCols];
        accumulate_offset_dots(
            d, input1, input2, geo, sample, {n, group, oy, ox, a}, b0, nb);
#pragma unroll
        for (int b = 0; b < kOffsetDispCols; ++b) {
          if (b >= nb) {
            break;
          }
          const index_t channel = group * geo.displacements +
              displacement_channel<index_t>(geo, a, b0 + b);
          const opmath_t g =
              static_cast<opmath_t>(grad[channel * grad_output.strides[1]]);
#pragma unroll
          for (int ty = 0; ty < 2; ++ty) {
#pragma unroll
            for (int tx = 0; tx < 2; ++tx) {
              const opmath_t gd = g * tap_dot(d[ty], b, tx, shared_taps);
              du += sample.weight_du(ty, tx) * gd;
              dv += sample.weight_dv(ty, tx) * gd;
            }
          }
        }
      }
    }
    // (n, group, a) of this thread is index / locations.
    const int64_t location = static_cast<int64_t>(oy) * geo.out_w + ox;
    opmath_t* dst = partial +
        (static_cast<int64_t>(index) / locations) * 2 * locations + location;
    dst[0] = du;
    dst[locations] = dv;
  }
}

// grad_offset[n, :, oy, ox] = scale * the sum of the location's
// groups * Ky partials, in order; NaN for a non-finite offset.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_grad_offset_reduce_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> grad_offset,
    const at::opmath_type<scalar_t>* partial,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t locations = static_cast<int64_t>(geo.out_h) * geo.out_w;
  const int64_t partials = static_cast<int64_t>(geo.groups) * geo.disp_count_h;
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    const index_t ox = index % geo.out_w;
    const index_t oy = (index / geo.out_w) % geo.out_h;
    const index_t n = index / (geo.out_w * geo.out_h);
    const auto sample = offset_sample(offset, geo, n, oy, ox);
    opmath_t du = std::numeric_limits<opmath_t>::quiet_NaN();
    opmath_t dv = du;
    if (sample.finite) {
      du = dv = 0;
      const opmath_t* src = partial +
          static_cast<int64_t>(n) * partials * 2 * locations +
          static_cast<int64_t>(oy) * geo.out_w + ox;
      for (int64_t k = 0; k < partials; ++k) {
        du += src[2 * k * locations];
        dv += src[(2 * k + 1) * locations];
      }
      du *= scale;
      dv *= scale;
    }
    scalar_t* dst = grad_offset.data + n * grad_offset.strides[0] +
        oy * grad_offset.strides[2] + ox * grad_offset.strides[3];
    dst[0] = static_cast<scalar_t>(du);
    dst[grad_offset.strides[1]] = static_cast<scalar_t>(dv);
  }
}

// The input-gradient gathers run one thread per pixel (y, x) of image n and
// run of kGatherChannels channels [c0, c0 + nc) within group `group`; the
// thread's index runs over (n, group, run, y, x), x fastest.
template <typename index_t>
struct GatherRun {
  index_t n, group, c0, y, x;
  int nc;
};

template <typename index_t>
__device__ __forceinline__ GatherRun<index_t> gather_run(
    const CorrelationGeometry<index_t>& geo,
    index_t index,
    index_t runs,
    index_t height,
    index_t width) {
  GatherRun<index_t> r;
  index_t rest = index;
  r.x = next_digit(rest, width);
  r.y = next_digit(rest, height);
  const index_t first = next_digit(rest, runs) * kGatherChannels;
  r.group = rest % geo.groups;
  r.n = rest / geo.groups;
  r.c0 = r.group * geo.channels_per_group + first;
  r.nc = static_cast<int>(std::min<index_t>(
      static_cast<index_t>(kGatherChannels), geo.channels_per_group - first));
  return r;
}

// acc[k] += coef * p[k * stride] for the run's channels k < nc.
template <typename scalar_t, typename index_t, typename opmath_t>
__device__ __forceinline__ void accumulate_channel_run(
    opmath_t (&acc)[kGatherChannels],
    opmath_t coef,
    const scalar_t* p,
    index_t stride,
    int nc) {
#pragma unroll
  for (int k = 0; k < kGatherChannels; ++k) {
    if (k < nc) {
      acc[k] += coef * static_cast<opmath_t>(p[k * stride]);
    }
  }
}

// A gather into `grad`, whose images are height x width: for each run r of
// the thread, accumulate(r, acc) adds the run's terms to acc (zeroed), then
// grad[n, c0 + k, y, x] = scale * acc[k].
template <typename scalar_t, typename index_t, typename Accumulate>
__device__ __forceinline__ void gather_channel_runs(
    const int64_t count,
    const TensorInfo<scalar_t, index_t>& grad,
    const CorrelationGeometry<index_t>& geo,
    index_t height,
    index_t width,
    const at::opmath_type<scalar_t> scale,
    const Accumulate& accumulate) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t runs =
      (geo.channels_per_group + kGatherChannels - 1) / kGatherChannels;
  CUDA_KERNEL_LOOP_TYPE(index, count, index_t) {
    const auto r = gather_run(geo, index, runs, height, width);
    opmath_t acc[kGatherChannels];
#pragma unroll
    for (int k = 0; k < kGatherChannels; ++k) {
      acc[k] = opmath_t(0);
    }
    accumulate(r, acc);
    scalar_t* dst = &element(grad, r.n, r.c0, r.y, r.x);
#pragma unroll
    for (int k = 0; k < kGatherChannels; ++k) {
      if (k < r.nc) {
        dst[k * grad.strides[1]] = static_cast<scalar_t>(acc[k] * scale);
      }
    }
  }
}

// grad_input1[n, c, y, x] = scale * sum over the locations (oy, ox) whose
// window covers (y, x), their displacements and taps of G * w_t *
// input2[n, c, tap].
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_grad_input1_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> grad_input1,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> input2,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t sgc = grad_output.strides[1];
  const index_t s2c = input2.strides[1], s2h = input2.strides[2],
                s2w = input2.strides[3];
  const auto accumulate = [&](const GatherRun<index_t>& r,
                              opmath_t(&acc)[kGatherChannels]) {
    const scalar_t* in2 = input2.data + r.n * input2.strides[0] + r.c0 * s2c;
    const scalar_t* grad = grad_output.data + r.n * grad_output.strides[0] +
        r.group * geo.displacements * sgc;
    for_each_covering_window(geo, r.y, r.x, [&](index_t oy, index_t ox) {
      const auto sample = offset_sample(offset, geo, r.n, oy, ox);
      if (!sample.finite) {
        return;
      }
      const scalar_t* g =
          grad + oy * grad_output.strides[2] + ox * grad_output.strides[3];
      for (index_t a = 0; a < geo.disp_count_h; ++a) {
        const index_t y2 =
            r.y + geo.disp_min_h + a * geo.disp_step_h + sample.base_y;
        for (index_t b = 0; b < geo.disp_count_w; ++b) {
          const index_t x2 =
              r.x + geo.disp_min_w + b * geo.disp_step_w + sample.base_x;
          const opmath_t gk = static_cast<opmath_t>(
              g[displacement_channel<index_t>(geo, a, b) * sgc]);
#pragma unroll
          for (int ty = 0; ty < 2; ++ty) {
#pragma unroll
            for (int tx = 0; tx < 2; ++tx) {
              if (!inside<index_t>(y2 + ty, x2 + tx, geo.height2, geo.width2)) {
                continue;
              }
              accumulate_channel_run(
                  acc,
                  gk * sample.weight(ty, tx),
                  in2 + (y2 + ty) * s2h + (x2 + tx) * s2w,
                  s2c,
                  r.nc);
            }
          }
        }
      }
    });
  };
  gather_channel_runs(
      count, grad_input1, geo, geo.height, geo.width, scale, accumulate);
}

// keys[i] for i < locations: the location's bucket, that of its shifted
// origin (P_y + box_bottom, P_x + box_right) in image n's grid of
// bucket_rows x bucket_cols, or `sentinel` (after every bucket) when its
// offset is not finite or its box misses input2; keys[i] for the padding
// up to the sort's power of two: `sentinel`.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_bucket_kernel(
    const int64_t count,
    OffsetSortKey* keys,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetGeometry<index_t> geo,
    const int64_t locations,
    const int64_t sentinel) {
  CUDA_KERNEL_LOOP_TYPE(i, count, int64_t) {
    int64_t bucket = sentinel;
    if (i < locations) {
      const index_t ox = static_cast<index_t>(i % geo.out_w);
      const index_t oy = static_cast<index_t>((i / geo.out_w) % geo.out_h);
      const index_t n = static_cast<index_t>(i / geo.out_w / geo.out_h);
      const auto sample = offset_sample(offset, geo, n, oy, ox);
      if (sample.finite) {
        const index_t row =
            oy * geo.stride_h - geo.pad_h + sample.base_y + geo.box_bottom;
        const index_t col =
            ox * geo.stride_w - geo.pad_w + sample.base_x + geo.box_right;
        if (row >= 0 && row < geo.bucket_rows && col >= 0 &&
            col < geo.bucket_cols) {
          bucket = (static_cast<int64_t>(n) * geo.bucket_rows + row) *
                  geo.bucket_cols +
              col;
        }
      }
    }
    keys[i] = OffsetSortKey{bucket, i};
  }
}

// The sort kernels take the key type as a parameter (only OffsetSortKey is
// used): a bitonic network over unique keys, whose result does not depend
// on the order of the compare-swaps within a stage.
template <typename Key>
__device__ __forceinline__ void compare_swap(Key& a, Key& b, bool ascending) {
  if (sort_key_less(b, a) == ascending) {
    const Key t = a;
    a = b;
    b = t;
  }
}

// The bitonic stages (k, j) with j < kSortBlock, for k in [k_first, k_last]
// (powers of two), on blocks of 2 * blockDim.x keys in shared memory.
template <typename Key>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_sort_block_kernel(
    Key* keys,
    const int64_t k_first,
    const int64_t k_last) {
  Key* block = dynamic_shared_memory<Key>();
  const int64_t size = 2 * static_cast<int64_t>(blockDim.x);
  const int64_t first = static_cast<int64_t>(blockIdx.x) * size;
  const int t = static_cast<int>(threadIdx.x);
  block[t] = keys[first + t];
  block[t + blockDim.x] = keys[first + t + blockDim.x];
  for (int64_t k = k_first; k <= k_last; k *= 2) {
    for (int64_t j = std::min(k, size) / 2; j >= 1; j /= 2) {
      __syncthreads();
      const int64_t i = 2 * j * (t / j) + t % j;
      compare_swap(block[i], block[i + j], ((first + i) & k) == 0);
    }
  }
  __syncthreads();
  keys[first + t] = block[t];
  keys[first + t + blockDim.x] = block[t + blockDim.x];
}

// One bitonic stage (k, j) over all `count` pairs, for j >= kSortBlock.
template <typename Key>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_sort_step_kernel(
    const int64_t count,
    Key* keys,
    const int64_t j,
    const int64_t k) {
  CUDA_KERNEL_LOOP_TYPE(t, count, int64_t) {
    const int64_t i = 2 * j * (t / j) + t % j;
    compare_swap(keys[i], keys[i + j], (i & k) == 0);
  }
}

// begin[b] = the first sorted key whose bucket is >= b, for b in
// [0, buckets] (begin[sentinel] ends the last bucket).
template <typename Key>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_bucket_begin_kernel(
    const int64_t count,
    int64_t* begin,
    const Key* keys,
    const int64_t size) {
  CUDA_KERNEL_LOOP_TYPE(b, count, int64_t) {
    int64_t low = 0, high = size;
    while (low < high) {
      const int64_t mid = low + (high - low) / 2;
      if (keys[mid].bucket < b) {
        low = mid + 1;
      } else {
        high = mid;
      }
    }
    begin[b] = low;
  }
}

// grad_input2[n, c, y, x] = scale * sum over the locations whose taps reach
// (y, x), found through the sorted buckets: for each box row r, the origins
// (y - r, x - box_right .. x - box_left) are one run of consecutive
// buckets, hence of consecutive sorted keys.
template <typename scalar_t, typename index_t>
C10_LAUNCH_BOUNDS_1(kGenericThreads)
__global__ void correlation_offset_grad_input2_kernel(
    const int64_t count,
    TensorInfo<scalar_t, index_t> grad_input2,
    TensorInfo<const scalar_t, index_t> grad_output,
    TensorInfo<const scalar_t, index_t> input1,
    TensorInfo<const scalar_t, index_t> offset,
    const OffsetSortKey* keys,
    const int64_t* begin,
    const OffsetGeometry<index_t> geo,
    const at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t sgc = grad_output.strides[1];
  const index_t s1c = input1.strides[1], s1h = input1.strides[2],
                s1w = input1.strides[3];
  const int64_t locations_per_image =
      static_cast<int64_t>(geo.out_h) * geo.out_w;
  const index_t box_h = geo.box_bottom - geo.box_top + 1;
  const index_t box_w = geo.box_right - geo.box_left + 1;
  const auto accumulate = [&](const GatherRun<index_t>& r,
                              opmath_t(&acc)[kGatherChannels]) {
    const scalar_t* in1 = input1.data + r.n * input1.strides[0] + r.c0 * s1c;
    const scalar_t* grad = grad_output.data + r.n * grad_output.strides[0] +
        r.group * geo.displacements * sgc;
    // Origin rows y - box_bottom .. y - box_top are bucket rows y .. y +
    // box_h - 1; origin columns likewise.
    for (index_t row = 0; row < box_h; ++row) {
      const int64_t row_bucket =
          (static_cast<int64_t>(r.n) * geo.bucket_rows + r.y + row) *
          geo.bucket_cols;
      const int64_t end = begin[row_bucket + r.x + box_w];
      for (int64_t e = begin[row_bucket + r.x]; e < end; ++e) {
        const int64_t location = keys[e].location % locations_per_image;
        const index_t ox = static_cast<index_t>(location % geo.out_w);
        const index_t oy = static_cast<index_t>(location / geo.out_w);
        const auto sample = offset_sample(offset, geo, r.n, oy, ox);
        // (y, x) relative to the location's shifted origin.
        const index_t ry =
            r.y - (oy * geo.stride_h - geo.pad_h + sample.base_y);
        const index_t rx =
            r.x - (ox * geo.stride_w - geo.pad_w + sample.base_x);
        const scalar_t* g =
            grad + oy * grad_output.strides[2] + ox * grad_output.strides[3];
        for (index_t i = 0; i < geo.kernel_h; ++i) {
          const index_t y1 = oy * geo.stride_h - geo.pad_h + i * geo.dilation_h;
          if (y1 < 0 || y1 >= geo.height) {
            continue;
          }
#pragma unroll
          for (int ty = 0; ty < 2; ++ty) {
            // Displacement row a with i*dil_h + dy_a + ty == ry.
            const index_t sy = ry - i * geo.dilation_h - ty - geo.disp_min_h;
            if (sy < 0 || sy % geo.disp_step_h != 0 ||
                sy / geo.disp_step_h >= geo.disp_count_h) {
              continue;
            }
            const index_t a = sy / geo.disp_step_h;
            for (index_t j = 0; j < geo.kernel_w; ++j) {
              const index_t x1 =
                  ox * geo.stride_w - geo.pad_w + j * geo.dilation_w;
              if (x1 < 0 || x1 >= geo.width) {
                continue;
              }
              const scalar_t* p = in1 + y1 * s1h + x1 * s1w;
#pragma unroll
              for (int tx = 0; tx < 2; ++tx) {
                const index_t sx =
                    rx - j * geo.dilation_w - tx - geo.disp_min_w;
                if (sx < 0 || sx % geo.disp_step_w != 0 ||
                    sx / geo.disp_step_w >= geo.disp_count_w) {
                  continue;
                }
                const index_t b = sx / geo.disp_step_w;
                const opmath_t coef =
                    sample.weight(ty, tx) *
                    static_cast<opmath_t>(
                        g[displacement_channel<index_t>(geo, a, b) * sgc]);
                accumulate_channel_run(acc, coef, p, s1c, r.nc);
              }
            }
          }
        }
      }
    }
  };
  gather_channel_runs(
      count, grad_input2, geo, geo.height2, geo.width2, scale, accumulate);
}

// ---------------------------------------------------------------------------
// Launchers.

inline int64_t next_power_of_two(int64_t value) {
  int64_t p = 1;
  while (p < value) {
    p *= 2;
  }
  return p;
}

template <typename T, typename Workspace>
T* workspace_as(const Workspace& workspace, int64_t count, TensorBase& holder) {
  holder = workspace(count * static_cast<int64_t>(sizeof(T)));
  return static_cast<T*>(holder.mutable_data_ptr());
}

template <typename scalar_t, typename index_t, typename Launch>
void launch_correlation_offset_forward(
    const Launch& launch,
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const OffsetGeometry<index_t> geo(p);
  const int64_t count = p.batch * p.groups * p.disp_count_h *
      ceil_div(p.disp_count_w, kOffsetDispCols) * p.out_h * p.out_w;
  launch(
      &correlation_offset_forward_kernel<scalar_t, index_t>,
      generic_blocks(count),
      kGenericThreads,
      0,
      count,
      getTensorInfo<scalar_t, index_t>(output),
      getTensorInfo<const scalar_t, index_t>(input1),
      getTensorInfo<const scalar_t, index_t>(input2),
      getTensorInfo<const scalar_t, index_t>(offset),
      geo,
      static_cast<opmath_t>(p.scale));
}

// Sorts keys[0, size) (size a power of two, at least 2) by (bucket,
// location): the shared-memory stages cover every j < kSortBlock, the
// global step kernel the larger ones.
template <typename Launch>
void launch_offset_sort(
    const Launch& launch,
    OffsetSortKey* keys,
    int64_t size) {
  const int64_t block = std::min(size, kSortBlock);
  const int64_t blocks = size / block;
  const int threads = static_cast<int>(block / 2);
  const int64_t shared_bytes =
      block * static_cast<int64_t>(sizeof(OffsetSortKey));
  launch(
      &correlation_offset_sort_block_kernel<OffsetSortKey>,
      blocks,
      threads,
      shared_bytes,
      keys,
      int64_t(2),
      block);
  for (int64_t k = 2 * block; k <= size; k *= 2) {
    for (int64_t j = k / 2; j >= block; j /= 2) {
      launch(
          &correlation_offset_sort_step_kernel<OffsetSortKey>,
          generic_blocks(size / 2),
          kGenericThreads,
          0,
          size / 2,
          keys,
          j,
          k);
    }
    launch(
        &correlation_offset_sort_block_kernel<OffsetSortKey>,
        blocks,
        threads,
        shared_bytes,
        keys,
        k,
        k);
  }
}

template <
    typename scalar_t,
    typename index_t,
    typename Launch,
    typename Workspace>
void launch_correlation_offset_backward(
    const Launch& launch,
    const Workspace& workspace,
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const OffsetGeometry<index_t> geo(p);
  const auto scale = static_cast<opmath_t>(p.scale);
  const auto grad_info = getTensorInfo<const scalar_t, index_t>(grad_output);
  const auto offset_info = getTensorInfo<const scalar_t, index_t>(offset);
  const int64_t locations = p.batch * p.out_h * p.out_w;
  const int64_t channel_runs =
      p.groups * ceil_div(p.channels_per_group(), kGatherChannels);

  if (grad_offset.defined() && grad_offset.numel() > 0) {
    TensorBase holder;
    const int64_t partials = p.batch * p.groups * p.disp_count_h;
    opmath_t* partial = workspace_as<opmath_t>(
        workspace, partials * 2 * p.out_h * p.out_w, holder);
    const int64_t count = partials * p.out_h * p.out_w;
    launch(
        &correlation_offset_grad_offset_partial_kernel<scalar_t, index_t>,
        generic_blocks(count),
        kGenericThreads,
        0,
        count,
        partial,
        grad_info,
        getTensorInfo<const scalar_t, index_t>(input1),
        getTensorInfo<const scalar_t, index_t>(input2),
        offset_info,
        geo);
    launch(
        &correlation_offset_grad_offset_reduce_kernel<scalar_t, index_t>,
        generic_blocks(locations),
        kGenericThreads,
        0,
        locations,
        getTensorInfo<scalar_t, index_t>(grad_offset),
        static_cast<const opmath_t*>(partial),
        offset_info,
        geo,
        scale);
  }
  if (grad_input1.defined() && grad_input1.numel() > 0) {
    const int64_t count = p.batch * channel_runs * p.height * p.width;
    launch(
        &correlation_offset_grad_input1_kernel<scalar_t, index_t>,
        generic_blocks(count),
        kGenericThreads,
        0,
        count,
        getTensorInfo<scalar_t, index_t>(grad_input1),
        grad_info,
        getTensorInfo<const scalar_t, index_t>(input2),
        offset_info,
        geo,
        scale);
  }
  if (grad_input2.defined() && grad_input2.numel() > 0) {
    const int64_t size = next_power_of_two(std::max<int64_t>(locations, 2));
    const int64_t buckets =
        p.batch * static_cast<int64_t>(geo.bucket_rows) * geo.bucket_cols;
    TensorBase keys_holder, begin_holder;
    OffsetSortKey* keys =
        workspace_as<OffsetSortKey>(workspace, size, keys_holder);
    int64_t* begin =
        workspace_as<int64_t>(workspace, buckets + 1, begin_holder);
    launch(
        &correlation_offset_bucket_kernel<scalar_t, index_t>,
        generic_blocks(size),
        kGenericThreads,
        0,
        size,
        keys,
        offset_info,
        geo,
        locations,
        buckets);
    launch_offset_sort(launch, keys, size);
    launch(
        &correlation_offset_bucket_begin_kernel<OffsetSortKey>,
        generic_blocks(buckets + 1),
        kGenericThreads,
        0,
        buckets + 1,
        begin,
        static_cast<const OffsetSortKey*>(keys),
        size);
    const int64_t count = p.batch * channel_runs * p.height2 * p.width2;
    launch(
        &correlation_offset_grad_input2_kernel<scalar_t, index_t>,
        generic_blocks(count),
        kGenericThreads,
        0,
        count,
        getTensorInfo<scalar_t, index_t>(grad_input2),
        grad_info,
        getTensorInfo<const scalar_t, index_t>(input1),
        offset_info,
        static_cast<const OffsetSortKey*>(keys),
        static_cast<const int64_t*>(begin),
        geo,
        scale);
  }
}

// Whether the 32-bit offset kernels can serve a call.
inline bool offset_use_32bit_indexing(
    const CorrelationParams& p,
    std::initializer_list<const TensorBase*> tensors,
    int64_t max_elem) {
  return use_32bit_indexing(p, tensors, max_elem) &&
      offset_geometry_fits_int32(p);
}

// The forward with an offset on batched 4D tensors, in 32- or 64-bit
// indexing.
template <typename Launch>
void run_correlation_offset_forward(
    const Launch& launch,
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params,
    int64_t max_elem_32bit = std::numeric_limits<int32_t>::max()) {
  if (output.numel() == 0) {
    return;
  }
  const bool use_32bit = offset_use_32bit_indexing(
      params, {&output, &input1, &input2, &offset}, max_elem_32bit);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_offset_cuda", [&] {
        with_index_type(use_32bit, [&](auto index) {
          launch_correlation_offset_forward<scalar_t, decltype(index)>(
              launch, output, input1, input2, offset, params);
        });
      });
}

// The backward with an offset on batched 4D tensors; an undefined gradient
// is skipped. Every element of a defined gradient is written.
template <typename Launch, typename Workspace>
void run_correlation_offset_backward(
    const Launch& launch,
    const Workspace& workspace,
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params,
    int64_t max_elem_32bit = std::numeric_limits<int32_t>::max()) {
  if (!grad_input1.defined() && !grad_input2.defined() &&
      !grad_offset.defined()) {
    return;
  }
  const bool use_32bit = offset_use_32bit_indexing(
      params,
      {&grad_input1,
       &grad_input2,
       &grad_offset,
       &grad_output,
       &input1,
       &input2,
       &offset},
      max_elem_32bit);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf,
      kBFloat16,
      input1.scalar_type(),
      "correlation_offset_backward_cuda",
      [&] {
        with_index_type(use_32bit, [&](auto index) {
          launch_correlation_offset_backward<scalar_t, decltype(index)>(
              launch,
              workspace,
              grad_input1,
              grad_input2,
              grad_offset,
              grad_output,
              input1,
              input2,
              offset,
              params);
        });
      });
}

}  // namespace at::native::correlation_cuda
