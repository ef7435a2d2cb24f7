#define TORCH_ASSERT_NO_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/core/TensorBase.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <ATen/native/cpu/SpatialCorrelationKernel.h>
#include <ATen/native/cpu/SpatialCorrelationOffsetBlocks.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

// NOTE [ Correlation CPU Offset Kernels ]
//
// With an offset, every sample of output location (oy, ox) reads input2 at
//   (y0 + i*dil_h + dy_a + v, x0 + j*dil_w + dx_b + u),  (u, v) = offset
// with bilinear interpolation (NOTE [ correlation Native Functions ]). The
// fractional parts of u and v are the same for every displacement and kernel
// tap of the location, so all its samples share the four weights
//   w00 = (1-fx)(1-fy), w01 = fx(1-fy), w10 = (1-fx)fy, w11 = fx fy
// and a sample's dot product over the group's channels is the weighted sum of
// four integer-position dot products:
//   <in1, S(in2)> = sum_t w_t <in1, in2[tap t]>
// Displacement a's two taps along an axis sit at a*step + {0, 1} from the
// smallest displacement (TapAxis); with step 1 the upper tap of a is the
// lower tap of a + 1, so a 9x9 window has 10x10 distinct tap positions, not
// 4x81. The kernels compute one dot product per distinct position and kernel
// tap, summed over the kernel taps (the grid is relative to the input1
// pixel, so every kernel tap adds into the same grid):
//   E[g][r][s] = sum_{i,j} <in1[g](y1, x1), in2[g](y1 + r', x1 + s')>
// and the outputs mix E with the four weights:
//   out[g, (a, b)] = scale * sum_t w_t E[g][index(a, ty)][index(b, tx)].
//
// Both inputs are read pixel-major (channels innermost), so every dot
// product is a contiguous run of vectors, and the tap positions of a row of
// the grid are consecutive pixels (dot_run: one vector of input1's pixel
// feeds kRun accumulators, one per input2 pixel). Float and double inputs
// whose channels are already innermost are read in place; any other layout
// or a reduced-precision dtype is copied once into a pixel-major opmath_t
// buffer (C values per pixel, against the D x C work per pixel).
//
// Backward: the offset gradient needs the same E, through d w_t / du and
// d w_t / dv, and is computed per location like the forward. The input
// gradients are a scatter: location (oy, ox) adds
//   Cf[g][r][s] * in2(position)  into grad_input1 at its input1 pixel and
//   Cf[g][r][s] * in1(pixel)     into grad_input2 at the tap position,
//   Cf[g][r][s] = scale * sum of go[g, (a, b)] * w_t over the (a, b, t) that
// land on grid position (r, s) (the weights summed on the grid first, so
// each distinct position is read and written once). Work items own a block
// of channels of one image, of both gradients, and walk every location in
// order; each channel's sum is then formed in the same order whatever the
// blocks or the thread count, with no atomics.

namespace at::native {

namespace {

// The four bilinear weights of one output location and the integer position
// of its (0, 0) tap relative to the location's unshifted position.
template <typename opmath_t>
struct BilinearSample {
  bool finite = true;
  int64_t base_y = 0;  // floor(v)
  int64_t base_x = 0;  // floor(u)
  opmath_t fy = 0;  // v - floor(v)
  opmath_t fx = 0;  // u - floor(u)

  // Tap t = (ty, tx) in {0, 1}^2.
  opmath_t weight(int ty, int tx) const {
    return (ty ? fy : 1 - fy) * (tx ? fx : 1 - fx);
  }
  opmath_t weight_du(int ty, int tx) const {
    return (ty ? fy : 1 - fy) * (tx ? 1 : -1);
  }
  opmath_t weight_dv(int ty, int tx) const {
    return (ty ? 1 : -1) * (tx ? fx : 1 - fx);
  }
};

// Splits an offset component into its floor and fraction. Offsets so large
// that every tap falls outside input2 are clamped to a value that is still
// outside (`limit` exceeds every reachable coordinate), so the integer
// conversion cannot overflow.
template <typename opmath_t>
void split_component(
    opmath_t value,
    opmath_t limit,
    int64_t& whole,
    opmath_t& fraction) {
  const opmath_t floor_value = std::floor(value);
  fraction = value - floor_value;
  whole = static_cast<int64_t>(std::clamp(floor_value, -limit, limit));
}

template <typename scalar_t, typename opmath_t>
BilinearSample<opmath_t> make_sample(
    scalar_t u_value,
    scalar_t v_value,
    const CorrelationParams& p) {
  BilinearSample<opmath_t> s;
  const opmath_t u = static_cast<opmath_t>(u_value);
  const opmath_t v = static_cast<opmath_t>(v_value);
  if (!std::isfinite(u) || !std::isfinite(v)) {
    s.finite = false;
    return s;
  }
  // Beyond this distance from the unshifted window every tap is outside
  // input2 (both inputs' extents plus the window and the displacements).
  const opmath_t limit_y = static_cast<opmath_t>(
      p.height + p.height2 + 2 * p.pad_h + p.dilation_h * p.kernel_h +
      std::abs(p.disp_min_h) + std::abs(p.disp_max_h()) + 4);
  const opmath_t limit_x = static_cast<opmath_t>(
      p.width + p.width2 + 2 * p.pad_w + p.dilation_w * p.kernel_w +
      std::abs(p.disp_min_w) + std::abs(p.disp_max_w()) + 4);
  split_component(v, limit_y, s.base_y, s.fy);
  split_component(u, limit_x, s.base_x, s.fx);
  return s;
}

// The distinct tap positions along one axis of all displacements of a
// location, relative to its smallest displacement: displacement number a
// (ascending) has its taps t in {0, 1} at a * step + t. With step 1
// neighbouring displacements share a tap, so the positions are 0..count, one
// run of consecutive pixels; otherwise they are `count` runs of two.
struct TapAxis {
  int64_t count = 1;
  int64_t step = 1;

  bool merged() const {
    return step == 1;
  }
  int64_t positions() const {
    return merged() ? count + 1 : 2 * count;
  }
  int64_t index(int64_t a, int t) const {
    return merged() ? a + t : 2 * a + t;
  }
  // Position (relative pixel) of grid index r.
  int64_t position(int64_t r) const {
    return merged() ? r : (r / 2) * step + r % 2;
  }
  int64_t runs() const {
    return merged() ? 1 : count;
  }
  int64_t run_length() const {
    return merged() ? count + 1 : 2;
  }
  // Grid index and relative pixel of the first position of run k.
  int64_t run_index(int64_t k) const {
    return k * run_length();
  }
  int64_t run_position(int64_t k) const {
    return k * step;
  }
};

// ---------------------------------------------------------------------------
// Geometry shared by the kernels.

template <typename opmath_t>
struct OffsetGeometry {
  const CorrelationParams& p;
  PixelMajor<opmath_t> in2;
  TapAxis axis_h;
  TapAxis axis_w;
  // Offset in input2 of grid position m from position 0, for m <
  // grid_size(), then repeats of the last one up to a whole dot block.
  std::vector<int64_t> grid_offsets;

  OffsetGeometry(const CorrelationParams& params, PixelMajor<opmath_t> input2)
      : p(params),
        in2(input2),
        axis_h{params.disp_count_h, params.disp_step_h},
        axis_w{params.disp_count_w, params.disp_step_w} {
    const int64_t size = grid_size();
    grid_offsets.resize((size + kDotBlock - 1) / kDotBlock * kDotBlock);
    for (const auto m : c10::irange(grid_offsets.size())) {
      const int64_t q = std::min<int64_t>(m, size - 1);
      grid_offsets[m] = axis_h.position(q / grid_cols()) * in2.stride_y +
          axis_w.position(q % grid_cols()) * in2.stride_x;
    }
  }

  int64_t grid_rows() const {
    return axis_h.positions();
  }
  int64_t grid_cols() const {
    return axis_w.positions();
  }
  int64_t grid_size() const {
    return grid_rows() * grid_cols();
  }

  // Calls f(i, y1, x1) for every kernel tap (kernel row i) of location
  // (oy, ox) whose input1 pixel (y1, x1) is inside input1.
  template <typename F>
  void for_each_tap(int64_t oy, int64_t ox, const F& f) const {
    const int64_t y0 = oy * p.stride_h - p.pad_h;
    const int64_t x0 = ox * p.stride_w - p.pad_w;
    for (const auto i : c10::irange(p.kernel_h)) {
      const int64_t y1 = y0 + i * p.dilation_h;
      if (y1 < 0 || y1 >= p.height) {
        continue;
      }
      for (const auto j : c10::irange(p.kernel_w)) {
        const int64_t x1 = x0 + j * p.dilation_w;
        if (x1 < 0 || x1 >= p.width) {
          continue;
        }
        f(i, y1, x1);
      }
    }
  }

  // For the tap at input1 pixel (y1, x1) and the location's sample: calls
  // g(r, s, y2, x2, count) for each maximal run of `count` consecutive grid
  // positions (r, s..s+count) of one grid row that lie inside input2, the
  // first at input2 pixel (y2, x2).
  template <typename G>
  void for_each_segment(
      int64_t y1,
      int64_t x1,
      const BilinearSample<opmath_t>& sample,
      const G& g) const {
    const int64_t top = y1 + sample.base_y + p.disp_min_h;
    const int64_t left = x1 + sample.base_x + p.disp_min_w;
    for (const auto r : c10::irange(grid_rows())) {
      const int64_t y2 = top + axis_h.position(r);
      if (y2 < 0 || y2 >= in2.height) {
        continue;
      }
      for (const auto k : c10::irange(axis_w.runs())) {
        const int64_t first = left + axis_w.run_position(k);
        const int64_t lo = std::max<int64_t>(0, -first);
        const int64_t hi = std::min(axis_w.run_length(), in2.width - first);
        if (lo < hi) {
          g(r, axis_w.run_index(k) + lo, y2, first + lo, hi - lo);
        }
      }
    }
  }

  // E[g][r][s] (grid_size() per group, zeroed here) of location (oy, ox):
  // the integer-position dot products, summed over the kernel taps; `rows`
  // holds output row oy's input1 rows (all channels). `pixels` and
  // `indices` are scratch of grid_size() + kDotBlock entries: a tap's
  // positions inside input2, across grid rows, go in blocks of kDotBlock
  // (the last one padded with a repeat whose sum is dropped).
  template <typename Rows>
  void dot_products(
      int64_t n,
      int64_t oy,
      int64_t ox,
      const BilinearSample<opmath_t>& sample,
      const Rows& rows,
      const opmath_t** pixels,
      int64_t* indices,
      opmath_t* E) const {
    const int64_t cpg = p.channels_per_group();
    const int64_t G = grid_size();
    std::fill(E, E + p.groups * G, opmath_t(0));
    const int64_t extent_h = axis_h.position(grid_rows() - 1) + 1;
    const int64_t extent_w = axis_w.position(grid_cols() - 1) + 1;
    for_each_tap(oy, ox, [&](int64_t i, int64_t y1, int64_t x1) {
      const opmath_t* x = rows.pixel(i, x1);
      const int64_t top = y1 + sample.base_y + p.disp_min_h;
      const int64_t left = x1 + sample.base_x + p.disp_min_w;
      if (top >= 0 && top + extent_h <= in2.height && left >= 0 &&
          left + extent_w <= in2.width) {
        // Every position inside input2 (the common case): the grid's
        // offsets from its first pixel, in grid order.
        const opmath_t* first = in2.pixel(n, top, left);
        for (const auto g : c10::irange(p.groups)) {
          opmath_t* e = E + g * G;
          for (int64_t m0 = 0; m0 < G; m0 += kDotBlock) {
            const opmath_t* y[kDotBlock];
            for (int k = 0; k < kDotBlock; ++k) {
              y[k] = first + grid_offsets[m0 + k];
            }
            opmath_t sums[kDotBlock];
            dot_block(x + g * cpg, y, g * cpg, cpg, sums);
            const int64_t valid = std::min<int64_t>(kDotBlock, G - m0);
            for (const auto k : c10::irange(valid)) {
              e[m0 + k] += sums[k];
            }
          }
        }
        return;
      }
      int64_t count = 0;
      for_each_segment(
          y1,
          x1,
          sample,
          [&](int64_t r, int64_t s, int64_t y2, int64_t x2, int64_t length) {
            const opmath_t* y = in2.pixel(n, y2, x2);
            const int64_t index = r * grid_cols() + s;
            for (const auto m : c10::irange(length)) {
              pixels[count] = y + m * in2.stride_x;
              indices[count] = index + m;
              ++count;
            }
          });
      if (count == 0) {
        return;
      }
      const int64_t padded = (count + kDotBlock - 1) / kDotBlock * kDotBlock;
      for (int64_t m = count; m < padded; ++m) {
        pixels[m] = pixels[count - 1];
      }
      for (const auto g : c10::irange(p.groups)) {
        opmath_t* e = E + g * G;
        for (int64_t m0 = 0; m0 < count; m0 += kDotBlock) {
          opmath_t sums[kDotBlock];
          dot_block(x + g * cpg, pixels + m0, g * cpg, cpg, sums);
          const int64_t valid = std::min<int64_t>(kDotBlock, count - m0);
          for (const auto k : c10::irange(valid)) {
            e[indices[m0 + k]] += sums[k];
          }
        }
      }
    });
  }

  // Calls f(channel, grid index of (a, ty) and (b, tx) ...) : visits every
  // displacement (a, b) of a group with its output channel and the grid
  // offsets of its four taps.
  template <typename F>
  void for_each_displacement(const F& f) const {
    const int64_t cols = grid_cols();
    for (const auto a : c10::irange(p.disp_count_h)) {
      const int64_t r0 = axis_h.index(a, 0) * cols;
      const int64_t r1 = axis_h.index(a, 1) * cols;
      for (const auto b : c10::irange(p.disp_count_w)) {
        const int64_t s0 = axis_w.index(b, 0);
        const int64_t s1 = axis_w.index(b, 1);
        f(p.displacement_channel(a, b), r0 + s0, r0 + s1, r1 + s0, r1 + s1);
      }
    }
  }

  // out[channel(a, b)] = sum_t w[t] * e[grid index of (a, ty), (b, tx)]
  // for one group's grid e, with w = {w00, w01, w10, w11}: the four
  // weighted taps of every displacement.
  void mix(const opmath_t* e, const opmath_t* w, opmath_t* out) const {
    const int64_t cols = grid_cols();
    const int64_t step = p.displacement_channel_step_w();
    for (const auto a : c10::irange(p.disp_count_h)) {
      const opmath_t* e0 = e + axis_h.index(a, 0) * cols;
      const opmath_t* e1 = e + axis_h.index(a, 1) * cols;
      opmath_t* o = out + p.displacement_channel(a, 0);
      if (axis_w.merged() && step == 1) {
        // Contiguous in b: a loop the compiler vectorizes.
        for (const auto b : c10::irange(p.disp_count_w)) {
          o[b] =
              w[0] * e0[b] + w[1] * e0[b + 1] + w[2] * e1[b] + w[3] * e1[b + 1];
        }
      } else {
        for (const auto b : c10::irange(p.disp_count_w)) {
          const int64_t s0 = axis_w.index(b, 0);
          const int64_t s1 = axis_w.index(b, 1);
          o[b * step] =
              w[0] * e0[s0] + w[1] * e0[s1] + w[2] * e1[s0] + w[3] * e1[s1];
        }
      }
    }
  }

  // parallel_for's grain for items of `locations` output locations' work.
  int64_t grain(int64_t locations) const {
    const int64_t work = std::max<int64_t>(
        1, locations * p.kernel_h * p.kernel_w * grid_size() * p.channels);
    return std::max<int64_t>(1, at::internal::GRAIN_SIZE / work);
  }
};

// The bilinear samples of the locations, read from the offset tensor.
template <typename scalar_t, typename opmath_t>
struct OffsetSamples {
  const scalar_t* data;
  IntArrayRef strides;
  const CorrelationParams& p;

  OffsetSamples(const TensorBase& offset, const CorrelationParams& params)
      : data(offset.const_data_ptr<scalar_t>()),
        strides(offset.strides()),
        p(params) {}

  BilinearSample<opmath_t> at(int64_t n, int64_t oy, int64_t ox) const {
    const scalar_t* u =
        data + n * strides[0] + oy * strides[2] + ox * strides[3];
    return make_sample<scalar_t, opmath_t>(u[0], u[strides[1]], p);
  }
};

// ---------------------------------------------------------------------------
// Forward.

template <typename scalar_t>
void correlation_offset_kernel_impl(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto in2 = pixel_major_input<scalar_t, opmath_t>(input2);
  const OffsetGeometry<opmath_t> geo(p, in2.view);
  const int64_t OC = p.out_channels();
  const int64_t D = p.displacements();
  const int64_t G = geo.grid_size();
  const opmath_t scale = static_cast<opmath_t>(p.scale);
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const auto outs = output.strides();
  const OffsetSamples<scalar_t, opmath_t> samples(offset, p);

  at::parallel_for(
      0,
      p.batch * p.out_h,
      geo.grain(p.out_w),
      [&](int64_t begin, int64_t end) {
        std::vector<opmath_t> E(p.groups * G);
        std::vector<opmath_t> row(p.out_w * OC);
        std::vector<opmath_t> tile(kTileValues * kTilePixels);
        std::vector<const opmath_t*> pixels(G + kDotBlock);
        std::vector<int64_t> indices(G + kDotBlock);
        Input1Rows<scalar_t, opmath_t> rows(input1, p, 0, p.channels);
        for (const auto item : c10::irange(begin, end)) {
          const int64_t n = item / p.out_h;
          const int64_t oy = item % p.out_h;
          rows.load(n, oy);
          for (const auto ox : c10::irange(p.out_w)) {
            opmath_t* o = row.data() + ox * OC;
            const auto sample = samples.at(n, oy, ox);
            if (!sample.finite) {
              std::fill(o, o + OC, std::numeric_limits<opmath_t>::quiet_NaN());
              continue;
            }
            geo.dot_products(
                n,
                oy,
                ox,
                sample,
                rows,
                pixels.data(),
                indices.data(),
                E.data());
            const opmath_t w[4] = {
                scale * sample.weight(0, 0),
                scale * sample.weight(0, 1),
                scale * sample.weight(1, 0),
                scale * sample.weight(1, 1)};
            for (const auto g : c10::irange(p.groups)) {
              geo.mix(E.data() + g * G, w, o + g * D);
            }
          }
          store_pixels(
              row.data(),
              p.out_w,
              OC,
              out + n * outs[0] + oy * outs[2],
              outs[3],
              outs[1],
              tile.data());
        }
      });
}

// ---------------------------------------------------------------------------
// Backward.

// The per-location half of the backward, a row of locations per item:
// the offset gradient (from the same dot products as the forward) and, when
// `coef` is given, the coefficient grids of the input gradients,
//   coef[location][g][r][s] = scale * sum of go[g, (a, b)] * w_t
// over the (a, b, t) that land on grid position (r, s), left at zero at a
// location whose offset is not finite (it contributes nothing).
template <typename scalar_t, typename opmath_t>
void location_gradients(
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& offset,
    const OffsetGeometry<opmath_t>& geo,
    opmath_t* coef) {
  const auto& p = geo.p;
  const int64_t OC = p.out_channels();
  const int64_t D = p.displacements();
  const int64_t G = geo.grid_size();
  const opmath_t scale = static_cast<opmath_t>(p.scale);
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const auto gos = grad_output.strides();
  const bool want_offset = grad_offset.defined();
  scalar_t* goff =
      want_offset ? grad_offset.mutable_data_ptr<scalar_t>() : nullptr;
  const auto gs = want_offset ? grad_offset.strides() : IntArrayRef();
  const int64_t work = want_offset ? p.out_w : 1;
  const OffsetSamples<scalar_t, opmath_t> samples(offset, p);
  at::parallel_for(
      0, p.batch * p.out_h, geo.grain(work), [&](int64_t begin, int64_t end) {
        std::vector<opmath_t> E(want_offset ? p.groups * G : 0);
        std::vector<const opmath_t*> pixels(G + kDotBlock);
        std::vector<int64_t> indices(G + kDotBlock);
        std::vector<opmath_t> go_row(p.out_w * OC);
        std::vector<opmath_t> tile(kTileValues * kTilePixels);
        std::optional<Input1Rows<scalar_t, opmath_t>> rows;
        if (want_offset) {
          rows.emplace(input1, p, 0, p.channels);
        }
        for (const auto item : c10::irange(begin, end)) {
          const int64_t n = item / p.out_h;
          const int64_t oy = item % p.out_h;
          if (want_offset) {
            rows->load(n, oy);
          }
          load_pixels(
              go + n * gos[0] + oy * gos[2],
              gos[3],
              gos[1],
              p.out_w,
              OC,
              go_row.data(),
              tile.data());
          for (const auto ox : c10::irange(p.out_w)) {
            const auto sample = samples.at(n, oy, ox);
            const opmath_t* gk = go_row.data() + ox * OC;
            if (coef != nullptr) {
              opmath_t* cf = coef + (item * p.out_w + ox) * p.groups * G;
              std::fill(cf, cf + p.groups * G, opmath_t(0));
              if (sample.finite) {
                const opmath_t w00 = scale * sample.weight(0, 0);
                const opmath_t w01 = scale * sample.weight(0, 1);
                const opmath_t w10 = scale * sample.weight(1, 0);
                const opmath_t w11 = scale * sample.weight(1, 1);
                for (const auto g : c10::irange(p.groups)) {
                  opmath_t* c = cf + g * G;
                  const opmath_t* gg = gk + g * D;
                  geo.for_each_displacement([&](int64_t ch,
                                                int64_t t00,
                                                int64_t t01,
                                                int64_t t10,
                                                int64_t t11) {
                    c[t00] += gg[ch] * w00;
                    c[t01] += gg[ch] * w01;
                    c[t10] += gg[ch] * w10;
                    c[t11] += gg[ch] * w11;
                  });
                }
              }
            }
            if (!want_offset) {
              continue;
            }
            opmath_t du = 0;
            opmath_t dv = 0;
            if (!sample.finite) {
              du = dv = std::numeric_limits<opmath_t>::quiet_NaN();
            } else {
              geo.dot_products(
                  n,
                  oy,
                  ox,
                  sample,
                  *rows,
                  pixels.data(),
                  indices.data(),
                  E.data());
              // d w_t / du and d w_t / dv of the four taps.
              const opmath_t u00 = sample.weight_du(0, 0);
              const opmath_t u01 = sample.weight_du(0, 1);
              const opmath_t u10 = sample.weight_du(1, 0);
              const opmath_t u11 = sample.weight_du(1, 1);
              const opmath_t v00 = sample.weight_dv(0, 0);
              const opmath_t v01 = sample.weight_dv(0, 1);
              const opmath_t v10 = sample.weight_dv(1, 0);
              const opmath_t v11 = sample.weight_dv(1, 1);
              for (const auto g : c10::irange(p.groups)) {
                const opmath_t* e = E.data() + g * G;
                const opmath_t* gg = gk + g * D;
                geo.for_each_displacement([&](int64_t ch,
                                              int64_t t00,
                                              int64_t t01,
                                              int64_t t10,
                                              int64_t t11) {
                  du += gg[ch] *
                      (u00 * e[t00] + u01 * e[t01] + u10 * e[t10] +
                       u11 * e[t11]);
                  dv += gg[ch] *
                      (v00 * e[t00] + v01 * e[t01] + v10 * e[t10] +
                       v11 * e[t11]);
                });
              }
            }
            scalar_t* gpix = goff + n * gs[0] + oy * gs[2] + ox * gs[3];
            gpix[0] = static_cast<scalar_t>(scale * du);
            gpix[gs[1]] = static_cast<scalar_t>(scale * dv);
          }
        }
      });
}

// One run of consecutive grid positions of one tap, for the input gradient
// scatter: `count` input2 pixels starting at `in2_offset` (in the pixel-major
// input2), their gradient rows at `grad2_offset` (in the item's scratch) and
// their coefficients at `coef_offset` (in the location's grid).
struct Segment {
  int64_t in2_offset;
  int64_t grad2_offset;
  int64_t coef_offset;
  int64_t count;
};

// For one tap (one input1 pixel x with gradient row g1) and NV vectors of
// channels (one partial vector of `lanes` channels when NV == 0):
//   g1 += sum over the segments' positions of cf * in2[position]
//   g2[position] += cf * x
template <int NV, bool kWant1, bool kWant2, typename opmath_t>
void scatter_chunk(
    const opmath_t* x,
    opmath_t* g1,
    const opmath_t* in2,
    int64_t in2_stride,
    opmath_t* g2,
    int64_t g2_stride,
    const opmath_t* coef,
    const Segment* segments,
    int64_t segment_count,
    int64_t lanes) {
  using Vec = vec::Vectorized<opmath_t>;
  constexpr int kVecs = NV == 0 ? 1 : NV;
  const auto load = [&](const opmath_t* ptr) {
    return NV == 0 ? Vec::loadu(ptr, lanes) : Vec::loadu(ptr);
  };
  const auto store = [&](const Vec& v, opmath_t* ptr) {
    if constexpr (NV == 0) {
      v.store(ptr, static_cast<int>(lanes));
    } else {
      v.store(ptr);
    }
  };
  Vec xv[kVecs];
  Vec acc[kVecs];
  for (int k = 0; k < kVecs; ++k) {
    if constexpr (kWant2) {
      xv[k] = load(x + k * Vec::size());
    }
    acc[k] = Vec(0);
  }
  for (const auto si : c10::irange(segment_count)) {
    const Segment& seg = segments[si];
    const opmath_t* y = in2 + seg.in2_offset;
    opmath_t* gy = kWant2 ? g2 + seg.grad2_offset : nullptr;
    const opmath_t* cf = coef + seg.coef_offset;
    for (const auto m : c10::irange(seg.count)) {
      const Vec w(cf[m]);
      for (int k = 0; k < kVecs; ++k) {
        if constexpr (kWant1) {
          acc[k] =
              vec::fmadd(w, load(y + m * in2_stride + k * Vec::size()), acc[k]);
        }
        if constexpr (kWant2) {
          opmath_t* ptr = gy + m * g2_stride + k * Vec::size();
          store(vec::fmadd(w, xv[k], load(ptr)), ptr);
        }
      }
    }
  }
  if constexpr (kWant1) {
    for (int k = 0; k < kVecs; ++k) {
      opmath_t* ptr = g1 + k * Vec::size();
      store(load(ptr) + acc[k], ptr);
    }
  }
}

// scatter_chunk over a block of `width` channels: chunks of kScatterVecs
// vectors (the input1 pixel's and the gradient's vectors stay in registers
// for the whole walk over the segments), then single and partial vectors.
constexpr int kScatterVecs = 4;

template <bool kWant1, bool kWant2, typename opmath_t>
void scatter_block(
    const opmath_t* x,
    opmath_t* g1,
    const opmath_t* in2,
    int64_t in2_stride,
    opmath_t* g2,
    int64_t width,
    const opmath_t* coef,
    const std::vector<Segment>& segments) {
  using Vec = vec::Vectorized<opmath_t>;
  const auto count = static_cast<int64_t>(segments.size());
  int64_t c = 0;
  for (; c + kScatterVecs * Vec::size() <= width;
       c += kScatterVecs * Vec::size()) {
    scatter_chunk<kScatterVecs, kWant1, kWant2>(
        kWant2 ? x + c : nullptr,
        kWant1 ? g1 + c : nullptr,
        in2 + c,
        in2_stride,
        kWant2 ? g2 + c : nullptr,
        width,
        coef,
        segments.data(),
        count,
        0);
  }
  for (; c + Vec::size() <= width; c += Vec::size()) {
    scatter_chunk<1, kWant1, kWant2>(
        kWant2 ? x + c : nullptr,
        kWant1 ? g1 + c : nullptr,
        in2 + c,
        in2_stride,
        kWant2 ? g2 + c : nullptr,
        width,
        coef,
        segments.data(),
        count,
        0);
  }
  if (c < width) {
    scatter_chunk<0, kWant1, kWant2>(
        kWant2 ? x + c : nullptr,
        kWant1 ? g1 + c : nullptr,
        in2 + c,
        in2_stride,
        kWant2 ? g2 + c : nullptr,
        width,
        coef,
        segments.data(),
        count,
        width - c);
  }
}

// Stores `height` rows of `width` pixels of pixel-major opmath_t `src`
// (channels [c0, c0 + channels) of image n) into rows y0.. of `grad`.
template <typename scalar_t, typename opmath_t>
void store_gradient_rows(
    const TensorBase& grad,
    const opmath_t* src,
    int64_t n,
    int64_t c0,
    int64_t channels,
    int64_t y0,
    int64_t height,
    opmath_t* tile) {
  scalar_t* data = static_cast<scalar_t*>(grad.mutable_data_ptr());
  const auto s = grad.strides();
  const int64_t width = grad.size(3);
  for (const auto y : c10::irange(height)) {
    store_pixels(
        src + y * width * channels,
        width,
        channels,
        data + n * s[0] + c0 * s[1] + (y0 + y) * s[2],
        s[3],
        s[1],
        tile);
  }
}

// The grad_input1 rows one work item accumulates (channels [c0, c0 + width)
// of image n). Output row oy's kernel taps reach the input1 rows
// y0 + i * dil_h (y0 = oy * stride_h - pad_h, i < kernel_h), a window of
// (kernel_h - 1) * dil_h + 1 rows that moves down by stride_h per output
// row. A ring of that many scratch rows holds the window; a row is stored
// into the gradient (zeros for a row no window reaches) as soon as the
// window has passed it, so no scratch the size of the gradient is needed.
template <typename scalar_t, typename opmath_t>
class Input1GradientRows {
 public:
  Input1GradientRows(
      const TensorBase& grad,
      const CorrelationParams& p,
      int64_t n,
      int64_t c0,
      int64_t width)
      : grad_(grad),
        p_(p),
        n_(n),
        c0_(c0),
        width_(width),
        ring_rows_((p.kernel_h - 1) * p.dilation_h + 1),
        row_size_(p.width * width),
        ring_(ring_rows_ * row_size_),
        owner_(ring_rows_, -1),
        tile_(kTileValues * kTilePixels) {}

  // Enters output row oy: stores the rows above its window and claims the
  // (zeroed) ring slots of the window's rows.
  void begin_row(int64_t oy) {
    const int64_t top = oy * p_.stride_h - p_.pad_h;
    flush_until(top);
    const int64_t end = std::min(top + ring_rows_, p_.height);
    for (int64_t y = std::max<int64_t>(top, 0); y < end; ++y) {
      int64_t& owner = owner_[y % ring_rows_];
      if (owner != y) {
        std::fill(slot(y), slot(y) + row_size_, opmath_t(0));
        owner = y;
      }
    }
  }

  // Gradient of input1 pixel (y, x), inside the current window.
  opmath_t* pixel(int64_t y, int64_t x) {
    return slot(y) + x * width_;
  }

  // Stores every row not yet stored.
  void finish() {
    flush_until(p_.height);
  }

 private:
  opmath_t* slot(int64_t y) {
    return ring_.data() + (y % ring_rows_) * row_size_;
  }

  void flush_until(int64_t limit) {
    for (; next_ < std::min(limit, p_.height); ++next_) {
      int64_t& owner = owner_[next_ % ring_rows_];
      const opmath_t* src = nullptr;
      if (owner == next_) {
        src = slot(next_);
        owner = -1;
      } else {
        if (zeros_.empty()) {
          zeros_.assign(row_size_, opmath_t(0));
        }
        src = zeros_.data();
      }
      store_gradient_rows<scalar_t>(
          grad_, src, n_, c0_, width_, next_, 1, tile_.data());
    }
  }

  const TensorBase& grad_;
  const CorrelationParams& p_;
  int64_t n_;
  int64_t c0_;
  int64_t width_;
  int64_t ring_rows_;
  int64_t row_size_;
  int64_t next_ = 0;
  std::vector<opmath_t> ring_;
  std::vector<int64_t> owner_;
  std::vector<opmath_t> zeros_;
  std::vector<opmath_t> tile_;
};

// Channels per work item of the input gradients: whole vectors, at most
// kMaxBlockVecs of them (the item's grad_input2 scratch, height2 x width2 x
// block, then stays small enough to be reused from cache and is reused from
// item to item), and enough blocks to give every thread work.
constexpr int64_t kMaxBlockVecs = 4;

template <typename opmath_t>
int64_t gradient_block_width(const CorrelationParams& p) {
  using Vec = vec::Vectorized<opmath_t>;
  const int64_t cpg = p.channels_per_group();
  const int64_t vecs_per_group = (cpg + Vec::size() - 1) / Vec::size();
  const int64_t images_and_groups = p.batch * p.groups;
  const int64_t wanted_blocks =
      (at::get_num_threads() + images_and_groups - 1) / images_and_groups;
  const int64_t blocks = std::clamp<int64_t>(
      wanted_blocks,
      (vecs_per_group + kMaxBlockVecs - 1) / kMaxBlockVecs,
      vecs_per_group);
  return (vecs_per_group + blocks - 1) / blocks * Vec::size();
}

// The input gradients from the coefficient grids. A work item is one image
// and a block of channels of one group; it walks every location in order:
//   grad_input1(tap pixel) += sum over positions of cf * in2(position)
//   grad_input2(position) += cf * in1(tap pixel)
// into opmath_t scratch for its channels (grad_input2: pixel-major, the
// size of the image; grad_input1: a ring of rows, Input1GradientRows), then
// writes its part of each gradient once.
template <typename scalar_t, typename opmath_t>
void input_gradients(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& input1,
    const TensorBase& offset,
    const OffsetGeometry<opmath_t>& geo,
    const opmath_t* coef) {
  const auto& p = geo.p;
  const bool want1 = grad_input1.defined();
  const bool want2 = grad_input2.defined();
  const int64_t cpg = p.channels_per_group();
  if (cpg == 0) {
    return;
  }
  const int64_t block_width = gradient_block_width<opmath_t>(p);
  const int64_t blocks = (cpg + block_width - 1) / block_width;
  const int64_t G = geo.grid_size();
  const int64_t cols = geo.grid_cols();
  const auto& in2 = geo.in2;
  const OffsetSamples<scalar_t, opmath_t> samples(offset, p);

  at::parallel_for(
      0, p.batch * p.groups * blocks, 1, [&](int64_t begin, int64_t end) {
        std::vector<opmath_t> g2;
        std::vector<opmath_t> tile(kTileValues * kTilePixels);
        std::vector<Segment> segments;
        for (const auto item : c10::irange(begin, end)) {
          const int64_t n = item / (p.groups * blocks);
          const int64_t g = (item / blocks) % p.groups;
          const int64_t c0 = g * cpg + (item % blocks) * block_width;
          const int64_t width = std::min(block_width, (g + 1) * cpg - c0);
          if (want2) {
            g2.assign(p.height2 * p.width2 * width, opmath_t(0));
          }
          std::optional<Input1GradientRows<scalar_t, opmath_t>> g1;
          if (want1) {
            g1.emplace(grad_input1, p, n, c0, width);
          }
          Input1Rows<scalar_t, opmath_t> rows(input1, p, c0, width);
          for (const auto oy : c10::irange(p.out_h)) {
            if (want1) {
              g1->begin_row(oy);
            }
            if (want2) {
              rows.load(n, oy);
            }
            for (const auto ox : c10::irange(p.out_w)) {
              const auto sample = samples.at(n, oy, ox);
              if (!sample.finite) {
                continue;
              }
              const opmath_t* cf = coef +
                  (((n * p.out_h + oy) * p.out_w + ox) * p.groups + g) * G;
              geo.for_each_tap(oy, ox, [&](int64_t i, int64_t y1, int64_t x1) {
                segments.clear();
                geo.for_each_segment(
                    y1,
                    x1,
                    sample,
                    [&](int64_t r,
                        int64_t s,
                        int64_t y2,
                        int64_t x2,
                        int64_t count) {
                      segments.push_back(
                          {in2.pixel(n, y2, x2) - in2.data + c0,
                           (y2 * p.width2 + x2) * width,
                           r * cols + s,
                           count});
                    });
                if (want1 && want2) {
                  scatter_block<true, true>(
                      rows.pixel(i, x1),
                      g1->pixel(y1, x1),
                      in2.data,
                      in2.stride_x,
                      g2.data(),
                      width,
                      cf,
                      segments);
                } else if (want1) {
                  scatter_block<true, false>(
                      static_cast<const opmath_t*>(nullptr),
                      g1->pixel(y1, x1),
                      in2.data,
                      in2.stride_x,
                      static_cast<opmath_t*>(nullptr),
                      width,
                      cf,
                      segments);
                } else {
                  scatter_block<false, true>(
                      rows.pixel(i, x1),
                      static_cast<opmath_t*>(nullptr),
                      in2.data,
                      in2.stride_x,
                      g2.data(),
                      width,
                      cf,
                      segments);
                }
              });
            }
          }
          if (want1) {
            g1->finish();
          }
          if (want2) {
            store_gradient_rows<scalar_t>(
                grad_input2,
                g2.data(),
                n,
                c0,
                width,
                0,
                p.height2,
                tile.data());
          }
        }
      });
}

template <typename scalar_t>
void correlation_offset_backward_kernel_impl(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto in2 = pixel_major_input<scalar_t, opmath_t>(input2);
  const OffsetGeometry<opmath_t> geo(p, in2.view);
  const bool want_inputs = grad_input1.defined() || grad_input2.defined();
  // The coefficient grids of every location, computed once for all the
  // channel blocks (about (grid_size / displacements) x grad_output's
  // elements, in opmath_t).
  TensorBase coef;
  if (want_inputs) {
    coef = at::detail::empty_cpu(
        {p.batch * p.out_h * p.out_w * p.groups * geo.grid_size()},
        c10::CppTypeToScalarType<opmath_t>::value);
  }
  opmath_t* coef_data =
      want_inputs ? static_cast<opmath_t*>(coef.mutable_data_ptr()) : nullptr;
  location_gradients<scalar_t>(
      grad_offset, grad_output, input1, offset, geo, coef_data);
  if (want_inputs) {
    input_gradients<scalar_t>(
        grad_input1, grad_input2, input1, offset, geo, coef_data);
  }
}

void correlation_offset_kernel(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf, kBFloat16, input1.scalar_type(), "correlation_offset_cpu", [&] {
        correlation_offset_kernel_impl<scalar_t>(
            output, input1, input2, offset, params);
      });
}

void correlation_offset_backward_kernel(
    const TensorBase& grad_input1,
    const TensorBase& grad_input2,
    const TensorBase& grad_offset,
    const TensorBase& grad_output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& params) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      kHalf,
      kBFloat16,
      input1.scalar_type(),
      "correlation_offset_backward_cpu",
      [&] {
        correlation_offset_backward_kernel_impl<scalar_t>(
            grad_input1,
            grad_input2,
            grad_offset,
            grad_output,
            input1,
            input2,
            offset,
            params);
      });
}

}  // namespace

// Registered for every CPU capability, AVX512 included: the dot products
// and the scatter are FMA loops over contiguous pixels, which gain from the
// wider vectors.
ALSO_REGISTER_AVX512_DISPATCH(
    correlation_offset_stub,
    &correlation_offset_kernel)
ALSO_REGISTER_AVX512_DISPATCH(
    correlation_offset_backward_stub,
    &correlation_offset_backward_kernel)

}  // namespace at::native
