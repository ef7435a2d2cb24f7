#define TORCH_ASSERT_NO_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/core/TensorBase.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <ATen/native/cpu/SpatialCorrelationKernel.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

// NOTE [ Correlation CPU Kernels ]
//
// All three kernels (forward, grad_input1, grad_input2) work on one image row
// at a time and vectorize along the row, so every inner loop is a run of
// contiguous vector loads and FMAs with no horizontal reductions, and the
// values reused across the channel loop stay in registers:
//
//   forward:      acc[a*Kx+b][ox] += sum_c A[c][ox + ...] * B[c][ox + ... + b]
//   grad_input1:  G1[c][ox + ...] += sum_b go[a*Kx+b][ox] * B[c][ox + ... + b]
//   grad_input2:  G2[c][t] += sum_(j,b) go[a*Kx+b][t - shift] * A[c][t - shift
//   + ...]
//
// where A and B are rows of input1 and input2 (one channel group), copied
// into a small per-thread scratch in the accumulation type. The copy does
// three jobs at once: it converts half/bfloat16 to float, it reads any memory
// layout (NCHW, channels_last through tile transposes, arbitrary strides),
// and it leaves the scratch's columns outside the image at zero, so the inner
// loops need no bounds checks and no padded copy of a whole input is ever
// made. The rows span the image, not the displacement range: displacements
// that only reach outside the image are skipped (RowGeometry::b_begin/b_end).
//
// With an output stride s > 1, the pixels that output ox reads are
// ox*s + const, which is not contiguous in ox. The scratch row therefore
// stores the columns "phase split": column x (relative to the row's origin)
// lives at phase (x % s), index (x / s), so x = ox*s + r is at phase r % s,
// index ox + r / s -- contiguous in ox for every r.
//
// Rows are reused: output row oy reads input rows oy*s_h + i*dil_h + dy for
// all kernel rows i and displacements dy, and neighbouring output rows read
// mostly the same input rows. Each thread keeps a small LRU cache of
// converted rows, so each input row is converted about once per thread.
// (With groups and channels_last, the groups of a pixel are adjacent in
// memory, so the work items take the groups of a row block in turn and the
// cache keeps one partition per group; see groups_inner.)
//
// Float and double rows with unit column stride (NCHW, unit horizontal
// stride) need no conversion, so the rows the kernels stream (input2 in the
// forward and grad_input1, input1 in grad_input2) are read in place, with no
// copy and no cache: vectors that cross the image's edge load only their
// lanes inside it (load_lanes, a masked load). Only the forward's input1
// rows, reused from L1 by every row of input2, are still copied, a piece of
// channels at a time (InPlaceForwardRows). The caches above serve
// the other cases (half, bfloat16, channels_last, a horizontal stride). The
// backward's are bounded by a budget, a share of the memory the caller
// already holds (plan_strips): when whole rows would exceed it, a work item
// is a strip of row blocks that walks its group's channels in chunks,
// outermost, so the caches hold one chunk of each row and the strip's
// blocks still share it; the gradient rows are final after each chunk. The
// forward's cached path keeps whole rows: its sums would have to be kept
// between chunks, which costs more than the rows' reuse saves.
//
// Each vector of input2 that feeds an FMA is a window at a different offset
// (an unaligned load), so the loads, not the FMAs, limit these loops. A work
// item therefore covers up to kMaxRows rows spaced so that they meet the
// same rows of the other input at neighbouring vertical displacements; each
// load of that other input then feeds all of them (ForwardBlock and
// GatherBlock's NR), with NR x NB accumulators or weights in registers.
//
// The backward is a gather: each thread owns whole rows of a gradient and
// sums every term that reaches them, so no two threads write the same
// element and the result does not depend on scheduling.
//
// The file, in order: row layouts, loads and stores, and the row cache;
// the vector helpers and the block kernels (ForwardBlock, GatherBlock);
// work items (RowBlocks, StripPlan); the row geometry (RowGeometry); the
// forward (correlation_forward_rows, with CachedForwardRows or
// InPlaceForwardRows as its reading policy); the backward
// (correlation_gradient, with Input1Gradient or Input2Gradient as the
// gradient it computes); the dispatch entries.

namespace at::native {
namespace {

// Geometry of one scratch row: `channels` channels of `phases * length`
// accumulation-type values; column x of the image (x >= origin) is at
// phase (x - origin) % phases, index (x - origin) / phases.
struct RowLayout {
  int64_t origin = 0;
  int64_t phases = 1;
  int64_t length = 0;
  int64_t channels = 0;

  int64_t channel_stride() const {
    return phases * length;
  }
  int64_t size() const {
    return channels * channel_stride();
  }
  // Offset of relative column r >= 0 (r = x - origin).
  int64_t offset(int64_t r) const {
    return (r % phases) * length + r / phases;
  }
};

// Strided view of one (n, channel group) plane of a batched 4D tensor.
template <typename scalar_t>
struct Plane {
  scalar_t* data;
  int64_t stride_c, stride_h, stride_w;
};

// Inputs are only read (const_data_ptr never materializes a lazy copy);
// outputs are written.
template <typename T>
Plane<T> plane_of(const TensorBase& t, int64_t n, int64_t c0) {
  T* base = nullptr;
  if constexpr (std::is_const_v<T>) {
    base = static_cast<T*>(t.const_data_ptr());
  } else {
    base = static_cast<T*>(t.mutable_data_ptr());
  }
  return {
      base + n * t.stride(0) + c0 * t.stride(1),
      t.stride(1),
      t.stride(2),
      t.stride(3)};
}

// Pixels per transposed tile of a channels_last row (one AVX512 float vector).
constexpr int64_t kTransposeTile = 16;

// Pixel-major to value-major: the `values` contiguous values of each of
// `pixels` pixels, `pixel_stride` apart in `src`, go to
// dst[v * ld_dst + t], converted to opmath_t. Same-type data is transposed
// straight from the source; a conversion goes through `tile`
// (kTransposeTile * values).
template <typename scalar_t, typename opmath_t>
void load_transposed(
    const scalar_t* src,
    int64_t pixel_stride,
    int64_t pixels,
    int64_t values,
    opmath_t* dst,
    int64_t ld_dst,
    opmath_t* tile) {
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    vec::transpose_mxn<opmath_t>(
        src,
        pixel_stride,
        dst,
        ld_dst,
        static_cast<int>(pixels),
        static_cast<int>(values));
  } else {
    for (int64_t t0 = 0; t0 < pixels; t0 += kTransposeTile) {
      const int64_t count = std::min(kTransposeTile, pixels - t0);
      for (const auto q : c10::irange(count)) {
        vec::convert(src + (t0 + q) * pixel_stride, tile + q * values, values);
      }
      vec::transpose_mxn<opmath_t>(
          tile,
          values,
          dst + t0,
          ld_dst,
          static_cast<int>(count),
          static_cast<int>(values));
    }
  }
}

// The inverse of load_transposed: src[v * ld_src + t] for v < values and
// t < pixels goes to the `values` contiguous scalar_t of pixel t at
// dst + t * pixel_stride, through `tile` (kTransposeTile * values), so the
// destination is written in order rather than by stores one pixel apart.
template <typename scalar_t, typename opmath_t>
void store_transposed(
    const opmath_t* src,
    int64_t ld_src,
    int64_t pixels,
    int64_t values,
    scalar_t* dst,
    int64_t pixel_stride,
    opmath_t* tile) {
  for (int64_t t0 = 0; t0 < pixels; t0 += kTransposeTile) {
    const int64_t count = std::min(kTransposeTile, pixels - t0);
    vec::transpose_mxn<opmath_t>(
        src + t0,
        ld_src,
        tile,
        values,
        static_cast<int>(values),
        static_cast<int>(count));
    if (pixel_stride == values) {
      // Consecutive pixels are adjacent: one sequential copy.
      vec::convert(tile, dst + t0 * pixel_stride, count * values);
    } else {
      for (const auto q : c10::irange(count)) {
        vec::convert(tile + q * values, dst + (t0 + q) * pixel_stride, values);
      }
    }
  }
}

// Copies row y of `plane` (channels [0, layout.channels)) into `dst` in the
// phase-split layout, converting to opmath_t. Only the columns inside
// [0, width) are written: the others are the same for every row of a layout,
// so `dst` holds their zeros from its initialization (see RowCache).
// `tile` holds kTransposeTile * layout.channels values; it is used only when
// the channels are the inner dimension (channels_last).
template <typename scalar_t, typename opmath_t>
void load_row(
    const Plane<const scalar_t>& plane,
    int64_t y,
    int64_t width,
    const RowLayout& layout,
    opmath_t* dst,
    opmath_t* tile) {
  const int64_t step = layout.phases;
  const int64_t cs = layout.channel_stride();
  // Channel-major reads (NCHW) walk each channel's row; channel-minor
  // reads (channels_last) walk the channels of each pixel, so that the
  // source is read contiguously either way.
  const bool channels_inner = plane.stride_c < plane.stride_w;
  const scalar_t* src_row = plane.data + y * plane.stride_h;
  for (const auto p : c10::irange(step)) {
    // Column x = origin + p + t * step for t in [0, length).
    const int64_t x0 = layout.origin + p;
    // First and one-past-last t with 0 <= x < width.
    const int64_t t_begin =
        x0 >= 0 ? 0 : std::min(layout.length, (-x0 + step - 1) / step);
    const int64_t t_end = x0 >= width
        ? t_begin
        : std::max(
              t_begin, std::min(layout.length, (width - 1 - x0) / step + 1));
    const int64_t x_step = step * plane.stride_w;
    const scalar_t* first = src_row + (x0 + t_begin * step) * plane.stride_w;
    opmath_t* out = dst + p * layout.length;
    if (channels_inner && plane.stride_c == 1) {
      load_transposed(
          first,
          x_step,
          t_end - t_begin,
          layout.channels,
          out + t_begin,
          cs,
          tile);
    } else if (channels_inner) {
      // Strided channels: each pixel's channels gathered into a pixel-major
      // tile, which one transpose turns into the channel-major scratch.
      const int64_t channels = layout.channels;
      for (int64_t t0 = t_begin; t0 < t_end; t0 += kTransposeTile) {
        const int64_t pixels = std::min(kTransposeTile, t_end - t0);
        for (const auto q : c10::irange(pixels)) {
          const scalar_t* s = first + (t0 - t_begin + q) * x_step;
          for (const auto c : c10::irange(channels)) {
            tile[q * channels + c] =
                static_cast<opmath_t>(s[c * plane.stride_c]);
          }
        }
        vec::transpose_mxn<opmath_t>(
            tile,
            channels,
            out + t0,
            cs,
            static_cast<int>(pixels),
            static_cast<int>(channels));
      }
    } else if (x_step == 1) {
      for (const auto c : c10::irange(layout.channels)) {
        vec::convert(
            first + c * plane.stride_c,
            out + c * cs + t_begin,
            t_end - t_begin);
      }
    } else {
      for (const auto c : c10::irange(layout.channels)) {
        const scalar_t* s = first + c * plane.stride_c;
        opmath_t* o = out + c * cs;
        for (int64_t t = t_begin; t < t_end; ++t, s += x_step) {
          o[t] = static_cast<opmath_t>(*s);
        }
      }
    }
  }
}

// A per-thread LRU cache of converted rows of one input, a chunk of
// channels at a time. Entries are keyed by (plane, first channel, y); each
// slot holds up to `chunk` channels of a row. Capacity is the number of
// distinct rows one work item reads, so the rows of the current block are
// never evicted while in use. With `partitions` == groups, each group has its
// own `capacity` slots, for work items that walk the groups of a row block in
// turn (see groups_inner). The storage starts zeroed and load_row writes only
// the columns inside the image, which are the same for every row, so the
// columns outside stay zero with no per-row fill.
template <typename scalar_t, typename opmath_t>
class RowCache {
 public:
  RowCache(
      const TensorBase& input,
      int64_t channels_per_group,
      int64_t height,
      int64_t width,
      RowLayout layout,
      int64_t chunk,
      int64_t capacity,
      int64_t partitions = 1)
      : input_(input),
        channels_per_group_(channels_per_group),
        height_(height),
        width_(width),
        layout_(layout),
        slot_size_(chunk * layout.channel_stride()),
        capacity_(capacity),
        keys_(capacity * partitions, -1),
        last_use_(capacity * partitions, 0),
        storage_(capacity * partitions * slot_size_),
        // Only channels_last rows that need a conversion or a gather of
        // strided channels go through the transpose tile (see load_row).
        tile_(
            input.stride(1) < input.stride(3) &&
                    (!std::is_same_v<scalar_t, opmath_t> ||
                     input.stride(1) != 1)
                ? kTransposeTile * chunk
                : 0) {}

  // Channels [c0, c0 + count) (count <= chunk) of row y of plane (n, g), in
  // the layout's channel stride; y must be inside the image.
  const opmath_t* get(
      int64_t n,
      int64_t g,
      int64_t groups,
      int64_t y,
      int64_t c0,
      int64_t count) {
    const int64_t key =
        ((n * groups + g) * channels_per_group_ + c0) * height_ + y;
    ++clock_;
    const int64_t first_slot =
        keys_.size() > static_cast<size_t>(capacity_) ? g * capacity_ : 0;
    int64_t victim = first_slot;
    for (const auto s : c10::irange(first_slot, first_slot + capacity_)) {
      if (keys_[s] == key) {
        last_use_[s] = clock_;
        return storage_.data() + s * slot_size_;
      }
      if (last_use_[s] < last_use_[victim]) {
        victim = s;
      }
    }
    opmath_t* row = storage_.data() + victim * slot_size_;
    const Plane<const scalar_t> plane =
        plane_of<const scalar_t>(input_, n, g * channels_per_group_ + c0);
    RowLayout chunk_layout = layout_;
    chunk_layout.channels = count;
    load_row<scalar_t, opmath_t>(
        plane, y, width_, chunk_layout, row, tile_.data());
    keys_[victim] = key;
    last_use_[victim] = clock_;
    return row;
  }

 private:
  const TensorBase& input_;
  int64_t channels_per_group_, height_, width_;
  RowLayout layout_;
  int64_t slot_size_;
  int64_t capacity_;
  std::vector<int64_t> keys_;
  std::vector<int64_t> last_use_;
  std::vector<opmath_t> storage_;
  std::vector<opmath_t> tile_;
  int64_t clock_ = 0;
};

// Largest number of displacements whose accumulators (or weights) stay in
// registers across the channel loop.
constexpr int kMaxBlock = 12;

// Vector registers of the capability this file is compiled for.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kVectorRegisters = 32;
#else
constexpr int kVectorRegisters = 16;
#endif

// Rows that one work item of each kernel processes together (see NOTE
// above): each load of the other input feeds up to this many accumulator or
// gradient rows, which cuts the loads per FMA that limit the kernels.
constexpr int kMaxRows = 3;

// Largest displacement block for NR rows: NR * NB accumulators, NR values of
// input1 and one of input2 must fit in the vector registers.
constexpr int max_block(int rows) {
  return std::min(kMaxBlock, (kVectorRegisters - 1 - rows) / rows);
}

// Bytes of scratch rows a channel piece may fill so that it stays in L1
// (about half of a 32-48 KiB L1d) while the other rows stream past it.
constexpr int64_t kL1Bytes = 24 * 1024;

// ---------------------------------------------------------------------------
// Vector helpers beyond at::vec. Each has a plain at::vec version beside the
// ISA-specific one, which the capabilities without it (DEFAULT) compile.

// Keeps a loaded vector in a register: GCC otherwise folds the load into
// every FMA that uses it (a memory operand), so a value loaded once for NR
// rows would be read from L1 NR times. at::vec has no way to say this; an
// empty asm with a vector-register operand does, and changes no value.
template <typename Vec>
inline Vec in_register(Vec v) {
  return v;
}
#if defined(__GNUC__) && defined(CPU_CAPABILITY_AVX512)
inline vec::Vectorized<float> in_register(vec::Vectorized<float> v) {
  __m512 raw = v;
  asm("" : "+v"(raw));
  return raw;
}
inline vec::Vectorized<double> in_register(vec::Vectorized<double> v) {
  __m512d raw = v;
  asm("" : "+v"(raw));
  return raw;
}
#elif defined(__GNUC__) && defined(CPU_CAPABILITY_AVX2)
inline vec::Vectorized<float> in_register(vec::Vectorized<float> v) {
  __m256 raw = v;
  asm("" : "+x"(raw));
  return raw;
}
inline vec::Vectorized<double> in_register(vec::Vectorized<double> v) {
  __m256d raw = v;
  asm("" : "+x"(raw));
  return raw;
}
#endif

// Loads a vector of the input that NR rows share: once, into a register,
// when it feeds several FMAs.
template <int NR, typename opmath_t>
inline vec::Vectorized<opmath_t> load_shared(const opmath_t* ptr) {
  using Vec = vec::Vectorized<opmath_t>;
  if constexpr (NR > 1) {
    return in_register(Vec::loadu(ptr));
  } else {
    return Vec::loadu(ptr);
  }
}

// The vector at `ptr` with lanes [lo, hi) read from memory and the others
// zero; memory outside those lanes is not touched, so `ptr` may point before
// the start of a row of the image. Masked-load intrinsics because at::vec's
// partial load, Vectorized::loadu(ptr, count), reads only a prefix of lanes.
template <typename opmath_t>
inline vec::Vectorized<opmath_t> load_lanes(
    const opmath_t* ptr,
    int lo,
    int hi) {
  using Vec = vec::Vectorized<opmath_t>;
#if defined(CPU_CAPABILITY_AVX512)
  const auto mask = ((1u << hi) - 1u) & ~((1u << lo) - 1u);
  if constexpr (std::is_same_v<opmath_t, float>) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask), ptr);
  } else {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>(mask), ptr);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<opmath_t, float>) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_and_si256(
        _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 1)),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
    return _mm256_maskload_ps(ptr, mask);
  } else {
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i mask = _mm256_and_si256(
        _mm256_cmpgt_epi64(lane, _mm256_set1_epi64x(lo - 1)),
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(hi), lane));
    return _mm256_maskload_pd(ptr, mask);
  }
#else
  __at_align__ opmath_t lanes[Vec::size()] = {};
  for (int l = lo; l < hi; ++l) {
    lanes[l] = ptr[l];
  }
  return Vec::loadu(lanes);
#endif
}

// ---------------------------------------------------------------------------
// Block kernels: the register-blocked inner loops (see NOTE above).
//
// The rows a block streams (b) are either scratch rows, where every column a
// vector reaches is stored (zeros outside the image), or, with kInPlace, rows
// of the input itself: b[k] points at the column of lane 0 of vector 0, which
// is image column edges.x[k], and a vector that crosses the image's edges
// loads only its lanes inside [0, edges.width), so the columns outside read
// as zeros.
struct ImageEdges {
  const int64_t* x = nullptr;
  int64_t width = 0;

  // Lanes [lo[k], hi[k]) of vector t of each of the NB rows that lie in the
  // image; returns whether that is every lane of every row.
  template <int NB>
  bool lanes(int64_t t, int64_t size, int* lo, int* hi) const {
    bool inside = true;
    for (int k = 0; k < NB; ++k) {
      const int64_t x0 = x[k] + t;
      lo[k] = static_cast<int>(std::clamp<int64_t>(-x0, 0, size));
      hi[k] = static_cast<int>(std::clamp<int64_t>(width - x0, lo[k], size));
      inside &= lo[k] == 0 && hi[k] == size;
    }
    return inside;
  }
};

// forward, NR rows at once: for t in [0, width), r < NR, k < NB,
//   acc[r * NB + k][t] += sum_c a[r][c][t] * b[k][c][t],
// with a scratch rows and b streamed as above.
template <int NR, int NB, bool kInPlace>
struct ForwardBlock {
  template <typename opmath_t>
  static void run(
      opmath_t* const* acc,
      const opmath_t* const* a,
      const opmath_t* const* b,
      int64_t channels,
      int64_t a_cstride,
      int64_t b_cstride,
      int64_t width,
      const ImageEdges& edges) {
    using Vec = vec::Vectorized<opmath_t>;
    for (int64_t t = 0; t < width; t += Vec::size()) {
      int lo[NB], hi[NB];
      const bool inside = !kInPlace || edges.lanes<NB>(t, Vec::size(), lo, hi);
      Vec sums[NR][NB];
      for (int r = 0; r < NR; ++r) {
        for (int k = 0; k < NB; ++k)
          sums[r][k] = Vec::loadu(acc[r * NB + k] + t);
      }
      const auto accumulate = [&](const auto& load_b) {
        for (int64_t c = 0; c < channels; ++c) {
          Vec av[NR];
          for (int r = 0; r < NR; ++r)
            av[r] = Vec::loadu(a[r] + c * a_cstride + t);
          for (int k = 0; k < NB; ++k) {
            const Vec bv = load_b(b[k] + c * b_cstride + t, k);
            for (int r = 0; r < NR; ++r)
              sums[r][k] = vec::fmadd(av[r], bv, sums[r][k]);
          }
        }
      };
      if (inside) {
        accumulate(
            [](const opmath_t* ptr, int) { return load_shared<NR>(ptr); });
      } else if constexpr (kInPlace) {
        accumulate([&](const opmath_t* ptr, int k) {
          return load_lanes(ptr, lo[k], hi[k]);
        });
      }
      for (int r = 0; r < NR; ++r) {
        for (int k = 0; k < NB; ++k)
          sums[r][k].store(acc[r * NB + k] + t);
      }
    }
  }
};

// backward, NR gradient rows at once: for t in [0, width), r < NR,
//   g[r][c][t] += sum_k w[r * NB + k][t] * b[k][c][t],
// with b streamed as above. The weights (rows of grad_output) stay in
// registers across the channel loop, and each load of b feeds all NR rows.
template <int NR, int NB, bool kInPlace>
struct GatherBlock {
  template <typename opmath_t>
  static void run(
      opmath_t* const* g,
      const opmath_t* const* w,
      const opmath_t* const* b,
      int64_t channels,
      int64_t g_cstride,
      int64_t b_cstride,
      int64_t width,
      const ImageEdges& edges) {
    using Vec = vec::Vectorized<opmath_t>;
    for (int64_t t = 0; t < width; t += Vec::size()) {
      int lo[NB], hi[NB];
      const bool inside = !kInPlace || edges.lanes<NB>(t, Vec::size(), lo, hi);
      Vec weights[NR][NB];
      for (int r = 0; r < NR; ++r) {
        for (int k = 0; k < NB; ++k)
          weights[r][k] = Vec::loadu(w[r * NB + k] + t);
      }
      const auto gather = [&](const auto& load_b) {
        for (int64_t c = 0; c < channels; ++c) {
          Vec sums[NR];
          for (int r = 0; r < NR; ++r)
            sums[r] = Vec::loadu(g[r] + c * g_cstride + t);
          for (int k = 0; k < NB; ++k) {
            const Vec bv = load_b(b[k] + c * b_cstride + t, k);
            for (int r = 0; r < NR; ++r)
              sums[r] = vec::fmadd(weights[r][k], bv, sums[r]);
          }
          for (int r = 0; r < NR; ++r)
            sums[r].store(g[r] + c * g_cstride + t);
        }
      };
      if (inside) {
        gather([](const opmath_t* ptr, int) { return load_shared<NR>(ptr); });
      } else if constexpr (kInPlace) {
        gather([&](const opmath_t* ptr, int k) {
          return load_lanes(ptr, lo[k], hi[k]);
        });
      }
    }
  }
};

// Calls Block<nr, nb, kInPlace>::run(args...) for a runtime nr in
// [1, kMaxRows] and nb in [1, max_block(nr)].
template <
    template <int, int, bool>
    class Block,
    bool kInPlace,
    int NR = 1,
    int NB = 1,
    typename... Args>
void dispatch_block(int nr, int nb, Args&&... args) {
  if constexpr (NR < kMaxRows) {
    if (nr != NR) {
      dispatch_block<Block, kInPlace, NR + 1, 1>(
          nr, nb, std::forward<Args>(args)...);
      return;
    }
  }
  if constexpr (NB < max_block(NR)) {
    if (nb != NB) {
      dispatch_block<Block, kInPlace, NR, NB + 1>(
          nr, nb, std::forward<Args>(args)...);
      return;
    }
  }
  Block<NR, NB, kInPlace>::run(std::forward<Args>(args)...);
}

// Splits [0, count) into the fewest blocks of at most max_size, of nearly
// equal size (9 -> 5 + 4 rather than 8 + 1: a block of one would load as
// much as it computes), and calls fn(begin, size) for each.
template <typename Fn>
void for_each_block(int64_t count, const Fn& fn, int64_t max_size = kMaxBlock) {
  const int64_t blocks = (count + max_size - 1) / max_size;
  int64_t begin = 0;
  for (const auto blk : c10::irange(blocks)) {
    const int64_t size = (count - begin) / (blocks - blk);
    fn(begin, static_cast<int>(size));
    begin += size;
  }
}

// ---------------------------------------------------------------------------
// Work items.

// Rows [0, rows) split into blocks of at most max_rows rows spaced
// `spacing` apart: block b holds first[b] + r * spacing for r < count[b].
struct RowBlocks {
  std::vector<int64_t> first;
  std::vector<int> count;

  RowBlocks(int64_t rows, int64_t spacing, int max_rows) {
    for (int64_t q = 0; q < std::min(rows, spacing); ++q) {
      for (int64_t y = q; y < rows; y += spacing * max_rows) {
        first.push_back(y);
        count.push_back(static_cast<int>(
            std::min<int64_t>(max_rows, (rows - 1 - y) / spacing + 1)));
      }
    }
  }
  int64_t size() const {
    return static_cast<int64_t>(first.size());
  }
};

// Whether work items walk the groups of a row block before the next block.
// With groups and a channels_last input the groups of a pixel are adjacent
// in memory, so taking them in turn reads (and writes the output) in order;
// the NCHW planes of a group are contiguous, so there its blocks come first.
inline bool groups_inner(const TensorBase& input, const CorrelationParams& p) {
  return p.groups > 1 && input.stride(1) < input.stride(3);
}

// Work item `item` of a loop over (n, group, index < per_plane), index
// fastest, or over (n, index, group), group fastest, if `groups_inner`.
struct PlaneItem {
  int64_t n, g, index;
};
inline PlaneItem plane_item(
    int64_t item,
    int64_t groups,
    int64_t per_plane,
    bool groups_inner) {
  const int64_t n = item / (per_plane * groups);
  if (groups_inner) {
    return {n, item % groups, (item / groups) % per_plane};
  }
  return {n, (item / per_plane) % groups, item % per_plane};
}

// How the backward's work items cover its planes. An item is a strip of
// consecutive row blocks of one (n, group) plane, and it walks the channels
// of its group in chunks, outermost: for each chunk, every block of the
// strip. The row caches then hold one chunk of each row, so their memory is
// bounded by a budget instead of growing with the channel count, and the
// blocks of a strip still share each converted row (only the rows at the
// strip's edges are converted more than once per chunk). See plan_strips.
struct StripPlan {
  int64_t blocks;  // row blocks per plane
  int64_t blocks_per_strip;
  int64_t strips;  // per plane
  int64_t chunk;  // channels per chunk

  StripPlan(int64_t blocks_, int64_t blocks_per_strip_, int64_t chunk_)
      : blocks(blocks_),
        blocks_per_strip(std::max<int64_t>(1, blocks_per_strip_)),
        strips((blocks_ + blocks_per_strip - 1) / blocks_per_strip),
        chunk(std::max<int64_t>(1, chunk_)) {}

  int64_t items(int64_t planes) const {
    return planes * strips;
  }

  struct Item {
    int64_t n, g, block_begin, block_end;
  };
  Item item(int64_t item, int64_t groups, bool groups_inner) const {
    const PlaneItem it = plane_item(item, groups, strips, groups_inner);
    const int64_t begin = it.index * blocks_per_strip;
    return {it.n, it.g, begin, std::min(blocks, begin + blocks_per_strip)};
  }

  // Calls fn(c0, count) for the chunks of `channels`: whole chunks, then
  // the rest.
  template <typename Fn>
  void for_each_chunk(int64_t channels, const Fn& fn) const {
    for (int64_t c0 = 0; c0 < channels; c0 += chunk) {
      fn(c0, std::min(chunk, channels - c0));
    }
  }
};

// Budgets of plan_strips. The static split of parallel_for balances the
// threads' work when each gets a few items.
constexpr int64_t kItemsPerThread = 4;
// The backward's row caches (half, bfloat16, channels_last, a horizontal
// stride: see the NOTE) of all threads together take at most
// 1/kBackwardCacheShare of `result_bytes`, grad_output and the gradients,
// which the caller already pays for, but never less than kMinCacheBytes per
// thread, which small calls need not save. Every chunk beyond the first
// repeats the conversion of grad_output's rows (a transpose for
// channels_last), so the share is as large as keeps the rows of typical flow
// levels whole.
constexpr int64_t kBackwardCacheShare = 8;
constexpr int64_t kMinCacheBytes = 64 * 1024;

// Strips and chunks for `planes` planes of `blocks` row blocks of
// `channels` channels: as many strips as give each thread kItemsPerThread
// items, and chunks as large as the cache budget allows, the caches needing
// `cache_bytes_per_channel` per channel of a chunk. Chunks are whole multiples
// of `piece` (the L1 pieces the kernels split them into), so the budget, which
// depends on the thread count, moves chunk boundaries only between pieces,
// where it does not change the order of any sum's terms: results do not depend
// on the number of threads.
inline StripPlan plan_strips(
    int64_t planes,
    int64_t blocks,
    int64_t channels,
    int64_t cache_bytes_per_channel,
    int64_t result_bytes,
    int64_t piece) {
  const int64_t threads = at::get_num_threads();
  const int64_t wanted_strips = std::clamp<int64_t>(
      (kItemsPerThread * threads + planes - 1) / std::max<int64_t>(1, planes),
      1,
      std::max<int64_t>(1, blocks));
  const int64_t blocks_per_strip = std::clamp<int64_t>(
      (blocks + wanted_strips - 1) / wanted_strips,
      1,
      std::max<int64_t>(1, blocks));
  const int64_t items =
      planes * ((blocks + blocks_per_strip - 1) / blocks_per_strip);
  const int64_t busy = std::clamp<int64_t>(items, 1, threads);
  const int64_t budget =
      std::max(kMinCacheBytes, result_bytes / kBackwardCacheShare / busy);
  const int64_t fit = budget / std::max<int64_t>(1, cache_bytes_per_channel);
  const int64_t chunk = std::clamp<int64_t>(
      std::max<int64_t>(1, fit / piece) * piece,
      1,
      std::max<int64_t>(1, channels));
  return StripPlan(blocks, blocks_per_strip, chunk);
}

// ---------------------------------------------------------------------------
// Row geometry and the reading of rows in place.

// Whether the kernels read `input`'s rows in place rather than through
// converted copies: float or double rows with unit column stride, read at
// unit horizontal stride (no phase split).
template <typename scalar_t>
bool rows_in_place(const TensorBase& input, const CorrelationParams& p) {
  return std::is_same_v<scalar_t, at::opmath_type<scalar_t>> &&
      p.stride_w == 1 && input.stride(3) == 1;
}

// Row y, channel c of plane (n, g) of a float or double input, at image
// column 0.
template <typename opmath_t>
const opmath_t* image_row(
    const TensorBase& t,
    const CorrelationParams& p,
    int64_t n,
    int64_t g,
    int64_t c,
    int64_t y) {
  return t.const_data_ptr<opmath_t>() + n * t.stride(0) +
      (g * p.channels_per_group() + c) * t.stride(1) + y * t.stride(2);
}

// The column of a streamed row that lane 0 of vector 0 reads: relative
// column `column` (>= 0) of a scratch row in `layout`, or, for a row read in
// place (`row` at image column 0), image column layout.origin + column, which
// is also stored in `x` for the masks (ImageEdges).
template <typename opmath_t>
inline const opmath_t* streamed_column(
    const opmath_t* row,
    const RowLayout& layout,
    int64_t column,
    bool in_place,
    int64_t& x) {
  if (in_place) {
    x = layout.origin + column;
    return row + x;
  }
  return row + layout.offset(column);
}

// Row geometry shared by the three kernels.
//
// Output column ox reads input1 column ox*s - pad + j*dil (kernel column j)
// and input2 column ox*s - pad + j*dil + dx_min + b*disp_step. In input2's
// phase-split row that is relative column ox*s + r with
// r = j*dil + b*disp_step, i.e. phase r % s, index ox + r / s.
//
// grad_input2 gathers, for a fixed destination index t of input2's row, the
// terms of every (j, b) of that phase: output column ox = t - r / s. Reading
// grad_output and input1 at t - r / s needs up to `shift_max` zero columns
// in front of them, so input1's rows start shift_max phase-columns early.
template <typename opmath_t>
struct RowGeometry {
  const CorrelationParams& p;
  int64_t width_padded;  // out_w rounded up to whole vectors
  int64_t shift_max;  // largest r / s over all (j, b)
  int64_t width2;  // destination width of grad_input2's gather (whole vectors)
  int64_t go_stride;  // row stride of the grad_output scratch
  RowLayout in1;  // rows of input1 (and of grad_input1)
  RowLayout in2;  // rows of input2 (and of grad_input2)
  int64_t
      channel_chunk;  // channels whose rows of both inputs fit in L1 together
  // Horizontal displacements [b_begin, b_end) whose input2 columns can fall
  // inside the image; the others read only zeros and are skipped, so the
  // rows stay as wide as the image, not as the displacement range.
  int64_t b_begin, b_end;
  int64_t work_per_row;  // multiply-adds of one output row (any kernel)

  explicit RowGeometry(const CorrelationParams& params) : p(params) {
    const int64_t vec_size = vec::Vectorized<opmath_t>::size();
    const auto round_up = [vec_size](int64_t v) {
      return (v + vec_size - 1) / vec_size * vec_size;
    };
    const auto floor_div = [](int64_t a, int64_t b) {
      return a >= 0 ? a / b : -((-a + b - 1) / b);
    };
    const int64_t s = p.stride_w;
    const int64_t kernel_span = (p.kernel_w - 1) * p.dilation_w;
    // Input2 columns of displacement b span [first + b*step, last + b*step].
    const int64_t first = -p.pad_w + p.disp_min_w;
    const int64_t last = first + (p.out_w - 1) * s + kernel_span;
    const int64_t step = p.disp_step_w;
    b_begin = std::clamp<int64_t>(
        -floor_div(last, step), 0, p.disp_count_w);  // ceil(-last / step)
    b_end = std::clamp<int64_t>(
        floor_div(p.width - 1 - first, step) + 1, b_begin, p.disp_count_w);
    if (b_begin == b_end) {
      b_begin = b_end = 0;
    }
    const int64_t disp_span = std::max<int64_t>(0, b_end - b_begin - 1) * step;
    width_padded = round_up(p.out_w);
    shift_max = (kernel_span + disp_span) / s;
    width2 = round_up(p.out_w + shift_max);
    go_stride = shift_max + width2;

    in1.origin = -p.pad_w - shift_max * s;
    in1.phases = s;
    in1.channels = p.channels_per_group();
    // Every vector the kernels read (index up to shift_max + kernel_span / s
    // + width2), and every image column (grad_input1 is read back whole).
    in1.length = std::max(
                     shift_max + kernel_span / s + width2,
                     (p.width - 1 - in1.origin) / s) +
        1;

    // With no displacement inside the image nothing is read or gathered:
    // any origin will do, the image's own keeps the row short.
    in2.origin = b_begin < b_end ? first + b_begin * step : -p.pad_w;
    in2.phases = s;
    in2.channels = p.channels_per_group();
    in2.length = std::max(
                     std::max(width2, shift_max + width_padded),
                     (p.width - 1 - in2.origin) / s) +
        1;

    // Every displacement block sweeps the same rows of a channel piece, so
    // a piece whose rows of both inputs stay in L1 is read from L2 once
    // instead of once per block.
    const int64_t chunk_bytes = static_cast<int64_t>(sizeof(opmath_t)) *
        (in1.channel_stride() + in2.channel_stride());
    channel_chunk = std::max<int64_t>(1, kL1Bytes / chunk_bytes);
    work_per_row = p.kernel_h * p.kernel_w * p.displacements() *
        std::max<int64_t>(1, p.channels_per_group()) * p.out_w;
  }

  // Calls fn(c, count) for consecutive L1-sized pieces [c, c + count) of
  // the channels [0, channels) of a cached chunk.
  template <typename Fn>
  void for_each_l1_chunk(int64_t channels, const Fn& fn) const {
    for (int64_t c = 0; c < channels; c += channel_chunk) {
      fn(c, std::min(channel_chunk, channels - c));
    }
  }

  // Relative column (within in1's row) of output 0, kernel column j.
  int64_t in1_column(int64_t j) const {
    return j * p.dilation_w + shift_max * p.stride_w;
  }
  // Relative column (within in2's row) of output 0, kernel column j,
  // displacement b in [b_begin, b_end).
  int64_t in2_column(int64_t j, int64_t b) const {
    return j * p.dilation_w + (b - b_begin) * p.disp_step_w;
  }
  // Calls fn(b0, count) for blocks of at most max_size displacements of
  // [b_begin, b_end), as for_each_block.
  template <typename Fn>
  void for_each_disp_block(const Fn& fn, int64_t max_size) const {
    for_each_block(
        b_end - b_begin,
        [&](int64_t b0, int nb) { fn(b_begin + b0, nb); },
        max_size);
  }
  int64_t dy(int64_t a) const {
    return p.disp_min_h + a * p.disp_step_h;
  }
  // parallel_for's grain for items of `rows` output rows' work each.
  int64_t grain(int64_t rows) const {
    return std::max<int64_t>(
        1,
        at::internal::GRAIN_SIZE / std::max<int64_t>(1, work_per_row * rows));
  }
};

// v[i] *= scale for i < count.
template <typename opmath_t>
void scale_in_place(opmath_t* v, int64_t count, opmath_t scale) {
  using Vec = vec::Vectorized<opmath_t>;
  int64_t i = 0;
  for (; i + Vec::size() <= count; i += Vec::size()) {
    (Vec::loadu(v + i) * Vec(scale)).store(v + i);
  }
  if (i < count) {
    (Vec::loadu(v + i, count - i) * Vec(scale)).store(v + i, count - i);
  }
}

// Writes scale * acc (D rows of width_padded) into out[n, g*D + d, oy, :]
// through the output's strides, walking whichever of d and ox is contiguous
// in the output. Except for contiguous rows of the accumulation type, which
// are scaled as they are copied, acc is scaled in place first (it is zeroed
// before its next use).
// A channels_last output is written by store_transposed through `tile`
// (kTransposeTile pixels of D values).
template <typename scalar_t, typename opmath_t>
void write_output_row(
    const TensorBase& output,
    const CorrelationParams& p,
    int64_t width_padded,
    int64_t n,
    int64_t g,
    int64_t oy,
    opmath_t* acc,
    opmath_t* tile) {
  const int64_t D = p.displacements();
  scalar_t* out = output.data_ptr<scalar_t>() + n * output.stride(0) +
      g * D * output.stride(1) + oy * output.stride(2);
  const int64_t sd = output.stride(1);
  const int64_t sx = output.stride(3);
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    if (sx == 1) {
      // Contiguous rows of the output type: scaled on the way out, in one
      // pass over acc.
      using Vec = vec::Vectorized<opmath_t>;
      const Vec scale(static_cast<opmath_t>(p.scale));
      for (const auto d : c10::irange(D)) {
        const opmath_t* src = acc + d * width_padded;
        scalar_t* dst = out + d * sd;
        int64_t x = 0;
        for (; x + Vec::size() <= p.out_w; x += Vec::size()) {
          (Vec::loadu(src + x) * scale).store(dst + x);
        }
        if (x < p.out_w) {
          (Vec::loadu(src + x, p.out_w - x) * scale)
              .store(dst + x, p.out_w - x);
        }
      }
      return;
    }
  }
  scale_in_place(acc, D * width_padded, static_cast<opmath_t>(p.scale));
  if (sd == 1 && D > 1) {
    store_transposed(acc, width_padded, p.out_w, D, out, sx, tile);
    return;
  }
  if (sd < sx) {
    for (const auto ox : c10::irange(p.out_w)) {
      for (const auto d : c10::irange(D)) {
        out[ox * sx + d * sd] =
            static_cast<scalar_t>(acc[d * width_padded + ox]);
      }
    }
    return;
  }
  for (const auto d : c10::irange(D)) {
    const opmath_t* src = acc + d * width_padded;
    scalar_t* dst = out + d * sd;
    if (sx == 1) {
      vec::convert(src, dst, p.out_w);
    } else {
      for (const auto ox : c10::irange(p.out_w)) {
        dst[ox * sx] = static_cast<scalar_t>(src[ox]);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Forward.

// How the forward reads its rows. Both policies give, per work item and
// kernel row, input1's rows of the block (scratch rows, in pieces of
// `piece()` channels) and input2's rows (streamed: see ImageEdges).
//
// CachedForwardRows: any dtype, layout and stride. Both inputs' rows are
// converted into RowCaches that keep whole rows, which the next blocks
// reuse. Pieces are the channels whose rows of both inputs fit in L1.
template <typename scalar_t>
class CachedForwardRows {
 public:
  using opmath_t = at::opmath_type<scalar_t>;
  static constexpr bool kInPlace = false;

  CachedForwardRows(
      const TensorBase& input1,
      const TensorBase& input2,
      const RowGeometry<opmath_t>& geo,
      int64_t rows2_per_i,
      int64_t partitions)
      : geo_(geo),
        // No more slots than image rows: a vertical range beyond the image
        // reads no more distinct rows.
        rows1_(
            input1,
            geo.p.channels_per_group(),
            geo.p.height,
            geo.p.width,
            geo.in1,
            geo.p.channels_per_group(),
            std::min(geo.p.kernel_h * kMaxRows, geo.p.height),
            partitions),
        rows2_(
            input2,
            geo.p.channels_per_group(),
            geo.p.height,
            geo.p.width,
            geo.in2,
            geo.p.channels_per_group(),
            std::min(geo.p.kernel_h * rows2_per_i, geo.p.height),
            partitions) {}

  int64_t piece() const {
    return geo_.channel_chunk;
  }
  int64_t a_cstride() const {
    return geo_.in1.channel_stride();
  }
  int64_t b_cstride() const {
    return geo_.in2.channel_stride();
  }

  // Input1 rows y1[r] of plane (n, g) for the rows r < rows that are inside.
  void begin_kernel_row(
      int64_t n,
      int64_t g,
      const int64_t* y1,
      const bool* inside,
      int rows) {
    for (const auto r : c10::irange(rows)) {
      row1_[r] = inside[r]
          ? rows1_.get(
                n, g, geo_.p.groups, y1[r], 0, geo_.p.channels_per_group())
          : nullptr;
    }
  }
  void begin_piece(int64_t, int64_t, int64_t, int64_t) {}

  // Row r of the block, channel c0 (of the current piece), vector 0 of
  // kernel column j.
  const opmath_t* input1_row(int r, int64_t c0, int64_t j) const {
    return row1_[r] + c0 * geo_.in1.channel_stride() +
        geo_.in1.offset(geo_.in1_column(j));
  }
  // Row y2 of plane (n, g), from channel c0: the base of streamed_column.
  const opmath_t* input2_row(int64_t n, int64_t g, int64_t y2, int64_t c0) {
    return rows2_.get(n, g, geo_.p.groups, y2, 0, geo_.p.channels_per_group()) +
        c0 * geo_.in2.channel_stride();
  }

 private:
  const RowGeometry<opmath_t>& geo_;
  RowCache<scalar_t, opmath_t> rows1_;
  RowCache<scalar_t, opmath_t> rows2_;
  const opmath_t* row1_[kMaxRows] = {};
};

// InPlaceForwardRows: float and double inputs with unit column stride, at
// unit horizontal stride (rows_in_place). Input2 is read in place. Input1's
// rows, which only the current block reads (for one kernel row), are copied
// a piece of channels at a time into a small zero-padded scratch (columns
// from -pad_w, as many as the kernel columns of every output vector read)
// that stays in L1 while the rows of input2 stream past it.
template <typename opmath_t>
class InPlaceForwardRows {
 public:
  static constexpr bool kInPlace = true;

  InPlaceForwardRows(
      const TensorBase& input1,
      const TensorBase& input2,
      const RowGeometry<opmath_t>& geo,
      int64_t,
      int64_t)
      : input1_(input1),
        input2_(input2),
        geo_(geo),
        layout_(scratch_layout(geo)),
        // Zeros outside the image columns: load_row writes only those inside.
        rows1_(kMaxRows * layout_.size()) {}

  int64_t piece() const {
    return layout_.channels;
  }
  int64_t a_cstride() const {
    return layout_.channel_stride();
  }
  int64_t b_cstride() const {
    return input2_.stride(1);
  }

  void begin_kernel_row(
      int64_t,
      int64_t,
      const int64_t* y1,
      const bool* inside,
      int rows) {
    rows_ = rows;
    std::copy(y1, y1 + rows, y1_);
    std::copy(inside, inside + rows, inside_);
  }
  // Copies channels [c0, c0 + channels) of the block's input1 rows.
  void begin_piece(int64_t n, int64_t g, int64_t c0, int64_t channels) {
    const CorrelationParams& p = geo_.p;
    RowLayout layout = layout_;
    layout.channels = channels;
    const Plane<const opmath_t> plane =
        plane_of<const opmath_t>(input1_, n, g * p.channels_per_group() + c0);
    for (const auto r : c10::irange(rows_)) {
      if (inside_[r]) {
        load_row<opmath_t, opmath_t>(
            plane,
            y1_[r],
            p.width,
            layout,
            rows1_.data() + r * layout_.size(),
            nullptr);
      }
    }
  }
  const opmath_t* input1_row(int r, int64_t, int64_t j) const {
    return rows1_.data() + r * layout_.size() + j * geo_.p.dilation_w;
  }
  const opmath_t* input2_row(int64_t n, int64_t g, int64_t y2, int64_t c0)
      const {
    return image_row<opmath_t>(input2_, geo_.p, n, g, c0, y2);
  }

 private:
  // A piece of channels of kMaxRows scratch rows fills kL1Bytes.
  static RowLayout scratch_layout(const RowGeometry<opmath_t>& geo) {
    const CorrelationParams& p = geo.p;
    RowLayout layout;
    layout.origin = -p.pad_w;
    layout.phases = 1;
    layout.length = geo.width_padded + (p.kernel_w - 1) * p.dilation_w;
    layout.channels = std::clamp<int64_t>(
        kL1Bytes /
            (kMaxRows * layout.length * static_cast<int64_t>(sizeof(opmath_t))),
        1,
        std::max<int64_t>(1, p.channels_per_group()));
    return layout;
  }

  const TensorBase& input1_;
  const TensorBase& input2_;
  const RowGeometry<opmath_t>& geo_;
  RowLayout layout_;
  std::vector<opmath_t> rows1_;
  int rows_ = 0;
  int64_t y1_[kMaxRows] = {};
  bool inside_[kMaxRows] = {};
};

// The output rows of a forward work item: rows oy0 + r * spacing for
// r < rows, which read input1 rows that differ by a multiple of the vertical
// displacement step, so a row of input2 is at a valid displacement from
// several of them at once.
struct ForwardRows {
  int64_t spacing;  // output rows between the rows of a block
  int64_t row_step;  // the same, in vertical displacement steps
  int64_t rows2_per_i;  // distinct input2 rows one kernel row of a block reads
  RowBlocks blocks;

  explicit ForwardRows(const CorrelationParams& p)
      : spacing(p.disp_step_h / std::gcd(p.stride_h, p.disp_step_h)),
        row_step(spacing * p.stride_h / p.disp_step_h),
        rows2_per_i(p.disp_count_h + (kMaxRows - 1) * row_step),
        blocks(p.out_h, spacing, kMaxRows) {}
};

// Rows of a block (and their vertical displacement numbers) that one row of
// the other input meets.
struct RowPairs {
  int count = 0;
  int64_t r[kMaxRows];
  int64_t a[kMaxRows];
  int64_t oy[kMaxRows];  // output row of each pair (backward only)

  void add(int64_t r_, int64_t a_, int64_t oy_ = 0) {
    r[count] = r_;
    a[count] = a_;
    oy[count++] = oy_;
  }
};

// Adds to the accumulator rows of `pairs` (in acc: rows * D rows of
// width_padded) the terms of input2 row `row2` (channels [c0, c0 +
// channels), based as streamed_column wants) for every kernel column.
template <typename opmath_t, typename Rows>
void forward_row_pairs(
    const Rows& reads,
    const RowGeometry<opmath_t>& geo,
    const RowPairs& pairs,
    const opmath_t* row2,
    int64_t c0,
    int64_t channels,
    opmath_t* acc) {
  const CorrelationParams& p = geo.p;
  opmath_t* acc_rows[kMaxRows * kMaxBlock];
  const opmath_t* a_rows[kMaxRows];
  const opmath_t* b_rows[kMaxBlock];
  int64_t b_x[kMaxBlock];
  const ImageEdges edges{b_x, p.width};
  for (const auto j : c10::irange(p.kernel_w)) {
    for (const auto q : c10::irange(pairs.count)) {
      a_rows[q] = reads.input1_row(pairs.r[q], c0, j);
    }
    geo.for_each_disp_block(
        [&](int64_t b0, int nb) {
          for (const auto k : c10::irange(nb)) {
            b_rows[k] = streamed_column(
                row2,
                geo.in2,
                geo.in2_column(j, b0 + k),
                Rows::kInPlace,
                b_x[k]);
            for (const auto q : c10::irange(pairs.count)) {
              // acc rows are in output channel order (write_output_row).
              acc_rows[q * nb + k] = acc +
                  (pairs.r[q] * p.displacements() +
                   p.displacement_channel(pairs.a[q], b0 + k)) *
                      geo.width_padded;
            }
          }
          dispatch_block<ForwardBlock, Rows::kInPlace>(
              pairs.count,
              nb,
              acc_rows,
              a_rows,
              b_rows,
              channels,
              reads.a_cstride(),
              reads.b_cstride(),
              p.out_w,
              edges);
        },
        max_block(pairs.count));
  }
}

// Adds to acc the terms of kernel row i of the block of output rows
// oy0 + r * spacing, r < rows: for each piece of channels, every input2 row
// that some row of the block meets.
template <typename opmath_t, typename Rows>
void forward_kernel_row(
    Rows& reads,
    const RowGeometry<opmath_t>& geo,
    const ForwardRows& fr,
    int64_t n,
    int64_t g,
    int64_t oy0,
    int rows,
    int64_t i,
    opmath_t* acc) {
  const CorrelationParams& p = geo.p;
  const int64_t y1_first = oy0 * p.stride_h - p.pad_h + i * p.dilation_h;
  int64_t y1[kMaxRows];
  bool inside[kMaxRows];
  for (const auto r : c10::irange(rows)) {
    y1[r] = y1_first + r * fr.spacing * p.stride_h;
    inside[r] = y1[r] >= 0 && y1[r] < p.height;
  }
  reads.begin_kernel_row(n, g, y1, inside, rows);
  const int64_t Cg = p.channels_per_group();
  for (int64_t c0 = 0; c0 < Cg; c0 += reads.piece()) {
    const int64_t channels = std::min(reads.piece(), Cg - c0);
    reads.begin_piece(n, g, c0, channels);
    // Input2 row y2 = y1_first + dy(e) is at displacement number
    // e - r * row_step from row r of the block.
    for (const auto e : c10::irange(fr.rows2_per_i)) {
      const int64_t y2 = y1_first + geo.dy(e);
      if (y2 < 0 || y2 >= p.height)
        continue;
      RowPairs pairs;
      for (const auto r : c10::irange(rows)) {
        const int64_t a = e - r * fr.row_step;
        if (inside[r] && a >= 0 && a < p.disp_count_h)
          pairs.add(r, a);
      }
      if (pairs.count > 0) {
        forward_row_pairs(
            reads,
            geo,
            pairs,
            reads.input2_row(n, g, y2, c0),
            c0,
            channels,
            acc);
      }
    }
  }
}

// The forward: each work item is one block of output rows of one
// (n, group) plane, accumulated over all kernel rows and channels, then
// written out.
template <typename scalar_t, typename Rows>
void correlation_forward_rows(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RowGeometry<opmath_t> geo(p);
  const ForwardRows fr(p);
  const int64_t D = p.displacements();
  const int64_t row_size = D * geo.width_padded;
  const bool inner = groups_inner(output, p);
  const int64_t items = p.batch * p.groups * fr.blocks.size();
  at::parallel_for(
      0, items, geo.grain(kMaxRows), [&](int64_t begin, int64_t end) {
        Rows reads(input1, input2, geo, fr.rows2_per_i, inner ? p.groups : 1);
        std::vector<opmath_t> acc(kMaxRows * row_size);
        std::vector<opmath_t> out_tile(kTransposeTile * D);
        for (const auto item : c10::irange(begin, end)) {
          const PlaneItem it =
              plane_item(item, p.groups, fr.blocks.size(), inner);
          const int64_t oy0 = fr.blocks.first[it.index];
          const int rows = fr.blocks.count[it.index];
          std::fill(acc.begin(), acc.begin() + rows * row_size, opmath_t(0));
          for (const auto i : c10::irange(p.kernel_h)) {
            forward_kernel_row(
                reads, geo, fr, it.n, it.g, oy0, rows, i, acc.data());
          }
          for (const auto r : c10::irange(rows)) {
            write_output_row<scalar_t, opmath_t>(
                output,
                p,
                geo.width_padded,
                it.n,
                it.g,
                oy0 + r * fr.spacing,
                acc.data() + r * row_size,
                out_tile.data());
          }
        }
      });
}

template <typename scalar_t>
void correlation_forward_typed(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& p) {
  if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
    if (rows_in_place<scalar_t>(input1, p) &&
        rows_in_place<scalar_t>(input2, p)) {
      correlation_forward_rows<scalar_t, InPlaceForwardRows<scalar_t>>(
          output, input1, input2, p);
      return;
    }
  }
  correlation_forward_rows<scalar_t, CachedForwardRows<scalar_t>>(
      output, input1, input2, p);
}

// Copies grad_output[n, g*D + displacement_channel(a, b), oy, :] for all b
// into `dst`:
// row b at dst + b * go_stride, output column ox at index shift_max + ox
// (see RowGeometry). Only those out_w columns are written: the zeros around
// them are the same for every row, so `dst` holds them from its
// initialization.
template <typename scalar_t, typename opmath_t>
void load_grad_output_row(
    const TensorBase& grad_output,
    const RowGeometry<opmath_t>& geo,
    int64_t n,
    int64_t g,
    int64_t a,
    int64_t oy,
    opmath_t* dst,
    opmath_t* tile) {
  const CorrelationParams& p = geo.p;
  const int64_t Kx = p.disp_count_w;
  const scalar_t* src = grad_output.const_data_ptr<scalar_t>() +
      n * grad_output.stride(0) +
      (g * p.displacements() + p.displacement_channel(a, 0)) *
          grad_output.stride(1) +
      oy * grad_output.stride(2);
  const int64_t sb = grad_output.stride(1) * p.displacement_channel_step_w();
  const int64_t sx = grad_output.stride(3);
  opmath_t* first = dst + geo.shift_max;
  if (grad_output.stride(1) == 1 && Kx > 1) {
    // channels_last: each pixel's Kx values are contiguous; transpose them
    // into the Kx rows (in descending order, into the rows from the last).
    const bool descending = p.disp_descending_w;
    load_transposed(
        descending ? src - (Kx - 1) : src,
        sx,
        p.out_w,
        Kx,
        descending ? first + (Kx - 1) * geo.go_stride : first,
        descending ? -geo.go_stride : geo.go_stride,
        tile);
    return;
  }
  for (const auto b : c10::irange(Kx)) {
    const scalar_t* s = src + b * sb;
    opmath_t* d = first + b * geo.go_stride;
    if (sx == 1) {
      vec::convert(s, d, p.out_w);
    } else {
      for (const auto ox : c10::irange(p.out_w)) {
        d[ox] = static_cast<opmath_t>(s[ox * sx]);
      }
    }
  }
}

// Writes scale * row (phase-split `layout`, layout.channels channels from
// channel c0 of group g) into grad[n, g*Cg + c0 + c, y, :]:
// the inverse of load_row, walking the phases so that no column needs a
// division, and the destination in its contiguous order (columns for NCHW,
// channels for channels_last, by store_transposed through `tile`). row is
// scaled in place (it is zeroed before its next use), as in
// write_output_row. Columns outside the row's span receive no terms and are
// written as zeros.
template <typename scalar_t, typename opmath_t>
void store_grad_row(
    const TensorBase& grad,
    const RowLayout& layout,
    const CorrelationParams& p,
    int64_t n,
    int64_t g,
    int64_t c0,
    int64_t y,
    opmath_t* row,
    opmath_t* tile) {
  const Plane<scalar_t> plane =
      plane_of<scalar_t>(grad, n, g * p.channels_per_group() + c0);
  scale_in_place(row, layout.size(), static_cast<opmath_t>(p.scale));
  const int64_t step = layout.phases;
  const int64_t cs = layout.channel_stride();
  const int64_t width = p.width;
  scalar_t* dst_row = plane.data + y * plane.stride_h;
  const bool channels_inner = plane.stride_c < plane.stride_w;

  const auto zero_columns = [&](int64_t x_begin, int64_t x_end) {
    for (int64_t x = x_begin; x < x_end; ++x) {
      for (const auto c : c10::irange(layout.channels)) {
        dst_row[x * plane.stride_w + c * plane.stride_c] = scalar_t(0);
      }
    }
  };
  const int64_t span_begin = std::clamp<int64_t>(layout.origin, 0, width);
  const int64_t span_end = std::clamp<int64_t>(
      layout.origin + step * layout.length, span_begin, width);
  zero_columns(0, span_begin);
  zero_columns(span_end, width);

  for (const auto ph : c10::irange(step)) {
    // Column x = x0 + t * step for t in [t_begin, t_end), inside the image.
    const int64_t x0 = layout.origin + ph;
    const int64_t t_begin =
        x0 >= 0 ? 0 : std::min(layout.length, (-x0 + step - 1) / step);
    const int64_t t_end = x0 >= width
        ? t_begin
        : std::max(
              t_begin, std::min(layout.length, (width - 1 - x0) / step + 1));
    const opmath_t* src = row + ph * layout.length;
    scalar_t* dst = dst_row + x0 * plane.stride_w;
    const int64_t x_step = step * plane.stride_w;
    if (channels_inner && plane.stride_c == 1) {
      store_transposed(
          src + t_begin,
          cs,
          t_end - t_begin,
          layout.channels,
          dst + t_begin * x_step,
          x_step,
          tile);
    } else if (channels_inner) {
      for (int64_t t = t_begin; t < t_end; ++t) {
        for (const auto c : c10::irange(layout.channels)) {
          dst[t * x_step + c * plane.stride_c] =
              static_cast<scalar_t>(src[c * cs + t]);
        }
      }
    } else if (x_step == 1) {
      for (const auto c : c10::irange(layout.channels)) {
        vec::convert(
            src + c * cs + t_begin,
            dst + c * plane.stride_c + t_begin,
            t_end - t_begin);
      }
    } else {
      for (const auto c : c10::irange(layout.channels)) {
        const opmath_t* s = src + c * cs;
        scalar_t* d = dst + c * plane.stride_c;
        for (int64_t t = t_begin; t < t_end; ++t) {
          d[t * x_step] = static_cast<scalar_t>(s[t]);
        }
      }
    }
  }
}

// Output row reached by kernel row i from input1 row y1, or -1 if none.
inline int64_t output_row_of(
    const CorrelationParams& p,
    int64_t y1,
    int64_t i) {
  const int64_t num = y1 + p.pad_h - i * p.dilation_h;
  if (num < 0 || num % p.stride_h != 0)
    return -1;
  const int64_t oy = num / p.stride_h;
  return oy < p.out_h ? oy : -1;
}

// ---------------------------------------------------------------------------
// Backward: one gather skeleton (correlation_gradient) and a policy per
// gradient (Input1Gradient, Input2Gradient).
//
// A gradient row y of channel c is a sum over terms
//   go[a*Kx + weight][oy][t - shift] * R[c][y_read][read column + t]
// where R is the other input (the "read" input), the row pairs (y, y_read)
// and their displacement numbers a and output rows oy come from the policy's
// for_each_source, and the column terms, grouped by the offset of the
// gradient row they land at, from its term_groups.

struct GatherTerm {
  int64_t read_column;  // relative column of the read row (see streamed_column)
  int64_t weight;  // horizontal displacement number b: grad_output row a*Kx + b
  int64_t shift;  // grad_output is read shift columns before t
};
struct TermGroup {
  int64_t offset;  // of the gradient row's vector 0, in its layout
  std::vector<GatherTerm> terms;
};

// grad_input1:
//   G1[c][ox*s + j*dil] += sum_b go[a*Kx+b][oy][ox] * B[c][ox*s + j*dil +
//   b*step]
// Rows one vertical displacement step apart read the same input2 rows at
// neighbouring vertical displacements, so each load of input2 feeds both.
template <typename opmath_t>
struct Input1Gradient {
  const RowGeometry<opmath_t>& geo;
  const RowLayout& grad_layout() const {
    return geo.in1;
  }
  const RowLayout& read_layout() const {
    return geo.in2;
  }
  int64_t width() const {
    return geo.p.out_w;
  }

  // One group per kernel column j, its terms the displacements b.
  std::vector<TermGroup> term_groups() const {
    std::vector<TermGroup> groups;
    for (const auto j : c10::irange(geo.p.kernel_w)) {
      TermGroup group{geo.in1.offset(geo.in1_column(j)), {}};
      for (const auto b : c10::irange(geo.b_begin, geo.b_end)) {
        group.terms.push_back({geo.in2_column(j, b), b, 0});
      }
      groups.push_back(std::move(group));
    }
    return groups;
  }

  // Calls fn(y2, pairs) for every input2 row y2 that the block of gradient
  // rows y_first + r * disp_step_h (r < rows) meets: for each kernel row i,
  // input2 row y2 = y_first + dy(e) is at displacement number e - r from
  // row r, whose output row is output_row_of(y, i).
  template <typename Fn>
  void for_each_source(int64_t y_first, int rows, const Fn& fn) const {
    const CorrelationParams& p = geo.p;
    for (const auto i : c10::irange(p.kernel_h)) {
      int64_t oy[kMaxRows];
      for (const auto r : c10::irange(rows)) {
        oy[r] = output_row_of(p, y_first + r * p.disp_step_h, i);
      }
      for (const auto e : c10::irange(p.disp_count_h + kMaxRows - 1)) {
        const int64_t y2 = y_first + geo.dy(e);
        if (y2 < 0 || y2 >= p.height)
          continue;
        RowPairs pairs;
        for (const auto r : c10::irange(rows)) {
          const int64_t a = e - r;
          if (oy[r] >= 0 && a >= 0 && a < p.disp_count_h)
            pairs.add(r, a, oy[r]);
        }
        if (pairs.count > 0)
          fn(y2, pairs);
      }
    }
  }
};

// grad_input2, gathered at each destination index t of input2's
// phase-split row:
//   G2[c][t] += sum_{j, b} go[a*Kx+b][oy][t - shift] * A[c][... + t - shift]
// where a term with r = j*dil + b*step lands in phase r % s with
// shift = r / s (see RowGeometry).
template <typename opmath_t>
struct Input2Gradient {
  const RowGeometry<opmath_t>& geo;
  const RowLayout& grad_layout() const {
    return geo.in2;
  }
  const RowLayout& read_layout() const {
    return geo.in1;
  }
  int64_t width() const {
    return geo.width2;
  }

  // One group per phase of input2's row, its terms the (j, b) landing there.
  std::vector<TermGroup> term_groups() const {
    const int64_t s = geo.p.stride_w;
    std::vector<TermGroup> groups;
    for (const auto phase : c10::irange(s)) {
      groups.push_back({phase * geo.in2.length, {}});
    }
    for (const auto j : c10::irange(geo.p.kernel_w)) {
      for (const auto b : c10::irange(geo.b_begin, geo.b_end)) {
        const int64_t r = geo.in2_column(j, b);
        const int64_t shift = r / s;
        groups[r % s].terms.push_back(
            {geo.in1_column(j) - shift * s, b, shift});
      }
    }
    return groups;
  }

  // Calls fn(y1, pairs) for every input1 row y1 that the block of gradient
  // rows y_first + r * disp_step_h (r < rows) meets: y1 = y_first - dy(f) is
  // at displacement number f + r from row r, for f in [1 - kMaxRows, Ky);
  // for each kernel row i, all pairs share the output row output_row_of(y1, i).
  template <typename Fn>
  void for_each_source(int64_t y_first, int rows, const Fn& fn) const {
    const CorrelationParams& p = geo.p;
    for (int64_t f = 1 - kMaxRows; f < p.disp_count_h; ++f) {
      const int64_t y1 = y_first - geo.dy(f);
      if (y1 < 0 || y1 >= p.height)
        continue;
      RowPairs pairs;
      for (const auto r : c10::irange(rows)) {
        const int64_t a = f + r;
        if (a >= 0 && a < p.disp_count_h)
          pairs.add(r, a);
      }
      if (pairs.count == 0)
        continue;
      for (const auto i : c10::irange(p.kernel_h)) {
        const int64_t oy = output_row_of(p, y1, i);
        if (oy < 0)
          continue;
        std::fill(pairs.oy, pairs.oy + pairs.count, oy);
        fn(y1, pairs);
      }
    }
  }
};

// How a backward kernel reads the input it streams (rows in
// `read_layout`) and splits its work: in place, or through a cache of
// `slots` rows per partition, in strips and channel chunks within the cache
// budget (plan_strips). The gradient rows of a block (in `grad_layout`) are
// written out after each chunk, since channels do not mix, so strips need no
// sums kept between chunks.
template <typename scalar_t>
struct BackwardReads {
  using opmath_t = at::opmath_type<scalar_t>;
  bool in_place;
  int64_t slots;  // cached rows per partition (0 in place)
  StripPlan plan;
  int64_t read_cstride;  // channel stride of the rows read
  int64_t grad_row_size;  // one gradient row of a chunk in the scratch

  BackwardReads(
      const TensorBase& input,
      const RowLayout& read_layout,
      const RowLayout& grad_layout,
      const RowGeometry<opmath_t>& geo,
      const RowBlocks& blocks,
      int64_t rows_per_block,
      int64_t partitions,
      int64_t result_bytes)
      : in_place(rows_in_place<scalar_t>(input, geo.p)),
        slots(in_place ? 0 : std::min(rows_per_block, geo.p.height)),
        plan(plan_strips(
            geo.p.batch * geo.p.groups,
            blocks.size(),
            geo.p.channels_per_group(),
            static_cast<int64_t>(sizeof(opmath_t)) *
                (partitions * slots * read_layout.channel_stride() +
                 kMaxRows * grad_layout.channel_stride()),
            result_bytes,
            geo.channel_chunk)),
        read_cstride(in_place ? input.stride(1) : read_layout.channel_stride()),
        grad_row_size(plan.chunk * grad_layout.channel_stride()) {}
};

// Adds to the gradient rows g_rows[q] (q < count, channel stride
// g_cstride) the terms of every group, reading channels [0, channels) of
// the read row `row` (channel stride b_cstride) and the grad_output rows
// in `go` (Kx rows per pair, go_stride apart).
template <typename opmath_t>
void gather_terms(
    const RowGeometry<opmath_t>& geo,
    const std::vector<TermGroup>& groups,
    const RowLayout& read_layout,
    bool in_place,
    int64_t width,
    opmath_t* const* g_rows,
    int count,
    int64_t g_cstride,
    const opmath_t* row,
    int64_t channels,
    int64_t b_cstride,
    const opmath_t* go) {
  const int64_t Kx = geo.p.disp_count_w;
  opmath_t* g_at[kMaxRows];
  const opmath_t* w_rows[kMaxRows * kMaxBlock];
  const opmath_t* b_rows[kMaxBlock];
  int64_t b_x[kMaxBlock];
  const ImageEdges edges{b_x, geo.p.width};
  for (const auto& group : groups) {
    for (const auto q : c10::irange(count))
      g_at[q] = g_rows[q] + group.offset;
    for_each_block(
        static_cast<int64_t>(group.terms.size()),
        [&](int64_t k0, int nb) {
          for (const auto k : c10::irange(nb)) {
            const GatherTerm& term = group.terms[k0 + k];
            b_rows[k] = streamed_column(
                row, read_layout, term.read_column, in_place, b_x[k]);
            for (const auto q : c10::irange(count)) {
              w_rows[q * nb + k] = go + (q * Kx + term.weight) * geo.go_stride +
                  geo.shift_max - term.shift;
            }
          }
          if (in_place) {
            dispatch_block<GatherBlock, true>(
                count,
                nb,
                g_at,
                w_rows,
                b_rows,
                channels,
                g_cstride,
                b_cstride,
                width,
                edges);
          } else {
            dispatch_block<GatherBlock, false>(
                count,
                nb,
                g_at,
                w_rows,
                b_rows,
                channels,
                g_cstride,
                b_cstride,
                width,
                edges);
          }
        },
        max_block(count));
  }
}

// Per-thread scratch of correlation_gradient: the cache of the read input's
// rows, one block's gradient rows, the grad_output rows of a block's pairs
// (zeros around them: see load_grad_output_row) and the transpose tile.
template <typename scalar_t>
struct GatherScratch {
  using opmath_t = at::opmath_type<scalar_t>;
  RowCache<scalar_t, opmath_t> cache;
  std::vector<opmath_t> grad_rows;
  std::vector<opmath_t> go;
  std::vector<opmath_t> tile;
};

// Sums into scratch.grad_rows (zeroed first; rows of reads.grad_row_size)
// every term that reaches the block of gradient rows y_first + r *
// disp_step_h, r < rows, in channels [c0, c0 + chunk) of plane (n, g).
template <typename scalar_t, typename SideT>
void gather_block(
    const SideT& side,
    const std::vector<TermGroup>& groups,
    const BackwardReads<scalar_t>& reads,
    const TensorBase& grad_output,
    const TensorBase& read,
    GatherScratch<scalar_t>& scratch,
    int64_t n,
    int64_t g,
    int64_t c0,
    int64_t chunk,
    int64_t y_first,
    int rows) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto& geo = side.geo;
  const CorrelationParams& p = geo.p;
  const int64_t Kx = p.disp_count_w;
  const int64_t g_cstride = side.grad_layout().channel_stride();
  std::fill(
      scratch.grad_rows.begin(),
      scratch.grad_rows.begin() + rows * reads.grad_row_size,
      opmath_t(0));
  side.for_each_source(
      y_first, rows, [&](int64_t y_read, const RowPairs& pairs) {
        for (const auto q : c10::irange(pairs.count)) {
          load_grad_output_row<scalar_t, opmath_t>(
              grad_output,
              geo,
              n,
              g,
              pairs.a[q],
              pairs.oy[q],
              scratch.go.data() + q * Kx * geo.go_stride,
              scratch.tile.data());
        }
        const opmath_t* row = reads.in_place
            ? image_row<opmath_t>(read, p, n, g, c0, y_read)
            : scratch.cache.get(n, g, p.groups, y_read, c0, chunk);
        geo.for_each_l1_chunk(chunk, [&](int64_t c, int64_t channels) {
          opmath_t* g_rows[kMaxRows];
          for (const auto q : c10::irange(pairs.count)) {
            g_rows[q] = scratch.grad_rows.data() +
                pairs.r[q] * reads.grad_row_size + c * g_cstride;
          }
          gather_terms(
              geo,
              groups,
              side.read_layout(),
              reads.in_place,
              side.width(),
              g_rows,
              pairs.count,
              g_cstride,
              row + c * reads.read_cstride,
              channels,
              reads.read_cstride,
              scratch.go.data());
        });
      });
}

// One gradient (`grad`, of the input the Side names) from grad_output and
// the other input (`read`). A work item is a strip of blocks of gradient
// rows y_first + r * disp_step_h of one (n, group) plane; for each channel
// chunk and block, every term reaching the block's rows is summed into
// scratch rows, which are then written out (see BackwardReads).
template <typename scalar_t, template <typename> class Side>
void correlation_gradient(
    const TensorBase& grad,
    const TensorBase& grad_output,
    const TensorBase& read,
    const CorrelationParams& p,
    int64_t result_bytes) {
  using opmath_t = at::opmath_type<scalar_t>;
  const RowGeometry<opmath_t> geo(p);
  const Side<opmath_t> side{geo};
  const std::vector<TermGroup> groups = side.term_groups();
  const int64_t Kx = p.disp_count_w;
  const int64_t Cg = p.channels_per_group();
  const RowBlocks blocks(p.height, p.disp_step_h, kMaxRows);
  const bool inner = groups_inner(grad, p);
  const int64_t partitions = inner ? p.groups : 1;
  const BackwardReads<scalar_t> reads(
      read,
      side.read_layout(),
      side.grad_layout(),
      geo,
      blocks,
      p.disp_count_h + kMaxRows - 1,
      partitions,
      result_bytes);
  const StripPlan& plan = reads.plan;
  at::parallel_for(
      0,
      plan.items(p.batch * p.groups),
      geo.grain(kMaxRows * plan.blocks_per_strip),
      [&](int64_t begin, int64_t end) {
        GatherScratch<scalar_t> scratch{
            RowCache<scalar_t, opmath_t>(
                read,
                Cg,
                p.height,
                p.width,
                side.read_layout(),
                plan.chunk,
                reads.slots,
                partitions),
            std::vector<opmath_t>(kMaxRows * reads.grad_row_size),
            std::vector<opmath_t>(kMaxRows * Kx * geo.go_stride),
            std::vector<opmath_t>(kTransposeTile * std::max(Kx, plan.chunk))};
        for (const auto item : c10::irange(begin, end)) {
          const StripPlan::Item it = plan.item(item, p.groups, inner);
          plan.for_each_chunk(Cg, [&](int64_t c0, int64_t chunk) {
            RowLayout chunk_layout = side.grad_layout();
            chunk_layout.channels = chunk;
            for (const auto blk : c10::irange(it.block_begin, it.block_end)) {
              const int64_t y_first = blocks.first[blk];
              const int rows = blocks.count[blk];
              gather_block(
                  side,
                  groups,
                  reads,
                  grad_output,
                  read,
                  scratch,
                  it.n,
                  it.g,
                  c0,
                  chunk,
                  y_first,
                  rows);
              for (const auto r : c10::irange(rows)) {
                store_grad_row<scalar_t, opmath_t>(
                    grad,
                    chunk_layout,
                    p,
                    it.n,
                    it.g,
                    c0,
                    y_first + r * p.disp_step_h,
                    scratch.grad_rows.data() + r * reads.grad_row_size,
                    scratch.tile.data());
              }
            }
          });
        }
      });
}

}  // namespace
}  // namespace at::native

// The kernels for a 1x1 kernel at unit stride with few channels per group or
// a one-row vertical range, built on the row helpers above.
#include <ATen/native/cpu/SpatialCorrelationNarrowKernel.h>

namespace at::native {
namespace {

void correlation_kernel(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_cpu", [&] {
        if (use_narrow_kernels(params)) {
          narrow_forward<scalar_t>(output, input1, input2, params);
        } else {
          correlation_forward_typed<scalar_t>(output, input1, input2, params);
        }
      });
}

void correlation_backward_kernel(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const CorrelationParams& params) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_backward_cpu", [&] {
        if (use_narrow_kernels(params)) {
          narrow_backward<scalar_t>(
              grad_input1, grad_input2, grad_output, input1, input2, params);
          return;
        }
        // The caches' budget (see plan_strips) is a share of grad_output and
        // the gradients, which the caller holds while the backward runs,
        // counted in the accumulation type: half and bfloat16 calls are cut
        // into the same chunks as float ones, so their caches may take up to
        // twice that share of their smaller tensors.
        const auto elements = [](const TensorBase& t) {
          return t.defined() ? t.numel() : int64_t(0);
        };
        const int64_t result_bytes =
            static_cast<int64_t>(sizeof(at::opmath_type<scalar_t>)) *
            (elements(grad_output) + elements(grad_input1) +
             elements(grad_input2));
        if (grad_input1.defined()) {
          correlation_gradient<scalar_t, Input1Gradient>(
              grad_input1, grad_output, input2, params, result_bytes);
        }
        if (grad_input2.defined()) {
          correlation_gradient<scalar_t, Input2Gradient>(
              grad_input2, grad_output, input1, params, result_bytes);
        }
      });
}

}  // namespace

// Registered for every CPU capability, AVX512 included: the kernels are FMA
// loops over contiguous scratch rows, which gain from the wider vectors.
ALSO_REGISTER_AVX512_DISPATCH(correlation_stub, &correlation_kernel)
ALSO_REGISTER_AVX512_DISPATCH(
    correlation_backward_stub,
    &correlation_backward_kernel)

}  // namespace at::native
