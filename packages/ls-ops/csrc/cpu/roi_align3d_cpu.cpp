// RoIAlign3D forward and backward on the CPU.
//
// The input is read in a channels-last copy (B, D, H, W, C), so every trilinear sample is
// 8 weighted rows of C contiguous values: sample positions and weights are computed once per
// sample and shared by all channels, and the channel loop vectorises. The forward runs in
// parallel over rois (taken along a Z-order curve of their centres, for cache reuse), pooling
// each roi into a (bins, C) buffer that is written out transposed;
// the backward runs in parallel over channel blocks, so every thread owns its slice of the
// gradient and the accumulation order is deterministic (roi, bin, sample, as torchvision's CPU
// kernel). Layout changes use a cache-blocked parallel transpose. All offsets are 64-bit.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

#include <vector>

#include "../geometry.h"
#include "../ops.h"
#include "vectorize.h"

namespace ls_ops {
namespace {

// acc[c] += w[0] * p[0][c] + ... + w[7] * p[7][c] for c in [0, n).
#define LS_OPS_DEFINE_ACCUMULATE8(T)                                                                     \
  LS_OPS_VECTOR_CLONES void accumulate8(T* __restrict acc, const T* const* p, const T* w, int64_t n) { \
    const T* __restrict p0 = p[0];                                                                       \
    const T* __restrict p1 = p[1];                                                                       \
    const T* __restrict p2 = p[2];                                                                       \
    const T* __restrict p3 = p[3];                                                                       \
    const T* __restrict p4 = p[4];                                                                       \
    const T* __restrict p5 = p[5];                                                                       \
    const T* __restrict p6 = p[6];                                                                       \
    const T* __restrict p7 = p[7];                                                                       \
    const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];      \
    for (int64_t c = 0; c < n; ++c) {                                                                    \
      acc[c] += w0 * p0[c] + w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c] + w5 * p5[c] +            \
                w6 * p6[c] + w7 * p7[c];                                                                 \
    }                                                                                                    \
  }
LS_OPS_DEFINE_ACCUMULATE8(float)
LS_OPS_DEFINE_ACCUMULATE8(double)

// y[c] += a * x[c] for c in [0, n).
#define LS_OPS_DEFINE_AXPY(T)                                                                \
  LS_OPS_VECTOR_CLONES void axpy(T* __restrict y, const T* __restrict x, T a, int64_t n) { \
    for (int64_t c = 0; c < n; ++c) {                                                        \
      y[c] += x[c] * a;                                                                      \
    }                                                                                        \
  }
LS_OPS_DEFINE_AXPY(float)
LS_OPS_DEFINE_AXPY(double)

// dst[o][c][r] = src[o][r][c] for o < outer, r < rows, c < cols. Tiles of 16 x 16 go through a
// local buffer, so that every global read and write is a contiguous 64-byte row.
template <typename T>
void transpose_tile(const T* src, T* dst, int64_t rows, int64_t cols, int64_t r0, int64_t c0) {
  constexpr int64_t kTile = 16;
  const int64_t nr = std::min(r0 + kTile, rows) - r0, nc = std::min(c0 + kTile, cols) - c0;
  T buf[kTile][kTile];
  for (int64_t r = 0; r < nr; ++r) {
    const T* row = src + (r0 + r) * cols + c0;
    for (int64_t c = 0; c < nc; ++c) buf[c][r] = row[c];
  }
  for (int64_t c = 0; c < nc; ++c) {
    T* out = dst + (c0 + c) * rows + r0;
    for (int64_t r = 0; r < nr; ++r) out[r] = buf[c][r];
  }
}

template <typename T>
void transpose(const T* src, T* dst, int64_t outer, int64_t rows, int64_t cols, bool parallel) {
  const int64_t row_tiles = (rows + 15) / 16, col_tiles = (cols + 15) / 16;
  // Work items: (outer, column tile); each walks down its column of tiles.
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t o = i / col_tiles, c0 = (i % col_tiles) * 16;
      for (int64_t rt = 0; rt < row_tiles; ++rt) {
        transpose_tile(src + o * rows * cols, dst + o * rows * cols, rows, cols, rt * 16, c0);
      }
    }
  };
  if (parallel) {
    at::parallel_for(0, outer * col_tiles, 64, run);
  } else {
    run(0, outer * col_tiles);
  }
}

// (B, C, D, H, W) contiguous -> a new (B, D, H, W, C) contiguous tensor.
at::Tensor to_channels_last(const at::Tensor& t) {
  const auto src = t.contiguous();
  auto dst = at::empty({t.size(0), t.size(2), t.size(3), t.size(4), t.size(1)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "ls_ops_to_channels_last", [&] {
    transpose(src.data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), t.size(0), t.size(1),
              t.size(2) * t.size(3) * t.size(4), true);
  });
  return dst;
}

struct Geometry {
  int64_t batch, channels, depth, height, width;
  int64_t od, oh, ow;
  int64_t sd, sh, sw;
  bool aligned;
};

// Per-roi sampling tables: the taps of every sample along each axis.
template <typename T>
struct RoiTables {
  int64_t b = 0;
  RoiAxis<T> az{}, ay{}, ax{};
  std::vector<Tap<T>> tz, ty, tx;  // [p * grid + i]

  void build(const T* roi, const T* scale, const Geometry& g) {
    b = static_cast<int64_t>(roi[0]);
    az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
    ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
    ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
    fill(tz, az, g.od, g.depth);
    fill(ty, ay, g.oh, g.height);
    fill(tx, ax, g.ow, g.width);
  }

  static void fill(std::vector<Tap<T>>& taps, const RoiAxis<T>& a, int64_t pooled, int64_t size) {
    const int64_t grid = a.grid > 0 ? a.grid : 0;
    taps.resize(pooled * grid);
    for (int64_t p = 0; p < pooled; ++p) {
      for (int64_t i = 0; i < grid; ++i) {
        taps[p * grid + i] = make_tap<T>(sample_coord<T>(a, p, i), size);
      }
    }
  }

  int64_t count() const { return sample_count(az.grid, ay.grid, ax.grid); }
};

// The four (z, y) corner rows of one z sample and one y sample: channels-last row offsets of
// (zl,yl) (zl,yh) (zh,yl) (zh,yh), and their bilinear weights. Shared by every x sample of the row.
template <typename T>
struct CornerRows {
  int64_t rows[4];
  T w[4];

  CornerRows(int64_t base, const Geometry& g, const Tap<T>& z, const Tap<T>& y)
      : rows{((base + z.low) * g.height + y.low) * g.width, ((base + z.low) * g.height + y.high) * g.width,
             ((base + z.high) * g.height + y.low) * g.width, ((base + z.high) * g.height + y.high) * g.width},
        w{z.w_low * y.w_low, z.w_low * y.w_high, z.w_high * y.w_low, z.w_high * y.w_high} {}
};

// Calls fn(offsets[8], weights[8]) for every inside sample of bin (pd, ph, pw); offsets are
// channels-last element offsets of the 8 corners: z low/high × y low/high × x low/high.
template <typename T, typename Fn>
void for_each_sample(const RoiTables<T>& t, const Geometry& g, int64_t pd, int64_t ph, int64_t pw, Fn&& fn) {
  const int64_t gd = t.az.grid, gh = t.ay.grid, gw = t.ax.grid;
  const int64_t C = g.channels;
  const int64_t base = t.b * g.depth;
  int64_t off[8];
  T w[8];
  for (int64_t iz = 0; iz < gd; ++iz) {
    const Tap<T>& z = t.tz[pd * gd + iz];
    if (!z.inside) continue;
    for (int64_t iy = 0; iy < gh; ++iy) {
      const Tap<T>& y = t.ty[ph * gh + iy];
      if (!y.inside) continue;
      const CornerRows<T> zy(base, g, z, y);
      for (int64_t ix = 0; ix < gw; ++ix) {
        const Tap<T>& x = t.tx[pw * gw + ix];
        if (!x.inside) continue;
        // Corner order within a z plane matches torchvision's w1..w4: (yl,xl) (yl,xh) (yh,xl) (yh,xh).
        for (int r = 0; r < 4; ++r) {
          off[2 * r] = (zy.rows[r] + x.low) * C;
          off[2 * r + 1] = (zy.rows[r] + x.high) * C;
          w[2 * r] = zy.w[r] * x.w_low;
          w[2 * r + 1] = zy.w[r] * x.w_high;
        }
        fn(off, w);
      }
    }
  }
}

// Spreads the low 16 bits of v to every third bit (for a 3-D Morton code).
uint64_t spread3(uint64_t v) {
  v &= 0xffff;
  v = (v | (v << 32)) & 0x001f00000000ffffULL;
  v = (v | (v << 16)) & 0x001f0000ff0000ffULL;
  v = (v | (v << 8)) & 0x100f00f00f00f00fULL;
  v = (v | (v << 4)) & 0x10c30c30c30c30c3ULL;
  v = (v | (v << 2)) & 0x1249249249249249ULL;
  return v;
}

// Roi indices ordered along a Z-order curve of their centres (batch index first), so that the
// rois one thread pools in a row overlap and find their voxels in cache.
template <typename T>
std::vector<int64_t> spatial_order(const T* rois, int64_t num_rois, const T* scale) {
  std::vector<std::pair<uint64_t, int64_t>> keys(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    const T* r = rois + k * 7;
    uint64_t code = static_cast<uint64_t>(r[0]) << 48;
    for (int a = 0; a < 3; ++a) {
      const double c = 0.5 * (static_cast<double>(r[1 + a]) + static_cast<double>(r[4 + a])) * scale[a];
      const uint64_t q = static_cast<uint64_t>(std::clamp(c, 0.0, 65535.0));
      code |= spread3(q) << (2 - a);
    }
    keys[k] = {code, k};
  }
  std::sort(keys.begin(), keys.end());
  std::vector<int64_t> order(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) order[k] = keys[k].second;
  return order;
}

// Pools one roi into acc (bins, C). Samples are visited row by row (z sample, y sample, then all
// x samples of the row), so consecutive samples read neighbouring voxels; every bin still gets
// its samples in (z, y, x) order, as in for_each_sample, so results are the same bit for bit.
template <typename T>
void forward_roi(const RoiTables<T>& t, const Geometry& g, const T* in_cl, T* acc) {
  const int64_t gd = t.az.grid, gh = t.ay.grid, gw = t.ax.grid;
  const int64_t C = g.channels;
  const int64_t base = t.b * g.depth;
  for (int64_t pd = 0; pd < g.od; ++pd) {
    for (int64_t iz = 0; iz < gd; ++iz) {
      const Tap<T>& z = t.tz[pd * gd + iz];
      if (!z.inside) continue;
      for (int64_t ph = 0; ph < g.oh; ++ph) {
        for (int64_t iy = 0; iy < gh; ++iy) {
          const Tap<T>& y = t.ty[ph * gh + iy];
          if (!y.inside) continue;
          const CornerRows<T> zy(base, g, z, y);
          for (int64_t pw = 0; pw < g.ow; ++pw) {
            T* bin = acc + ((pd * g.oh + ph) * g.ow + pw) * C;
            for (int64_t ix = 0; ix < gw; ++ix) {
              const Tap<T>& x = t.tx[pw * gw + ix];
              if (!x.inside) continue;
              const T* p[8];
              T w[8];
              for (int r = 0; r < 4; ++r) {
                p[2 * r] = in_cl + (zy.rows[r] + x.low) * C;
                p[2 * r + 1] = in_cl + (zy.rows[r] + x.high) * C;
                w[2 * r] = zy.w[r] * x.w_low;
                w[2 * r + 1] = zy.w[r] * x.w_high;
              }
              accumulate8(bin, p, w, C);
            }
          }
        }
      }
    }
  }
}

template <typename T>
void forward_kernel(const T* in_cl, const T* rois, int64_t num_rois, const T* scale, const Geometry& g,
                    T* out) {
  const int64_t C = g.channels;
  const int64_t bins = g.od * g.oh * g.ow;
  const std::vector<int64_t> order = spatial_order(rois, num_rois, scale);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    RoiTables<T> t;
    std::vector<T> pooled(bins * C);  // (bins, C) of one roi
    for (int64_t i = begin; i < end; ++i) {
      const int64_t k = order[i];
      t.build(rois + k * 7, scale, g);
      const T count = static_cast<T>(t.count());
      std::fill(pooled.begin(), pooled.end(), static_cast<T>(0));
      forward_roi(t, g, in_cl, pooled.data());
      for (auto& v : pooled) v /= count;
      transpose(pooled.data(), out + k * C * bins, 1, bins, C, false);
    }
  });
}

template <typename T>
void backward_kernel(const T* grad, const T* rois, int64_t num_rois, const T* scale, const Geometry& g,
                     T* grad_in_cl) {
  const int64_t C = g.channels;
  const int64_t bins = g.od * g.oh * g.ow;
  // Blocks of at least 16 channels; each thread walks every roi for its channel block.
  at::parallel_for(0, C, 16, [&](int64_t c0, int64_t c1) {
    const int64_t n = c1 - c0;
    RoiTables<T> t;
    std::vector<T> scaled(bins * n);  // (bins, n): this roi's output gradient / sample count
    for (int64_t k = 0; k < num_rois; ++k) {
      t.build(rois + k * 7, scale, g);
      const T count = static_cast<T>(t.count());
      transpose(grad + (k * C + c0) * bins, scaled.data(), 1, n, bins, false);
      for (auto& v : scaled) v /= count;
      for (int64_t pd = 0; pd < g.od; ++pd) {
        for (int64_t ph = 0; ph < g.oh; ++ph) {
          for (int64_t pw = 0; pw < g.ow; ++pw) {
            const T* go = scaled.data() + ((pd * g.oh + ph) * g.ow + pw) * n;
            for_each_sample(t, g, pd, ph, pw, [&](const int64_t* off, const T* w) {
              for (int j = 0; j < 8; ++j) axpy(grad_in_cl + off[j] + c0, go, w[j], n);
            });
          }
        }
      }
    }
  });
}

Geometry make_geometry(c10::IntArrayRef shape, c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio,
                       bool aligned) {
  return {shape[0],          shape[1],          shape[2],          shape[3],          shape[4],
          output_size[0],    output_size[1],    output_size[2],    sampling_ratio[0], sampling_ratio[1],
          sampling_ratio[2], aligned};
}

bool is_reduced_float(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

void check_batch_indices(const at::Tensor& rois, int64_t batch) {
  AT_DISPATCH_FLOATING_TYPES(rois.scalar_type(), "ls_ops_check_rois", [&] {
    const scalar_t* r = rois.data_ptr<scalar_t>();
    for (int64_t k = 0; k < rois.size(0); ++k) {
      for (int j = 1; j < 7; ++j) {
        TORCH_CHECK(std::isfinite(static_cast<double>(r[k * 7 + j])), "ls_ops.roi_align3d: roi ", k,
                    " has a non-finite coordinate");
      }
      const double b = static_cast<double>(r[k * 7]);
      TORCH_CHECK(b >= 0 && b < static_cast<double>(batch) && b == std::floor(b), "ls_ops.roi_align3d: roi ", k,
                  " has batch index ", b, ", expected an integer in [0, ", batch, ")");
    }
  });
}

}  // namespace

void check_roi_align_args(const at::Tensor& input_or_grad, const at::Tensor& rois,
                          c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                          c10::IntArrayRef sampling_ratio, const char* fn) {
  TORCH_CHECK(input_or_grad.dim() == 5, fn, ": expected a 5-D tensor, got ", input_or_grad.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 7, fn, ": rois must be (K, 7), got ", rois.sizes());
  TORCH_CHECK(input_or_grad.scalar_type() == rois.scalar_type(), fn, ": input and rois dtypes differ (",
              input_or_grad.scalar_type(), " vs ", rois.scalar_type(), ")");
  TORCH_CHECK(input_or_grad.device() == rois.device(), fn, ": input and rois are on different devices");
  TORCH_CHECK(spatial_scale.size() == 3 && output_size.size() == 3 && sampling_ratio.size() == 3, fn,
              ": spatial_scale, output_size and sampling_ratio need 3 values each");
  for (int a = 0; a < 3; ++a) {
    TORCH_CHECK(output_size[a] > 0, fn, ": output_size must be positive, got ", output_size);
    TORCH_CHECK(spatial_scale[a] > 0 && std::isfinite(spatial_scale[a]), fn,
                ": spatial_scale must be finite and positive");
  }
}

at::Tensor roi_align3d_cpu(const at::Tensor& input, const at::Tensor& rois, c10::ArrayRef<double> spatial_scale,
                           c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned) {
  check_roi_align_args(input, rois, spatial_scale, output_size, sampling_ratio, "ls_ops.roi_align3d");
  if (is_reduced_float(input.scalar_type())) {
    return roi_align3d_cpu(input.to(at::kFloat), rois.to(at::kFloat), spatial_scale, output_size, sampling_ratio,
                           aligned)
        .to(input.scalar_type());
  }
  const auto rois_c = rois.contiguous();
  check_batch_indices(rois_c, input.size(0));
  const Geometry g = make_geometry(input.sizes(), output_size, sampling_ratio, aligned);
  const int64_t K = rois.size(0);
  if (K == 0 || g.channels == 0 || input.numel() == 0) {
    return at::zeros({K, g.channels, g.od, g.oh, g.ow}, input.options());
  }
  auto out = at::empty({K, g.channels, g.od, g.oh, g.ow}, input.options());  // every element is written
  // (B, C, D, H, W) -> (B, D, H, W, C); free when the input is already channels_last_3d.
  const auto in_cl = input.is_contiguous(at::MemoryFormat::ChannelsLast3d)
                         ? input.permute({0, 2, 3, 4, 1})
                         : to_channels_last(input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "ls_ops_roi_align3d_forward", [&] {
    const scalar_t scale[3] = {static_cast<scalar_t>(spatial_scale[0]), static_cast<scalar_t>(spatial_scale[1]),
                               static_cast<scalar_t>(spatial_scale[2])};
    forward_kernel<scalar_t>(in_cl.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), K, scale, g,
                             out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor roi_align3d_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                    c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                                    c10::IntArrayRef sampling_ratio, bool aligned, int64_t batch_size,
                                    int64_t channels, int64_t depth, int64_t height, int64_t width) {
  check_roi_align_args(grad, rois, spatial_scale, output_size, sampling_ratio, "ls_ops.roi_align3d_backward");
  TORCH_CHECK(grad.size(0) == rois.size(0) && grad.size(1) == channels && grad.size(2) == output_size[0] &&
                  grad.size(3) == output_size[1] && grad.size(4) == output_size[2],
              "ls_ops.roi_align3d_backward: grad has shape ", grad.sizes(), ", expected (", rois.size(0), ", ",
              channels, ", ", output_size, ")");
  if (is_reduced_float(grad.scalar_type())) {
    return roi_align3d_backward_cpu(grad.to(at::kFloat), rois.to(at::kFloat), spatial_scale, output_size,
                                    sampling_ratio, aligned, batch_size, channels, depth, height, width)
        .to(grad.scalar_type());
  }
  const auto rois_c = rois.contiguous();
  check_batch_indices(rois_c, batch_size);
  const int64_t shape[5] = {batch_size, channels, depth, height, width};
  const Geometry g = make_geometry(shape, output_size, sampling_ratio, aligned);
  auto grad_in_cl = at::zeros({batch_size, depth, height, width, channels}, grad.options());
  if (grad.numel() == 0 || grad_in_cl.numel() == 0) {
    return at::zeros({batch_size, channels, depth, height, width}, grad.options());
  }
  const auto grad_c = grad.contiguous();
  auto grad_input = at::empty({batch_size, channels, depth, height, width}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "ls_ops_roi_align3d_backward", [&] {
    const scalar_t scale[3] = {static_cast<scalar_t>(spatial_scale[0]), static_cast<scalar_t>(spatial_scale[1]),
                               static_cast<scalar_t>(spatial_scale[2])};
    backward_kernel<scalar_t>(grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), rois.size(0), scale, g,
                              grad_in_cl.data_ptr<scalar_t>());
    // (B, D, H, W, C) -> (B, C, D, H, W)
    transpose(grad_in_cl.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), batch_size,
              depth * height * width, channels, true);
  });
  return grad_input;
}

}  // namespace ls_ops
