#pragma once

// Data movement and dot-product blocks of the correlation CPU offset kernels
// (see NOTE [ Correlation CPU Offset Kernels ] in
// SpatialCorrelationOffsetKernel.cpp): pixel-major views and converted
// copies of the inputs, strided loads and stores through in-register
// transposes, and the blocked dot products of one input1 pixel with several
// input2 pixels.
//
// This header is part of SpatialCorrelationOffsetKernel.cpp, which includes
// it first; like that file it is compiled once per CPU capability, so its
// definitions live in an anonymous namespace.

#include <ATen/EmptyTensor.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/TensorBase.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace at::native {
namespace {

// A pixel-major view of one input: element (n, y, x, c) at
// data[n * stride_n + y * stride_y + x * stride_x + c].
template <typename T>
struct PixelMajor {
  const T* data = nullptr;
  int64_t stride_n = 0;
  int64_t stride_y = 0;
  int64_t stride_x = 0;
  int64_t height = 0;
  int64_t width = 0;

  const T* pixel(int64_t n, int64_t y, int64_t x) const {
    return data + n * stride_n + y * stride_y + x * stride_x;
  }
  bool inside(int64_t y, int64_t x) const {
    return y >= 0 && y < height && x >= 0 && x < width;
  }
};

#if defined(CPU_CAPABILITY_AVX512)
// dst[j * ld_dst + i] = src[i * ld_src + j] for i < M <= 16, j < N <= 16:
// masked loads and stores around an in-register 16x16 transpose. (at::vec's
// transpose_mxn<float> does the same but first zero-fills a 1 KiB register
// array in memory per tile, which costs about as much as the transpose.)
inline void transpose_tile_16(
    const float* src,
    int64_t ld_src,
    float* dst,
    int64_t ld_dst,
    int M,
    int N) {
  const __mmask16 load_mask = static_cast<__mmask16>((1u << N) - 1u);
  const __mmask16 store_mask = static_cast<__mmask16>((1u << M) - 1u);
  __m512 r[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = i < M ? _mm512_maskz_loadu_ps(load_mask, src + i * ld_src)
                 : _mm512_setzero_ps();
  }
  // Pairs of rows interleaved, then pairs of pairs: u[4q + k] holds, in
  // each 128-bit lane L, element 4L + k of rows 4q .. 4q + 3.
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]);
    const __m512d b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]);
    const __m512d d = _mm512_castps_pd(t[4 * q + 3]);
    r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // A 4x4 transpose of 128-bit lanes across u[k], u[4 + k], u[8 + k],
  // u[12 + k]: output row 4L + k is lane L of each of them.
  for (int k = 0; k < 4; ++k) {
    const __m512 ab_lo = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44);
    const __m512 ab_hi = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE);
    const __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44);
    const __m512 cd_hi = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
    t[k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
    t[4 + k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
    t[8 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int j = 0; j < N; ++j) {
    _mm512_mask_storeu_ps(dst + j * ld_dst, store_mask, t[j]);
  }
}
#endif

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < M, j < N, in vector
// tiles where this capability has them.
template <typename T>
void transpose(
    const T* src,
    int64_t ld_src,
    T* dst,
    int64_t ld_dst,
    int64_t M,
    int64_t N) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t i = 0; i < M; i += 16) {
      for (int64_t j = 0; j < N; j += 16) {
        transpose_tile_16(
            src + i * ld_src + j,
            ld_src,
            dst + j * ld_dst + i,
            ld_dst,
            static_cast<int>(std::min<int64_t>(16, M - i)),
            static_cast<int>(std::min<int64_t>(16, N - j)));
      }
    }
    return;
  }
#endif
  int64_t i_end = 0;
  int64_t j_end = 0;
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    i_end = M - M % 8;
    j_end = N - N % 8;
    for (int64_t i = 0; i < i_end; i += 8) {
      for (int64_t j = 0; j < j_end; j += 8) {
        vec::transpose_mxn<float, 8, 8>(
            src + i * ld_src + j, ld_src, dst + j * ld_dst + i, ld_dst);
      }
    }
  }
#endif
  // What the tiles left: the columns j >= j_end of the first i_end rows,
  // then all of the remaining rows.
  for (const auto i : c10::irange(M)) {
    for (int64_t j = i < i_end ? j_end : 0; j < N; ++j) {
      dst[j * ld_dst + i] = src[i * ld_src + j];
    }
  }
}

// Pixels per tile of the strided loads and stores below.
constexpr int64_t kTilePixels = 64;

// Values per channel-major block the strided loads transpose at once.
constexpr int64_t kTileValues = 16;

// Pixel-major dst[q * values + v] (q < pixels, v < values) from a source
// whose value v of pixel q is src[q * pixel_stride + v * value_stride],
// converted to opmath_t. Both fast cases read the source in order: pixels
// with contiguous values are converted one pixel at a time, channel-major
// rows (unit pixel stride) are transposed a block of values at a time.
// `tile` holds kTileValues * kTilePixels values.
template <typename scalar_t, typename opmath_t>
void load_pixels(
    const scalar_t* src,
    int64_t pixel_stride,
    int64_t value_stride,
    int64_t pixels,
    int64_t values,
    opmath_t* dst,
    opmath_t* tile) {
  if (value_stride == 1 || values == 1) {
    for (const auto q : c10::irange(pixels)) {
      vec::convert(src + q * pixel_stride, dst + q * values, values);
    }
  } else if (pixel_stride == 1) {
    for (int64_t q0 = 0; q0 < pixels; q0 += kTilePixels) {
      const int64_t qn = std::min(kTilePixels, pixels - q0);
      for (int64_t v0 = 0; v0 < values; v0 += kTileValues) {
        const int64_t vn = std::min(kTileValues, values - v0);
        const scalar_t* s = src + q0 + v0 * value_stride;
        opmath_t* d = dst + q0 * values + v0;
        if constexpr (std::is_same_v<scalar_t, opmath_t>) {
          transpose(s, value_stride, d, values, vn, qn);
        } else {
          for (const auto v : c10::irange(vn)) {
            vec::convert(s + v * value_stride, tile + v * qn, qn);
          }
          transpose(tile, qn, d, values, vn, qn);
        }
      }
    }
  } else {
    for (const auto q : c10::irange(pixels)) {
      for (const auto v : c10::irange(values)) {
        dst[q * values + v] =
            static_cast<opmath_t>(src[q * pixel_stride + v * value_stride]);
      }
    }
  }
}

// The inverse of load_pixels: pixel-major src[q * values + v] to
// dst[q * pixel_stride + v * value_stride], converted to scalar_t. `tile`
// holds kTileValues * kTilePixels values.
template <typename scalar_t, typename opmath_t>
void store_pixels(
    const opmath_t* src,
    int64_t pixels,
    int64_t values,
    scalar_t* dst,
    int64_t pixel_stride,
    int64_t value_stride,
    opmath_t* tile) {
  if (value_stride == 1 || values == 1) {
    for (const auto q : c10::irange(pixels)) {
      vec::convert(src + q * values, dst + q * pixel_stride, values);
    }
  } else if (pixel_stride == 1) {
    for (int64_t q0 = 0; q0 < pixels; q0 += kTilePixels) {
      const int64_t qn = std::min(kTilePixels, pixels - q0);
      for (int64_t v0 = 0; v0 < values; v0 += kTileValues) {
        const int64_t vn = std::min(kTileValues, values - v0);
        const opmath_t* s = src + q0 * values + v0;
        scalar_t* d = dst + q0 + v0 * value_stride;
        if constexpr (std::is_same_v<scalar_t, opmath_t>) {
          transpose(s, values, d, value_stride, qn, vn);
        } else {
          transpose(s, values, tile, qn, qn, vn);
          for (const auto v : c10::irange(vn)) {
            vec::convert(tile + v * qn, d + v * value_stride, qn);
          }
        }
      }
    }
  } else {
    for (const auto q : c10::irange(pixels)) {
      for (const auto v : c10::irange(values)) {
        dst[q * pixel_stride + v * value_stride] =
            static_cast<scalar_t>(src[q * values + v]);
      }
    }
  }
}

// One input read pixel-major in opmath_t: in place when it already is, else
// from a converted copy that `storage` owns.
template <typename opmath_t>
struct PixelMajorInput {
  TensorBase storage;
  PixelMajor<opmath_t> view;
};

template <typename scalar_t, typename opmath_t>
PixelMajorInput<opmath_t> pixel_major_input(const TensorBase& input) {
  const int64_t N = input.size(0);
  const int64_t C = input.size(1);
  const int64_t H = input.size(2);
  const int64_t W = input.size(3);
  PixelMajorInput<opmath_t> result;
  if (std::is_same_v<scalar_t, opmath_t> && (input.stride(1) == 1 || C <= 1)) {
    result.view = {
        static_cast<const opmath_t*>(input.const_data_ptr()),
        input.stride(0),
        input.stride(2),
        input.stride(3),
        H,
        W};
    return result;
  }
  result.storage = at::detail::empty_cpu(
      {N, H, W, C}, c10::CppTypeToScalarType<opmath_t>::value);
  opmath_t* data = static_cast<opmath_t*>(result.storage.mutable_data_ptr());
  const scalar_t* src = input.const_data_ptr<scalar_t>();
  const auto s = input.strides();
  const int64_t grain = std::max<int64_t>(
      1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, W * C));
  at::parallel_for(0, N * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> tile(kTileValues * kTilePixels);
    for (const auto row : c10::irange(begin, end)) {
      const int64_t n = row / H;
      const int64_t y = row % H;
      load_pixels(
          src + n * s[0] + y * s[2],
          s[3],
          s[1],
          W,
          C,
          data + row * W * C,
          tile.data());
    }
  });
  result.view = {data, H * W * C, W * C, C, H, W};
  return result;
}

// The input1 rows that one output row's kernel taps read, channels
// [c_begin, c_begin + channels) of each pixel, pixel-major in opmath_t: in
// place when the input already is, else converted into a per-thread buffer
// (an output row reads only its kernel rows, so no copy of the whole input
// is made and the rows stay in cache while the row's locations use them).
template <typename scalar_t, typename opmath_t>
class Input1Rows {
 public:
  Input1Rows(
      const TensorBase& input1,
      const CorrelationParams& p,
      int64_t c_begin,
      int64_t channels)
      : p_(p),
        src_(input1.const_data_ptr<scalar_t>()),
        strides_(input1.strides()),
        c_begin_(c_begin),
        channels_(channels),
        in_place_(
            std::is_same_v<scalar_t, opmath_t> &&
            (strides_[1] == 1 || input1.size(1) <= 1)) {
    if (!in_place_) {
      buffer_.resize(p.kernel_h * p.width * channels);
      tile_.resize(kTileValues * kTilePixels);
    }
    rows_.resize(p.kernel_h);
  }

  // Makes kernel row i of output row oy of image n readable, for the i
  // whose input1 row is inside the image.
  void load(int64_t n, int64_t oy) {
    for (const auto i : c10::irange(p_.kernel_h)) {
      const int64_t y = oy * p_.stride_h - p_.pad_h + i * p_.dilation_h;
      if (y < 0 || y >= p_.height) {
        continue;
      }
      const scalar_t* src =
          src_ + n * strides_[0] + c_begin_ * strides_[1] + y * strides_[2];
      if (in_place_) {
        rows_[i] = reinterpret_cast<const opmath_t*>(src);
      } else {
        opmath_t* dst = buffer_.data() + i * p_.width * channels_;
        load_pixels(
            src,
            strides_[3],
            strides_[1],
            p_.width,
            channels_,
            dst,
            tile_.data());
        rows_[i] = dst;
      }
    }
  }

  // Pixel x of kernel row i (loaded by load()).
  const opmath_t* pixel(int64_t i, int64_t x) const {
    return rows_[i] + x * (in_place_ ? strides_[3] : channels_);
  }

 private:
  const CorrelationParams& p_;
  const scalar_t* src_;
  IntArrayRef strides_;
  int64_t c_begin_;
  int64_t channels_;
  bool in_place_;
  std::vector<opmath_t> buffer_;
  std::vector<opmath_t> tile_;
  std::vector<const opmath_t*> rows_;
};

// ---------------------------------------------------------------------------
// Vector blocks.

// Input2 pixels per dot block: each vector of input1's pixel feeds this
// many FMAs, and the block's sums are reduced together.
constexpr int kDotBlock = 8;

// sums[k] = the sum of the lanes of acc[k], k < kDotBlock. A horizontal sum
// of one vector costs a shuffle and an add per halving; reducing the block
// as a tree of vectors halves all eight at once (about 3 vector
// instructions per sum instead of 8-10).
template <typename opmath_t>
inline void lane_sums(const vec::Vectorized<opmath_t>* acc, opmath_t* sums) {
  static_assert(kDotBlock == 8);
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<opmath_t, float>) {
    // 256-bit halves, then 128-bit quarters: d[h] holds a 4-lane partial
    // sum of acc[4h + q] in quarter q.
    __m512 c[4];
    for (int k = 0; k < 4; ++k) {
      const __m512 a = acc[2 * k];
      const __m512 b = acc[2 * k + 1];
      c[k] = _mm512_add_ps(
          _mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    __m512 d[2];
    for (int h = 0; h < 2; ++h) {
      d[h] = _mm512_add_ps(
          _mm512_shuffle_f32x4(c[2 * h], c[2 * h + 1], 0x88),
          _mm512_shuffle_f32x4(c[2 * h], c[2 * h + 1], 0xDD));
    }
    // Within each quarter: lane 0 sums d[0]'s four lanes, lane 1 d[1]'s.
    __m512 e = _mm512_add_ps(
        _mm512_unpacklo_ps(d[0], d[1]), _mm512_unpackhi_ps(d[0], d[1]));
    e = _mm512_add_ps(e, _mm512_shuffle_ps(e, e, 0x4E));
    __at_align__ float lanes[16];
    _mm512_store_ps(lanes, e);
    for (int q = 0; q < 4; ++q) {
      sums[q] = lanes[4 * q];
      sums[4 + q] = lanes[4 * q + 1];
    }
    return;
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<opmath_t, float>) {
    // 128-bit halves: c[k] holds a 4-lane partial sum of acc[2k] in its low
    // half and of acc[2k + 1] in its high half; two rounds of hadd finish
    // them (low half: acc 0, 2, 4, 6; high half: 1, 3, 5, 7).
    __m256 c[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 a = acc[2 * k];
      const __m256 b = acc[2 * k + 1];
      c[k] = _mm256_add_ps(
          _mm256_permute2f128_ps(a, b, 0x20),
          _mm256_permute2f128_ps(a, b, 0x31));
    }
    const __m256 e =
        _mm256_hadd_ps(_mm256_hadd_ps(c[0], c[1]), _mm256_hadd_ps(c[2], c[3]));
    __at_align__ float lanes[8];
    _mm256_store_ps(lanes, e);
    for (int q = 0; q < 4; ++q) {
      sums[2 * q] = lanes[q];
      sums[2 * q + 1] = lanes[4 + q];
    }
    return;
  }
#endif
  using Vec = vec::Vectorized<opmath_t>;
  for (int k = 0; k < kDotBlock; ++k) {
    __at_align__ opmath_t lanes[Vec::size()];
    acc[k].store(lanes);
    opmath_t sum = 0;
    for (const auto l : c10::irange(Vec::size())) {
      sum += lanes[l];
    }
    sums[k] = sum;
  }
}

// sums[k] = <x, y[k] + offset> over `length` values, k < kDotBlock: the dot
// products of one input1 pixel with a block of input2 pixels.
template <typename opmath_t>
void dot_block(
    const opmath_t* x,
    const opmath_t* const* y,
    int64_t offset,
    int64_t length,
    opmath_t* sums) {
  using Vec = vec::Vectorized<opmath_t>;
  const int64_t full = length - length % Vec::size();
  Vec acc[kDotBlock];
  for (int k = 0; k < kDotBlock; ++k) {
    acc[k] = Vec(0);
  }
  for (int64_t c = 0; c < full; c += Vec::size()) {
    const Vec xv = Vec::loadu(x + c);
    for (int k = 0; k < kDotBlock; ++k) {
      acc[k] = vec::fmadd(xv, Vec::loadu(y[k] + offset + c), acc[k]);
    }
  }
  if (full < length) {
    const int64_t tail = length - full;
    const Vec xv = Vec::loadu(x + full, tail);
    for (int k = 0; k < kDotBlock; ++k) {
      acc[k] = vec::fmadd(xv, Vec::loadu(y[k] + offset + full, tail), acc[k]);
    }
  }
  lane_sums(acc, sums);
}

}  // namespace
}  // namespace at::native
