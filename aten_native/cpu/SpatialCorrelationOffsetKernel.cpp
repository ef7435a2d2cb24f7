#define TORCH_ASSERT_NO_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/TensorBase.h>
#include <ATen/native/SpatialCorrelationUtils.h>
#include <ATen/native/cpu/SpatialCorrelationKernel.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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
// The kernels therefore work on integer positions only, with the weights
// applied per location, and read both inputs channel-innermost (channels_last
// copies), so every dot product is a contiguous run.
//
// The backward needs, per location, the same four dot products (for the
// offset gradient, through d w_t / du and d w_t / dv) and scatters
// coefficient * row into the input gradients. Threads own disjoint channel
// ranges of both input gradients (every location's coefficients are the same
// for all channels), so the scatter needs no atomics and is deterministic;
// the offset gradient is a per-location sum, owned by the location's row.

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

// A channels_last-contiguous (N, H, W, C) view of one input: element
// (n, y, x, c) at data[((n * H + y) * W + x) * C + c].
template <typename scalar_t>
struct PixelMajor {
  const scalar_t* data;
  int64_t height;
  int64_t width;
  int64_t channels;

  const scalar_t* pixel(int64_t n, int64_t y, int64_t x) const {
    return data + ((n * height + y) * width + x) * channels;
  }
  bool inside(int64_t y, int64_t x) const {
    return y >= 0 && y < height && x >= 0 && x < width;
  }
};

template <typename opmath_t, typename scalar_t>
opmath_t dot(const scalar_t* a, const scalar_t* b, int64_t count) {
  opmath_t sum = 0;
  for (const auto c : c10::irange(count)) {
    sum += static_cast<opmath_t>(a[c]) * static_cast<opmath_t>(b[c]);
  }
  return sum;
}

// Calls f(a, b, y1, x1, y2, x2) for every displacement number (a, b) and
// kernel tap of output location (oy, ox): (y1, x1) is the input1 pixel and
// (y2, x2) the (0, 0) bilinear tap in input2 (neither bounds-checked).
template <typename F>
void for_each_sample(
    const CorrelationParams& p,
    int64_t oy,
    int64_t ox,
    int64_t base_y,
    int64_t base_x,
    const F& f) {
  const int64_t y0 = oy * p.stride_h - p.pad_h;
  const int64_t x0 = ox * p.stride_w - p.pad_w;
  for (const auto a : c10::irange(p.disp_count_h)) {
    const int64_t dy = p.disp_min_h + a * p.disp_step_h;
    for (const auto b : c10::irange(p.disp_count_w)) {
      const int64_t dx = p.disp_min_w + b * p.disp_step_w;
      for (const auto i : c10::irange(p.kernel_h)) {
        const int64_t y1 = y0 + i * p.dilation_h;
        for (const auto j : c10::irange(p.kernel_w)) {
          const int64_t x1 = x0 + j * p.dilation_w;
          f(a, b, y1, x1, y1 + dy + base_y, x1 + dx + base_x);
        }
      }
    }
  }
}

template <typename scalar_t>
void correlation_offset_kernel_impl(
    const TensorBase& output,
    const TensorBase& input1,
    const TensorBase& input2,
    const TensorBase& offset,
    const CorrelationParams& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto in1_contig = input1.contiguous(at::MemoryFormat::ChannelsLast);
  const auto in2_contig = input2.contiguous(at::MemoryFormat::ChannelsLast);
  const PixelMajor<scalar_t> in1{
      in1_contig.const_data_ptr<scalar_t>(), p.height, p.width, p.channels};
  const PixelMajor<scalar_t> in2{
      in2_contig.const_data_ptr<scalar_t>(), p.height2, p.width2, p.channels};
  const scalar_t* off = offset.const_data_ptr<scalar_t>();
  const auto os = offset.strides();
  scalar_t* out = output.mutable_data_ptr<scalar_t>();
  const auto outs = output.strides();
  const int64_t cpg = p.channels_per_group();
  const int64_t displacements = p.displacements();
  const opmath_t scale = static_cast<opmath_t>(p.scale);

  at::parallel_for(0, p.batch * p.out_h, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(p.out_channels());
    for (const auto row : c10::irange(begin, end)) {
      const int64_t n = row / p.out_h;
      const int64_t oy = row % p.out_h;
      for (const auto ox : c10::irange(p.out_w)) {
        const auto sample = make_sample<scalar_t, opmath_t>(
            off[n * os[0] + oy * os[2] + ox * os[3]],
            off[n * os[0] + os[1] + oy * os[2] + ox * os[3]],
            p);
        scalar_t* out_pixel = out + n * outs[0] + oy * outs[2] + ox * outs[3];
        if (!sample.finite) {
          for (const auto k : c10::irange(p.out_channels())) {
            out_pixel[k * outs[1]] = std::numeric_limits<scalar_t>::quiet_NaN();
          }
          continue;
        }
        std::fill(acc.begin(), acc.end(), opmath_t(0));
        for_each_sample(
            p,
            oy,
            ox,
            sample.base_y,
            sample.base_x,
            [&](int64_t a,
                int64_t b,
                int64_t y1,
                int64_t x1,
                int64_t y2,
                int64_t x2) {
              if (!in1.inside(y1, x1)) {
                return;
              }
              const int64_t channel = p.displacement_channel(a, b);
              for (const int ty : {0, 1}) {
                for (const int tx : {0, 1}) {
                  if (!in2.inside(y2 + ty, x2 + tx)) {
                    continue;
                  }
                  const opmath_t w = sample.weight(ty, tx);
                  const scalar_t* a1 = in1.pixel(n, y1, x1);
                  const scalar_t* a2 = in2.pixel(n, y2 + ty, x2 + tx);
                  for (const auto g : c10::irange(p.groups)) {
                    acc[g * displacements + channel] +=
                        w * dot<opmath_t>(a1 + g * cpg, a2 + g * cpg, cpg);
                  }
                }
              }
            });
        for (const auto k : c10::irange(p.out_channels())) {
          out_pixel[k * outs[1]] = static_cast<scalar_t>(scale * acc[k]);
        }
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
  const auto in1_contig = input1.contiguous(at::MemoryFormat::ChannelsLast);
  const auto in2_contig = input2.contiguous(at::MemoryFormat::ChannelsLast);
  const PixelMajor<scalar_t> in1{
      in1_contig.const_data_ptr<scalar_t>(), p.height, p.width, p.channels};
  const PixelMajor<scalar_t> in2{
      in2_contig.const_data_ptr<scalar_t>(), p.height2, p.width2, p.channels};
  const scalar_t* off = offset.const_data_ptr<scalar_t>();
  const auto os = offset.strides();
  const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
  const auto gos = grad_output.strides();
  const int64_t cpg = p.channels_per_group();
  const int64_t displacements = p.displacements();
  const opmath_t scale = static_cast<opmath_t>(p.scale);

  const auto sample_at = [&](int64_t n, int64_t oy, int64_t ox) {
    return make_sample<scalar_t, opmath_t>(
        off[n * os[0] + oy * os[2] + ox * os[3]],
        off[n * os[0] + os[1] + oy * os[2] + ox * os[3]],
        p);
  };
  const auto grad_out_at =
      [&](int64_t n, int64_t k, int64_t oy, int64_t ox) -> opmath_t {
    return static_cast<opmath_t>(
        go[n * gos[0] + k * gos[1] + oy * gos[2] + ox * gos[3]]);
  };

  if (grad_offset.defined()) {
    scalar_t* goff = grad_offset.mutable_data_ptr<scalar_t>();
    const auto gs = grad_offset.strides();
    at::parallel_for(0, p.batch * p.out_h, 1, [&](int64_t begin, int64_t end) {
      for (const auto row : c10::irange(begin, end)) {
        const int64_t n = row / p.out_h;
        const int64_t oy = row % p.out_h;
        for (const auto ox : c10::irange(p.out_w)) {
          const auto sample = sample_at(n, oy, ox);
          opmath_t du = 0;
          opmath_t dv = 0;
          if (!sample.finite) {
            du = dv = std::numeric_limits<opmath_t>::quiet_NaN();
          } else {
            for_each_sample(
                p,
                oy,
                ox,
                sample.base_y,
                sample.base_x,
                [&](int64_t a,
                    int64_t b,
                    int64_t y1,
                    int64_t x1,
                    int64_t y2,
                    int64_t x2) {
                  if (!in1.inside(y1, x1)) {
                    return;
                  }
                  const int64_t channel = p.displacement_channel(a, b);
                  for (const auto g : c10::irange(p.groups)) {
                    const opmath_t gk =
                        grad_out_at(n, g * displacements + channel, oy, ox);
                    for (const int ty : {0, 1}) {
                      for (const int tx : {0, 1}) {
                        if (!in2.inside(y2 + ty, x2 + tx)) {
                          continue;
                        }
                        const opmath_t d = gk *
                            dot<opmath_t>(in1.pixel(n, y1, x1) + g * cpg,
                                          in2.pixel(n, y2 + ty, x2 + tx) +
                                              g * cpg,
                                          cpg);
                        du += sample.weight_du(ty, tx) * d;
                        dv += sample.weight_dv(ty, tx) * d;
                      }
                    }
                  }
                });
          }
          scalar_t* g_pixel = goff + n * gs[0] + oy * gs[2] + ox * gs[3];
          g_pixel[0] = static_cast<scalar_t>(scale * du);
          g_pixel[gs[1]] = static_cast<scalar_t>(scale * dv);
        }
      }
    });
  }

  if (!grad_input1.defined() && !grad_input2.defined()) {
    return;
  }
  // Input gradients: each work item owns one image and a range of channels of
  // both gradients, accumulated in opmath_t in pixel-major scratch and
  // written out once.
  const bool want1 = grad_input1.defined();
  const bool want2 = grad_input2.defined();
  constexpr int64_t kChannelBlock = 16;
  const int64_t blocks_per_group = (cpg + kChannelBlock - 1) / kChannelBlock;
  const int64_t items = p.batch * p.groups * blocks_per_group;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc1;
    std::vector<opmath_t> acc2;
    for (const auto item : c10::irange(begin, end)) {
      const int64_t n = item / (p.groups * blocks_per_group);
      const int64_t g = (item / blocks_per_group) % p.groups;
      const int64_t c_begin =
          g * cpg + (item % blocks_per_group) * kChannelBlock;
      const int64_t c_end = std::min(c_begin + kChannelBlock, (g + 1) * cpg);
      const int64_t width = c_end - c_begin;
      if (want1) {
        acc1.assign(p.height * p.width * width, opmath_t(0));
      }
      if (want2) {
        acc2.assign(p.height2 * p.width2 * width, opmath_t(0));
      }
      for (const auto oy : c10::irange(p.out_h)) {
        for (const auto ox : c10::irange(p.out_w)) {
          const auto sample = sample_at(n, oy, ox);
          if (!sample.finite) {
            continue;
          }
          for_each_sample(
              p,
              oy,
              ox,
              sample.base_y,
              sample.base_x,
              [&](int64_t a,
                  int64_t b,
                  int64_t y1,
                  int64_t x1,
                  int64_t y2,
                  int64_t x2) {
                if (!in1.inside(y1, x1)) {
                  return;
                }
                const opmath_t gk = scale *
                    grad_out_at(n,
                                g * displacements +
                                    p.displacement_channel(a, b),
                                oy,
                                ox);
                const scalar_t* a1 = in1.pixel(n, y1, x1) + c_begin;
                for (const int ty : {0, 1}) {
                  for (const int tx : {0, 1}) {
                    if (!in2.inside(y2 + ty, x2 + tx)) {
                      continue;
                    }
                    const opmath_t coef = gk * sample.weight(ty, tx);
                    const scalar_t* a2 =
                        in2.pixel(n, y2 + ty, x2 + tx) + c_begin;
                    if (want1) {
                      opmath_t* d1 = acc1.data() + (y1 * p.width + x1) * width;
                      for (const auto c : c10::irange(width)) {
                        d1[c] += coef * static_cast<opmath_t>(a2[c]);
                      }
                    }
                    if (want2) {
                      opmath_t* d2 = acc2.data() +
                          ((y2 + ty) * p.width2 + (x2 + tx)) * width;
                      for (const auto c : c10::irange(width)) {
                        d2[c] += coef * static_cast<opmath_t>(a1[c]);
                      }
                    }
                  }
                }
              });
        }
      }
      const auto write = [&](const TensorBase& grad,
                             const std::vector<opmath_t>& acc,
                             int64_t height,
                             int64_t w) {
        scalar_t* data = grad.mutable_data_ptr<scalar_t>();
        const auto s = grad.strides();
        for (const auto y : c10::irange(height)) {
          for (const auto x : c10::irange(w)) {
            for (const auto c : c10::irange(width)) {
              data[n * s[0] + (c_begin + c) * s[1] + y * s[2] + x * s[3]] =
                  static_cast<scalar_t>(acc[(y * w + x) * width + c]);
            }
          }
        }
      };
      if (want1) {
        write(grad_input1, acc1, p.height, p.width);
      }
      if (want2) {
        write(grad_input2, acc2, p.height2, p.width2);
      }
    }
  });
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

REGISTER_DISPATCH(correlation_offset_stub, &correlation_offset_kernel)
REGISTER_DISPATCH(
    correlation_offset_backward_stub,
    &correlation_offset_backward_kernel)

}  // namespace at::native
