#pragma once

// Correlation CPU kernels for kernel_size 1 and stride 1 with few channels
// per group or a one-row vertical displacement range: the stereo cost volumes
// (GwcNet's groups of 8 channels, DispNetC's horizontal range) and per-channel
// volumes. See NOTE [ Narrow Correlation CPU Kernels ].
//
// This header is part of SpatialCorrelationKernel.cpp, which includes it
// after its row helpers (RowLayout, load_row, write_output_row,
// store_grad_row, ...) and before its dispatch entries; like that file it is
// compiled once per CPU capability.

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/TensorBase.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// NOTE [ Narrow Correlation CPU Kernels ]
//
// With a 1x1 kernel and unit strides, output pixel (oy, ox) reads one pixel
// of input1, (y1, x1) = (oy - pad_h, ox - pad_w), and one of input2 per
// displacement, (y1 + dy_a, x1 + dx_b). The general kernels (see NOTE
// [ Correlation CPU Kernels ]) keep accumulator rows in memory and sweep the
// channels in pieces, which pays off over many channels; with 8 channels a
// group, or a horizontal-only range, that bookkeeping and the output's
// traffic dominate. Here:
//
// - A work item of the forward is one output row (n, g, oy). The input1 row
//   y1 and, per vertical displacement, the input2 row y1 + dy_a of the
//   group's channels are converted into zero-padded scratch rows (load_row:
//   any dtype, layout and strides; the columns outside the image stay zero,
//   so no bounds checks). Every output vector is then summed over all the
//   group's channels in registers, a tile of displacements and pixels at a
//   time (NarrowTile), and the row's D channels are written once, in order
//   (write_output_row).
//
// - The backward makes one pass over grad_output. Processing input1 row y1
//   needs grad_output row y1 + pad_h (all D channels of the group), which
//   gives grad_input1's row y1 whole and adds to grad_input2's rows
//   y1 + dy_a. The second is a gather too: for input2 pixel t, the terms of
//   displacement b read grad_output and input1 at t - dx_b, so both scratch
//   rows keep zeros in front of the image. grad_input2's rows are kept in a
//   small ring until the last input1 row that reaches them is done
//   (y1 = y2 - dy_min). With one vertical displacement each row is finished
//   at once, so work items are single rows; otherwise a work item is a whole
//   (n, g) plane. Either way each gradient row is written by one thread, and
//   the sums are in a fixed order: the results are deterministic.
//
// Both passes vectorize along the row, NX vectors of pixels times NB
// displacements at a time, so even a single channel fills the vectors. Each
// FMA's second operand is a window of a scratch row at the displacement's
// offset (an unaligned load); the operand shared by the tile (input1 in the
// forward, grad_output's weights in the backward) stays in registers.

namespace at::native {
namespace {

// Channels per group up to which a two-dimensional displacement range takes
// the narrow kernels. Above it, the general kernels' reuse of input rows
// across neighbouring output rows and vertical displacements wins (measured
// on a 9x9 range: the narrow forward is faster with 4 channels a group,
// slower with 8); a one-row range has no such reuse, so it takes the narrow
// kernels at any channel count (DispNetC's 256 included).
constexpr int64_t kNarrowMaxChannels = 4;

// The scratch rows span the horizontal displacement range (see the scratch
// geometry below), so a range much wider than the image, whose
// displacements mostly read zeros, goes to the general kernels, which skip
// the displacements outside the image: their memory does not grow with it.
constexpr int64_t kNarrowMaxSpanPerColumn = 4;
constexpr int64_t kNarrowMaxSpanExtra = 64;

// Whether the narrow kernels compute this call.
inline bool use_narrow_kernels(const CorrelationParams& p) {
  const int64_t span_w = (p.disp_count_w - 1) * p.disp_step_w;
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 &&
      p.stride_w == 1 &&
      span_w <= kNarrowMaxSpanPerColumn * p.width + kNarrowMaxSpanExtra &&
      (p.disp_count_h == 1 || p.channels_per_group() <= kNarrowMaxChannels);
}

// Pixel vectors of one tile: two where the registers hold two columns of
// sums or weights for a useful number of displacements.
constexpr int kNarrowVectors = kVectorRegisters >= 32 ? 2 : 1;

// Most displacements of a tile of nx vectors: nb * nx sums (or weights),
// nx shared values and one streamed operand in the vector registers.
constexpr int narrow_max_block(int nx) {
  return std::min(kMaxBlock, (kVectorRegisters - 1 - nx) / nx);
}

// Scratch geometry of one call (all rows have unit phase, see RowLayout):
//
//   in2:  input2's row from column x = -pad_w + dx_min: output pixel ox at
//         displacement b is at index ox + b * disp_step_w.
//   in1:  input1's row, output pixel ox at index ox + front, where front =
//         (Kx - 1) * disp_step_w is the largest displacement offset: the
//         gather of grad_input2 reads it (and grad_output) at t - offset.
//   go:   grad_output's D rows of a group, laid out like in1.
//   grad1: grad_input1's row, output pixel ox at index ox.
template <typename opmath_t>
struct NarrowGeometry {
  const CorrelationParams& p;
  int64_t width_padded;  // out_w in whole vectors
  int64_t front;  // zeros in front of pixel 0 in in1 and go rows
  RowLayout in1;
  RowLayout in2;
  RowLayout grad1;
  int64_t go_length;  // of each grad_output scratch row
  int64_t channel_piece;  // channels whose lines of a tile's sweep fit in L1
  // Indices [grad2_first, grad2_first + grad2_count) of in2's row that the
  // gather of grad_input2 computes: the image's columns, in whole vectors
  // (the others are never stored).
  int64_t grad2_first, grad2_count;

  explicit NarrowGeometry(const CorrelationParams& params) : p(params) {
    const int64_t vec_size = vec::Vectorized<opmath_t>::size();
    const auto round_up = [vec_size](int64_t v) {
      return (v + vec_size - 1) / vec_size * vec_size;
    };
    const int64_t Cg = p.channels_per_group();
    width_padded = round_up(p.out_w);
    front = (p.disp_count_w - 1) * p.disp_step_w;
    in2 = {-p.pad_w + p.disp_min_w, 1, round_up(width_padded + front), Cg};
    in1 = {-p.pad_w - front, 1, front + in2.length, Cg};
    grad1 = {-p.pad_w, 1, width_padded, Cg};
    go_length = front + in2.length;
    // A sweep reads kNarrowVectors vectors of both rows per channel, the
    // second widened by the offsets of a block of displacements.
    const int64_t sweep = 2 * kNarrowVectors * vec_size +
        (narrow_max_block(kNarrowVectors) - 1) * p.disp_step_w;
    channel_piece = std::max<int64_t>(
        1, kL1Bytes / (static_cast<int64_t>(sizeof(opmath_t)) * sweep));
    // p.width <= out_w <= width_padded <= in2.length, so the vectors fit.
    grad2_count = round_up(p.width);
    grad2_first = std::clamp<int64_t>(-in2.origin, 0, in2.length - grad2_count);
  }

  int64_t dy(int64_t a) const {
    return p.disp_min_h + a * p.disp_step_h;
  }
  // Offset of displacement b in in2's row (and of the gather's reads).
  int64_t offset(int64_t b) const {
    return b * p.disp_step_w;
  }
  // parallel_for's grain for items of `rows` output rows each.
  int64_t grain(int64_t rows, int64_t passes) const {
    const int64_t work = passes * p.displacements() *
        std::max<int64_t>(1, p.channels_per_group()) * width_padded * rows;
    return std::max<int64_t>(
        1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work));
  }
};

// Extra elements after the last channel of the in1 and in2 scratch rows:
// NarrowWindows loads whole vectors past the last window it uses.
constexpr int64_t kNarrowSlack = 16;

// The streamed operands of a tile with unit displacement steps (kStep = +-1)
// for one channel: windows k = 0..NB-1 of the row at offset k * kStep, NX
// vectors each. With AVX512 floats they are cut out of NX + 1 loaded vectors
// by valignd instead of each being an unaligned load: the tile's loads were
// the bottleneck (one per FMA, most of them split across cache lines).
// NB <= 16 keeps every window inside two neighbouring loaded vectors. It
// reads up to kNarrowSlack elements past the tile's last window.
template <int NB, int NX, int kStep, typename opmath_t>
struct NarrowWindows {
#if defined(CPU_CAPABILITY_AVX512)
  static constexpr bool kEnabled =
      std::is_same_v<opmath_t, float> && kStep != 0 && NB <= 16;
  __m512 loaded[NX + 1];

  explicit NarrowWindows(const float* row) {
    // The leftmost window starts at the lowest offset.
    const float* low = row + (kStep > 0 ? 0 : -(NB - 1));
    for (int j = 0; j <= NX; ++j)
      loaded[j] = _mm512_loadu_ps(low + j * 16);
  }

  // Window k, vector v.
  template <int K>
  __m512 get(int v) const {
    constexpr int shift = kStep > 0 ? K : NB - 1 - K;
    return _mm512_castsi512_ps(_mm512_alignr_epi32(
        _mm512_castps_si512(loaded[v + 1]),
        _mm512_castps_si512(loaded[v]),
        shift));
  }
#else
  static constexpr bool kEnabled = false;
#endif
};

// The register tiles: NB displacements times NX vectors of pixels.
//
// The streamed operand of displacement k of a tile is row b + k * step of a
// scratch row: with kStep = +-1 (unit displacement steps, the common case)
// the offsets are constants of the addressing mode; with kStep = 0 they use
// the runtime `step`. (An array of NB row pointers would not fit in the
// general registers beside the loop's own and be reloaded from the stack
// for every FMA.)
template <int NB, int NX, int kStep>
struct NarrowTile {
  static int64_t row_offset(int k, int64_t step) {
    return k * (kStep != 0 ? kStep : step);
  }

  // Calls fn(k, v, window) for every displacement k < NB and vector v < NX
  // of the streamed operand of channel row bc, k outermost: through
  // NarrowWindows where it applies (k a compile-time constant there, so the
  // caller's register arrays stay in registers), else by unaligned loads.
  template <typename opmath_t, typename Fn, size_t... K>
  static void for_each_window(
      const opmath_t* bc,
      int64_t step,
      std::index_sequence<K...>,
      const Fn& fn) {
    using Vec = vec::Vectorized<opmath_t>;
    using Windows = NarrowWindows<NB, NX, kStep, opmath_t>;
    if constexpr (Windows::kEnabled) {
      const Windows windows(bc);
      const auto window = [&](auto k) {
        constexpr int kk = decltype(k)::value;
        for (int v = 0; v < NX; ++v)
          fn(kk, v, Vec(windows.template get<kk>(v)));
      };
      (window(std::integral_constant<int, static_cast<int>(K)>{}), ...);
    } else {
      constexpr int V = Vec::size();
      for (int k = 0; k < NB; ++k) {
        for (int v = 0; v < NX; ++v)
          fn(k, v, Vec::loadu(bc + row_offset(k, step) + v * V));
      }
    }
  }

  // out[k][v * size + t] (+)= sum_c a[c][v * size + t] * b_k[c][v * size + t]
  // (channel strides a_cs and b_cs) for k < NB, v < NX, all lanes t; the
  // sums start from out's values if `accumulate`, else from zero.
  template <typename opmath_t>
  static void forward(
      opmath_t* const* out,
      const opmath_t* a,
      const opmath_t* b,
      int64_t step,
      int64_t channels,
      int64_t a_cs,
      int64_t b_cs,
      bool accumulate) {
    using Vec = vec::Vectorized<opmath_t>;
    constexpr int V = Vec::size();
    Vec sums[NB][NX];
    for (int k = 0; k < NB; ++k) {
      for (int v = 0; v < NX; ++v)
        sums[k][v] = accumulate ? Vec::loadu(out[k] + v * V) : Vec(opmath_t(0));
    }
    for (int64_t c = 0; c < channels; ++c) {
      Vec av[NX];
      for (int v = 0; v < NX; ++v)
        av[v] = load_shared<NB>(a + c * a_cs + v * V);
      for_each_window(
          b + c * b_cs,
          step,
          std::make_index_sequence<NB>{},
          [&](int k, int v, Vec bv) {
            sums[k][v] = vec::fmadd(av[v], bv, sums[k][v]);
          });
    }
    for (int k = 0; k < NB; ++k) {
      for (int v = 0; v < NX; ++v)
        sums[k][v].store(out[k] + v * V);
    }
  }

  // g[c][v * size + t] += sum_k w[k][v * size + t] * b_k[c][v * size + t]
  // (channel strides g_cs and b_cs) for all channels c: the weights stay in
  // registers across the channel loop.
  template <typename opmath_t>
  static void gather(
      opmath_t* g,
      const opmath_t* const* w,
      const opmath_t* b,
      int64_t step,
      int64_t channels,
      int64_t g_cs,
      int64_t b_cs) {
    using Vec = vec::Vectorized<opmath_t>;
    constexpr int V = Vec::size();
    Vec weights[NB][NX];
    for (int k = 0; k < NB; ++k) {
      for (int v = 0; v < NX; ++v)
        weights[k][v] = in_register(Vec::loadu(w[k] + v * V));
    }
    for (int64_t c = 0; c < channels; ++c) {
      Vec sums[NX];
      for (int v = 0; v < NX; ++v)
        sums[v] = Vec::loadu(g + c * g_cs + v * V);
      for_each_window(
          b + c * b_cs,
          step,
          std::make_index_sequence<NB>{},
          [&](int k, int v, Vec bv) {
            sums[v] = vec::fmadd(weights[k][v], bv, sums[v]);
          });
      for (int v = 0; v < NX; ++v)
        sums[v].store(g + c * g_cs + v * V);
    }
  }
};

// Calls fn(NarrowTile<nb, NX, kStep>) for a runtime nb in
// [1, narrow_max_block(NX)], kStep = step if step is +-1, else 0.
template <int NX, int NB = 1, typename Fn>
void dispatch_narrow_tile(int nb, int64_t step, const Fn& fn) {
  if constexpr (NB < narrow_max_block(NX)) {
    if (nb != NB) {
      dispatch_narrow_tile<NX, NB + 1>(nb, step, fn);
      return;
    }
  }
  if (step == 1) {
    fn(NarrowTile<NB, NX, 1>{});
  } else if (step == -1) {
    fn(NarrowTile<NB, NX, -1>{});
  } else {
    fn(NarrowTile<NB, NX, 0>{});
  }
}

// Calls fn(x, tile) for the pixel columns [0, width) in whole vectors:
// tiles of kNarrowVectors vectors, then a tile of one for the rest.
template <typename opmath_t, typename Fn>
void for_each_narrow_column(int64_t width, const Fn& fn) {
  constexpr int64_t V = vec::Vectorized<opmath_t>::size();
  constexpr int64_t NX = kNarrowVectors;
  int64_t x = 0;
  for (; x + NX * V <= width; x += NX * V) {
    fn(x, std::integral_constant<int, static_cast<int>(NX)>{});
  }
  for (; x < width; x += V) {
    fn(x, std::integral_constant<int, 1>{});
  }
}

// Forward of one output row at vertical displacement number a: for every
// horizontal displacement b, acc row displacement_channel(a, b) (D rows of
// width_padded) = sum_c in1[c][ox] * in2[c][ox + offset(b)].
//
// A tile's sweep over the channels reads a few cache lines of both rows per
// channel; with many channels (DispNetC's 256) they would not stay in L1
// for the next tile, so the channels are taken in pieces whose lines do,
// the sums kept in acc between pieces.
template <typename opmath_t>
void narrow_forward_displacements(
    const NarrowGeometry<opmath_t>& geo,
    int64_t a,
    const opmath_t* in1,
    const opmath_t* in2,
    opmath_t* acc) {
  const CorrelationParams& p = geo.p;
  const int64_t Cg = p.channels_per_group();
  const opmath_t* a_row = in1 + geo.front;
  for (int64_t c0 = 0; c0 < Cg; c0 += geo.channel_piece) {
    const int64_t channels = std::min(geo.channel_piece, Cg - c0);
    const opmath_t* a_piece = a_row + c0 * geo.in1.channel_stride();
    const opmath_t* b_piece = in2 + c0 * geo.in2.channel_stride();
    for_each_narrow_column<opmath_t>(geo.width_padded, [&](int64_t x, auto nx) {
      constexpr int NX = decltype(nx)::value;
      for_each_block(
          p.disp_count_w,
          [&](int64_t b0, int nb) {
            opmath_t* out[kMaxBlock];
            for (const auto k : c10::irange(nb)) {
              out[k] = acc +
                  p.displacement_channel(a, b0 + k) * geo.width_padded + x;
            }
            dispatch_narrow_tile<NX>(nb, p.disp_step_w, [&](auto tile) {
              tile.forward(
                  out,
                  a_piece + x,
                  b_piece + geo.offset(b0) + x,
                  p.disp_step_w,
                  channels,
                  geo.in1.channel_stride(),
                  geo.in2.channel_stride(),
                  c0 > 0);
            });
          },
          narrow_max_block(NX));
    });
  }
}

// Outputs larger than this go to memory with non-temporal stores: they
// would not stay in the caches anyway, and a normal store reads each line
// before writing it (GwcNet's volume is 126 MB).
constexpr int64_t kStreamingBytes = 16 * 1024 * 1024;

// v.store(dst), bypassing the caches where the ISA allows; dst is aligned to
// the vector size.
template <typename T>
inline void store_streaming(T* dst, vec::Vectorized<T> v) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_stream_ps(dst, v);
  } else {
    _mm512_stream_pd(dst, v);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    _mm256_stream_ps(dst, v);
  } else {
    _mm256_stream_pd(dst, v);
  }
#else
  v.store(dst);
#endif
}

// The same for a vector of a half type (half or bfloat16), which ATen
// keeps as integer lanes.
template <typename T>
inline void store_streaming_reduced(T* dst, vec::Vectorized<T> v) {
#if defined(CPU_CAPABILITY_AVX512)
  _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), v);
#elif defined(CPU_CAPABILITY_AVX2)
  _mm256_stream_si256(reinterpret_cast<__m256i*>(dst), v);
#else
  v.store(dst);
#endif
}

// Orders the non-temporal stores of this thread before its later stores
// (and the end of the parallel region).
inline void streaming_fence() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

// write_output_row, with the output's float or double rows written by
// non-temporal stores when `streaming`.
template <typename scalar_t, typename opmath_t>
void write_narrow_output_row(
    const TensorBase& output,
    const NarrowGeometry<opmath_t>& geo,
    int64_t n,
    int64_t g,
    int64_t oy,
    opmath_t* acc,
    opmath_t* tile,
    bool streaming) {
  const CorrelationParams& p = geo.p;
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    if (streaming && output.stride(3) == 1) {
      using Vec = vec::Vectorized<opmath_t>;
      constexpr int64_t V = Vec::size();
      const Vec scale(static_cast<opmath_t>(p.scale));
      const int64_t D = p.displacements();
      scalar_t* out = output.data_ptr<scalar_t>() + n * output.stride(0) +
          g * D * output.stride(1) + oy * output.stride(2);
      for (const auto d : c10::irange(D)) {
        const opmath_t* src = acc + d * geo.width_padded;
        scalar_t* dst = out + d * output.stride(1);
        // Normal stores up to the first vector-aligned column.
        const int64_t lag =
            (reinterpret_cast<uintptr_t>(dst) / sizeof(scalar_t)) % V;
        int64_t x = lag == 0 ? 0 : std::min(p.out_w, V - lag);
        if (x > 0) {
          (Vec::loadu(src, x) * scale).store(dst, x);
        }
        for (; x + V <= p.out_w; x += V) {
          store_streaming(dst + x, Vec::loadu(src + x) * scale);
        }
        if (x < p.out_w) {
          (Vec::loadu(src + x, p.out_w - x) * scale)
              .store(dst + x, p.out_w - x);
        }
      }
      return;
    }
  } else {
    if (streaming && output.stride(3) == 1) {
      // Half types: two float vectors make one vector of the output type.
      using Vec = vec::Vectorized<opmath_t>;
      using OutVec = vec::Vectorized<scalar_t>;
      constexpr int64_t V = Vec::size();
      constexpr int64_t VO = OutVec::size();
      static_assert(VO == 2 * V);
      const opmath_t scale = static_cast<opmath_t>(p.scale);
      const int64_t D = p.displacements();
      scalar_t* out = output.data_ptr<scalar_t>() + n * output.stride(0) +
          g * D * output.stride(1) + oy * output.stride(2);
      const auto scalars =
          [&](const opmath_t* src, scalar_t* dst, int64_t begin, int64_t end) {
            for (int64_t x = begin; x < end; ++x) {
              dst[x] = static_cast<scalar_t>(src[x] * scale);
            }
          };
      for (const auto d : c10::irange(D)) {
        const opmath_t* src = acc + d * geo.width_padded;
        scalar_t* dst = out + d * output.stride(1);
        const int64_t lag =
            (reinterpret_cast<uintptr_t>(dst) / sizeof(scalar_t)) % VO;
        int64_t x = lag == 0 ? 0 : std::min(p.out_w, VO - lag);
        scalars(src, dst, 0, x);
        for (; x + VO <= p.out_w; x += VO) {
          store_streaming_reduced(
              dst + x,
              vec::convert_from_float<scalar_t>(
                  Vec::loadu(src + x) * Vec(scale),
                  Vec::loadu(src + x + V) * Vec(scale)));
        }
        scalars(src, dst, x, p.out_w);
      }
      return;
    }
  }
  write_output_row<scalar_t, opmath_t>(
      output, p, geo.width_padded, n, g, oy, acc, tile);
}

template <typename scalar_t>
void narrow_forward(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const NarrowGeometry<opmath_t> geo(p);
  const int64_t D = p.displacements();
  const int64_t Cg = p.channels_per_group();
  const int64_t row_size = D * geo.width_padded;
  const bool inner = groups_inner(output, p);
  const bool streaming =
      output.numel() * static_cast<int64_t>(sizeof(scalar_t)) > kStreamingBytes;
  at::parallel_for(
      0,
      p.batch * p.groups * p.out_h,
      geo.grain(1, 1),
      [&](int64_t begin, int64_t end) {
        // Zeros outside the image columns, which load_row never writes.
        std::vector<opmath_t> in1(geo.in1.size() + kNarrowSlack);
        std::vector<opmath_t> in2(geo.in2.size() + kNarrowSlack);
        std::vector<opmath_t> acc(row_size);
        std::vector<opmath_t> tile(kTransposeTile * std::max(D, Cg));
        for (const auto item : c10::irange(begin, end)) {
          const PlaneItem it = plane_item(item, p.groups, p.out_h, inner);
          const int64_t oy = it.index;
          const int64_t y1 = oy - p.pad_h;
          const auto plane = [&](const TensorBase& t) {
            return plane_of<const scalar_t>(t, it.n, it.g * Cg);
          };
          if (y1 < 0 || y1 >= p.height) {
            std::fill(acc.begin(), acc.end(), opmath_t(0));
          } else {
            load_row<scalar_t, opmath_t>(
                plane(input1), y1, p.width, geo.in1, in1.data(), tile.data());
            for (const auto a : c10::irange(p.disp_count_h)) {
              const int64_t y2 = y1 + geo.dy(a);
              if (y2 < 0 || y2 >= p.height) {
                for (const auto b : c10::irange(p.disp_count_w)) {
                  opmath_t* row = acc.data() +
                      p.displacement_channel(a, b) * geo.width_padded;
                  std::fill(row, row + geo.width_padded, opmath_t(0));
                }
                continue;
              }
              load_row<scalar_t, opmath_t>(
                  plane(input2), y2, p.width, geo.in2, in2.data(), tile.data());
              narrow_forward_displacements(
                  geo, a, in1.data(), in2.data(), acc.data());
            }
          }
          write_narrow_output_row<scalar_t, opmath_t>(
              output, geo, it.n, it.g, oy, acc.data(), tile.data(), streaming);
        }
        streaming_fence();
      });
}

// The D rows of grad_output[n, g*D : (g+1)*D, oy, :], in output channel
// order, into `dst` (rows go_length apart, pixel ox at index front + ox).
// Only those out_w columns are written; the zeros around them stay from the
// scratch's initialization.
template <typename scalar_t, typename opmath_t>
void load_narrow_grad_output(
    const TensorBase& grad_output,
    const NarrowGeometry<opmath_t>& geo,
    int64_t n,
    int64_t g,
    int64_t oy,
    opmath_t* dst,
    opmath_t* tile) {
  const CorrelationParams& p = geo.p;
  const int64_t D = p.displacements();
  const scalar_t* src = grad_output.const_data_ptr<scalar_t>() +
      n * grad_output.stride(0) + g * D * grad_output.stride(1) +
      oy * grad_output.stride(2);
  const int64_t sd = grad_output.stride(1);
  const int64_t sx = grad_output.stride(3);
  dst += geo.front;
  if (sd == 1 && D > 1) {
    // channels_last: each pixel's D values are contiguous.
    load_transposed(src, sx, p.out_w, D, dst, geo.go_length, tile);
    return;
  }
  for (const auto d : c10::irange(D)) {
    const scalar_t* s = src + d * sd;
    opmath_t* o = dst + d * geo.go_length;
    if (sx == 1) {
      vec::convert(s, o, p.out_w);
    } else {
      for (const auto ox : c10::irange(p.out_w)) {
        o[ox] = static_cast<opmath_t>(s[ox * sx]);
      }
    }
  }
}

// Per-thread scratch of the backward. All rows start zeroed; see
// narrow_backward_rows for which are rewritten and which re-zeroed.
template <typename opmath_t>
struct NarrowBackwardScratch {
  std::vector<opmath_t> in1;  // input1 row y1
  std::vector<opmath_t> in2;  // input2 row y1 + dy_a
  std::vector<opmath_t> go;  // grad_output row y1 + pad_h
  std::vector<opmath_t> grad1;  // grad_input1 row y1
  std::vector<opmath_t> grad2;  // ring of grad_input2 rows
  std::vector<opmath_t> tile;
};

// The terms of input1 row y1 (in image) of plane (n, g), given its scratch
// rows: grad1 (if wanted) receives all of grad_input1's row y1, using input2
// row y1 + dy_a for each a; grad2_rows[a] (if not null) receives the terms
// of grad_input2's row y1 + dy_a.
template <typename scalar_t, typename opmath_t>
void narrow_backward_row(
    const NarrowGeometry<opmath_t>& geo,
    const TensorBase& input2,
    int64_t n,
    int64_t g,
    int64_t y1,
    NarrowBackwardScratch<opmath_t>& s,
    opmath_t* grad1,
    opmath_t* const* grad2_rows) {
  const CorrelationParams& p = geo.p;
  const int64_t Cg = p.channels_per_group();
  for (const auto a : c10::irange(p.disp_count_h)) {
    const int64_t y2 = y1 + geo.dy(a);
    if (y2 < 0 || y2 >= p.height) {
      continue;
    }
    if (grad1 != nullptr) {
      // grad_input1[c][ox] += sum_b go[b][ox] * in2[c][ox + offset(b)]
      load_row<scalar_t, opmath_t>(
          plane_of<const scalar_t>(input2, n, g * Cg),
          y2,
          p.width,
          geo.in2,
          s.in2.data(),
          s.tile.data());
      for_each_narrow_column<opmath_t>(
          geo.width_padded, [&](int64_t x, auto nx) {
            constexpr int NX = decltype(nx)::value;
            for_each_block(
                p.disp_count_w,
                [&](int64_t b0, int nb) {
                  const opmath_t* w[kMaxBlock];
                  for (const auto k : c10::irange(nb)) {
                    w[k] = s.go.data() +
                        p.displacement_channel(a, b0 + k) * geo.go_length +
                        geo.front + x;
                  }
                  dispatch_narrow_tile<NX>(nb, p.disp_step_w, [&](auto tile) {
                    tile.gather(
                        grad1 + x,
                        w,
                        s.in2.data() + geo.offset(b0) + x,
                        p.disp_step_w,
                        Cg,
                        geo.grad1.channel_stride(),
                        geo.in2.channel_stride());
                  });
                },
                narrow_max_block(NX));
          });
    }
    if (grad2_rows != nullptr && grad2_rows[a] != nullptr) {
      // grad_input2[c][t] += sum_b go[b][t - offset(b)] * in1[c][t - offset(b)]
      opmath_t* grad2 = grad2_rows[a];
      for_each_narrow_column<opmath_t>(
          geo.grad2_count, [&](int64_t t, auto nx) {
            t += geo.grad2_first;
            constexpr int NX = decltype(nx)::value;
            for_each_block(
                p.disp_count_w,
                [&](int64_t b0, int nb) {
                  const opmath_t* w[kMaxBlock];
                  for (const auto k : c10::irange(nb)) {
                    w[k] = s.go.data() +
                        p.displacement_channel(a, b0 + k) * geo.go_length +
                        geo.front + t - geo.offset(b0 + k);
                  }
                  // Displacement b0 + k reads input1 offset(b0 + k)
                  // columns before t.
                  dispatch_narrow_tile<NX>(nb, -p.disp_step_w, [&](auto tile) {
                    tile.gather(
                        grad2 + t,
                        w,
                        s.in1.data() + geo.front + t - geo.offset(b0),
                        -p.disp_step_w,
                        Cg,
                        geo.in2.channel_stride(),
                        geo.in1.channel_stride());
                  });
                },
                narrow_max_block(NX));
          });
    }
  }
}

// The backward over the input1 rows ("steps") [begin, end) of plane (n, g),
// in the step order of narrow_backward: step t processes input1 row t (if in
// the image) and then finishes grad_input2's row t + dy_min (if in the
// image), which no later step reaches. grad_input2's unfinished rows live in
// a ring of `ring` rows indexed by y2 % ring.
template <typename scalar_t>
void narrow_backward_rows(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const NarrowGeometry<at::opmath_type<scalar_t>>& geo,
    int64_t ring,
    int64_t n,
    int64_t g,
    int64_t begin,
    int64_t end,
    NarrowBackwardScratch<at::opmath_type<scalar_t>>& s) {
  using opmath_t = at::opmath_type<scalar_t>;
  const CorrelationParams& p = geo.p;
  const int64_t Cg = p.channels_per_group();
  const bool want1 = grad_input1.defined();
  const bool want2 = grad_input2.defined();
  const int64_t grad2_size = geo.in2.size();
  std::vector<opmath_t*> grad2_rows(p.disp_count_h);
  for (const auto t : c10::irange(begin, end)) {
    const int64_t y1 = t;
    if (y1 >= 0 && y1 < p.height) {
      load_narrow_grad_output<scalar_t, opmath_t>(
          grad_output, geo, n, g, y1 + p.pad_h, s.go.data(), s.tile.data());
      if (want2) {
        load_row<scalar_t, opmath_t>(
            plane_of<const scalar_t>(input1, n, g * Cg),
            y1,
            p.width,
            geo.in1,
            s.in1.data(),
            s.tile.data());
        for (const auto a : c10::irange(p.disp_count_h)) {
          const int64_t y2 = y1 + geo.dy(a);
          grad2_rows[a] = y2 >= 0 && y2 < p.height
              ? s.grad2.data() + (y2 % ring) * grad2_size
              : nullptr;
        }
      }
      narrow_backward_row<scalar_t, opmath_t>(
          geo,
          input2,
          n,
          g,
          y1,
          s,
          want1 ? s.grad1.data() : nullptr,
          want2 ? grad2_rows.data() : nullptr);
      if (want1) {
        store_grad_row<scalar_t, opmath_t>(
            grad_input1,
            geo.grad1,
            p,
            n,
            g,
            0,
            y1,
            s.grad1.data(),
            s.tile.data());
        std::fill(s.grad1.begin(), s.grad1.end(), opmath_t(0));
      }
    }
    const int64_t y2 = t + p.disp_min_h;
    if (want2 && y2 >= 0 && y2 < p.height) {
      opmath_t* row = s.grad2.data() + (y2 % ring) * grad2_size;
      store_grad_row<scalar_t, opmath_t>(
          grad_input2, geo.in2, p, n, g, 0, y2, row, s.tile.data());
      std::fill(row, row + grad2_size, opmath_t(0));
    }
  }
}

template <typename scalar_t>
void narrow_backward(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const NarrowGeometry<opmath_t> geo(p);
  const int64_t D = p.displacements();
  const int64_t Cg = p.channels_per_group();
  // Steps cover every input1 row and every grad_input2 row y2 = t + dy_min.
  const int64_t first = std::min<int64_t>(0, -p.disp_min_h);
  const int64_t last = std::max<int64_t>(p.height, p.height - p.disp_min_h);
  const int64_t steps = last - first;
  // Rows y1 + dy_a of the unfinished grad_input2 rows span at most the
  // vertical range, and only those inside the image are kept.
  const int64_t ring = std::clamp<int64_t>(
      (p.disp_count_h - 1) * p.disp_step_h + 1,
      1,
      std::max<int64_t>(1, p.height));
  // With one vertical displacement the steps are independent.
  const int64_t per_plane = p.disp_count_h == 1 ? steps : 1;
  const int64_t steps_per_item = steps / per_plane;
  const int64_t passes =
      (grad_input1.defined() ? 1 : 0) + (grad_input2.defined() ? 1 : 0);
  at::parallel_for(
      0,
      p.batch * p.groups * per_plane,
      geo.grain(steps_per_item, passes),
      [&](int64_t begin, int64_t end) {
        NarrowBackwardScratch<opmath_t> s{
            std::vector<opmath_t>(geo.in1.size() + kNarrowSlack),
            std::vector<opmath_t>(geo.in2.size() + kNarrowSlack),
            std::vector<opmath_t>(D * geo.go_length),
            std::vector<opmath_t>(grad_input1.defined() ? geo.grad1.size() : 0),
            std::vector<opmath_t>(
                grad_input2.defined() ? ring * geo.in2.size() : 0),
            std::vector<opmath_t>(kTransposeTile * std::max(D, Cg))};
        // Consecutive items of one plane are consecutive steps: run them
        // as one range.
        int64_t item = begin;
        while (item < end) {
          const int64_t plane = item / per_plane;
          const int64_t index = item % per_plane;
          const int64_t count = std::min(end - item, per_plane - index);
          narrow_backward_rows<scalar_t>(
              grad_input1,
              grad_input2,
              grad_output,
              input1,
              input2,
              geo,
              ring,
              plane / p.groups,
              plane % p.groups,
              first + index * steps_per_item,
              first + (index + count) * steps_per_item,
              s);
          item += count;
        }
      });
}

}  // namespace
}  // namespace at::native
