// RoIAlign3D forward and backward on the CPU, computed separably.
//
// Each roi is pooled as three sparse linear maps, one per axis (axis_map.h): along x, every input
// row of the roi's support is gathered into `ow` bins; those rows are scattered into an (oh, ow)
// plane along y; the planes into the (od, oh, ow) output along z. A voxel is read once per roi
// instead of once per trilinear sample that touches it (for 7^3 bins of 2^3 samples, about 8
// times fewer reads). All arithmetic works on vectors of channels: the input is read in a
// channels-last copy (B, D, H, W, C). The forward runs in parallel over rois, taken along a
// Z-order curve of their centres for cache reuse. The backward applies the transposed maps (z,
// then y, then x) in parallel over z slabs of the channels-last input gradient: every thread
// owns its slabs, and every voxel takes its rois' contributions in the same order whatever the
// slabs, so results do not depend on the thread count. All offsets are 64-bit.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../geometry.h"
#include "../ops.h"
#include "axis_map.h"
#include "channel_loops.h"
#include "layout.h"

namespace ls_ops {
namespace {

using loops::weighted_sum;

struct Geometry {
  int64_t batch, channels, depth, height, width;
  int64_t od, oh, ow;
  int64_t sd, sh, sw;
  bool aligned;
};

// The three axis maps of one roi; the z weights include the 1 / count of the bins' average.
template <typename T>
struct RoiMaps {
  int64_t b = 0;
  AxisMap<T> z, y, x;

  void build(const T* roi, const T* scale, const Geometry& g) {
    b = static_cast<int64_t>(roi[0]);
    const RoiAxis<T> az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
    const RoiAxis<T> ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
    const RoiAxis<T> ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
    z.build(az, g.od, g.depth);
    y.build(ay, g.oh, g.height);
    x.build(ax, g.ow, g.width);
    z.scale(static_cast<T>(1) / static_cast<T>(sample_count(az.grid, ay.grid, ax.grid)));
  }

  // No sample inside the volume: the output is zero and nothing flows back.
  bool empty() const { return z.empty() || y.empty() || x.empty(); }
};

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

// Per-thread buffers for one roi.
template <typename T>
struct Scratch {
  std::vector<T> row, plane, pooled;  // (ow, C), (oh, ow, C), (od, oh, ow, C)
  std::vector<char> plane_set, pooled_set;  // which rows of the plane, planes of pooled hold values
  explicit Scratch(const Geometry& g)
      : row(g.ow * g.channels),
        plane(g.oh * g.ow * g.channels),
        pooled(g.od * g.oh * g.ow * g.channels),
        plane_set(g.oh),
        pooled_set(g.od) {}
};

// dst[o] (+)= w * src for the entries (o, w) of one voxel, dst[o] holding `size` values: the first
// write to a part assigns it (set[o] records which parts hold values), later ones add.
template <typename T>
void scatter(T* dst, int64_t size, const T* src, std::span<const AxisEntry<T>> entries, std::vector<char>& set) {
  for (const auto& e : entries) {
    weighted_sum(dst + e.index * size, src, 0, &e, 1, size, set[e.index] != 0);
    set[e.index] = 1;
  }
}

// Zeroes the parts of dst (of `size` values each) that no scatter wrote.
template <typename T>
void zero_unset(T* dst, int64_t size, const std::vector<char>& set) {
  for (size_t o = 0; o < set.size(); ++o) {
    if (!set[o]) std::fill(dst + o * size, dst + (o + 1) * size, static_cast<T>(0));
  }
}

// Pools all channels of one roi into s.pooled (bins, C).
template <typename T>
void forward_roi(const RoiMaps<T>& m, const Geometry& g, const T* in_cl, Scratch<T>& s) {
  const int64_t C = g.channels;
  const int64_t row_size = g.ow * C, plane_size = g.oh * row_size;
  std::fill(s.pooled_set.begin(), s.pooled_set.end(), 0);
  if (!m.empty()) {
    for (int64_t zv = m.z.lo(); zv <= m.z.hi(); ++zv) {
      const auto z_bins = m.z.voxel(zv);
      if (z_bins.empty()) continue;
      std::fill(s.plane_set.begin(), s.plane_set.end(), 0);
      for (int64_t yv = m.y.lo(); yv <= m.y.hi(); ++yv) {
        const auto y_bins = m.y.voxel(yv);
        if (y_bins.empty()) continue;
        const T* line = in_cl + ((m.b * g.depth + zv) * g.height + yv) * g.width * C;
        for (int64_t ox = 0; ox < g.ow; ++ox) weighted_sum(s.row.data() + ox * C, line, C, m.x.bin(ox), C, false);
        scatter(s.plane.data(), row_size, s.row.data(), y_bins, s.plane_set);
      }
      zero_unset(s.plane.data(), row_size, s.plane_set);
      scatter(s.pooled.data(), plane_size, s.plane.data(), z_bins, s.pooled_set);
    }
  }
  zero_unset(s.pooled.data(), plane_size, s.pooled_set);
}

template <typename T>
void forward_kernel(const T* in_cl, const T* rois, int64_t num_rois, const T* scale, const Geometry& g,
                    T* out) {
  const int64_t C = g.channels;
  const int64_t bins = g.od * g.oh * g.ow;
  const std::vector<int64_t> order = spatial_order(rois, num_rois, scale);
  // Rois differ in size, so threads take the next few rois along the curve as they finish (each
  // roi is pooled by one thread, so the result does not depend on which).
  constexpr int64_t kChunk = 4;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), (num_rois + kChunk - 1) / kChunk);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    RoiMaps<T> m;
    Scratch<T> s(g);
    for (int64_t i0 = next.fetch_add(kChunk); i0 < num_rois; i0 = next.fetch_add(kChunk)) {
      for (int64_t i = i0; i < std::min(i0 + kChunk, num_rois); ++i) {
        const int64_t k = order[i];
        m.build(rois + k * 7, scale, g);
        forward_roi(m, g, in_cl, s);
        transpose(s.pooled.data(), out + k * C * bins, 1, bins, C, false);
      }
    }
  });
}

// Adds one roi's output gradient into the channels-last input gradient, for the input z planes in
// [z0, z1) only: the axis maps transposed, z, then y, then x. The output planes (oz) of the
// gradient are transposed into s.pooled (bins, C) as the z planes first need them.
template <typename T>
void backward_roi(const RoiMaps<T>& m, const Geometry& g, const T* grad_k, int64_t z0, int64_t z1, Scratch<T>& s,
                  T* grad_in_cl) {
  const int64_t C = g.channels, bins = g.od * g.oh * g.ow;
  const int64_t row_size = g.ow * C, plane_bins = g.oh * g.ow, plane_size = plane_bins * C;
  std::fill(s.pooled_set.begin(), s.pooled_set.end(), 0);
  for (int64_t zv = std::max(m.z.lo(), z0); zv <= std::min(m.z.hi(), z1 - 1); ++zv) {
    const auto z_bins = m.z.voxel(zv);
    if (z_bins.empty()) continue;
    for (const auto& e : z_bins) {
      if (s.pooled_set[e.index]) continue;
      // grad_k is (C, od * oh * ow): plane oz is a (C, oh * ow) block of row stride `bins`.
      transpose_region(grad_k + e.index * plane_bins, bins, s.pooled.data() + e.index * plane_size, C, 0, C, 0,
                       plane_bins);
      s.pooled_set[e.index] = 1;
    }
    weighted_sum(s.plane.data(), s.pooled.data(), plane_size, z_bins, plane_size, false);
    for (int64_t yv = m.y.lo(); yv <= m.y.hi(); ++yv) {
      const auto y_bins = m.y.voxel(yv);
      if (y_bins.empty()) continue;
      weighted_sum(s.row.data(), s.plane.data(), row_size, y_bins, row_size, false);
      T* line = grad_in_cl + ((m.b * g.depth + zv) * g.height + yv) * g.width * C;
      for (int64_t xv = m.x.lo(); xv <= m.x.hi(); ++xv) {
        weighted_sum(line + xv * C, s.row.data(), C, m.x.voxel(xv), C, true);
      }
    }
  }
}

template <typename T>
void backward_kernel(const T* grad, const T* rois, int64_t num_rois, const T* scale, const Geometry& g,
                     T* grad_in_cl) {
  const int64_t C = g.channels, bins = g.od * g.oh * g.ow;
  const std::vector<int64_t> order = spatial_order(rois, num_rois, scale);
  // The maps of every roi, built once (in parallel) and read by every slab.
  std::vector<RoiMaps<T>> maps(num_rois);
  at::parallel_for(0, num_rois, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) maps[k].build(rois + k * 7, scale, g);
  });
  // Work items: slabs of z planes of one batch element, about 4 per thread. Each thread owns the
  // gradient of its slabs, and every voxel takes its rois' contributions in the same (spatial)
  // order whatever the slabs, so results do not depend on the thread count.
  const int64_t slab = std::max<int64_t>(1, g.depth / (4 * at::get_num_threads()));
  const int64_t slabs = (g.depth + slab - 1) / slab;
  at::parallel_for(0, g.batch * slabs, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> s(g);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / slabs, z0 = (i % slabs) * slab, z1 = std::min(z0 + slab, g.depth);
      for (const int64_t k : order) {
        const RoiMaps<T>& m = maps[k];
        if (m.b != b || m.empty() || m.z.hi() < z0 || m.z.lo() >= z1) continue;
        backward_roi(m, g, grad + k * C * bins, z0, z1, s, grad_in_cl);
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
  auto out = empty_for_filling({K, g.channels, g.od, g.oh, g.ow}, input.options());  // every element is written
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
  if (grad.numel() == 0 || batch_size * channels * depth * height * width == 0) {
    return at::zeros({batch_size, channels, depth, height, width}, grad.options());
  }
  auto grad_in_cl = zeros_for_filling({batch_size, depth, height, width, channels}, grad.options());
  const auto grad_c = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "ls_ops_roi_align3d_backward", [&] {
    const scalar_t scale[3] = {static_cast<scalar_t>(spatial_scale[0]), static_cast<scalar_t>(spatial_scale[1]),
                               static_cast<scalar_t>(spatial_scale[2])};
    backward_kernel<scalar_t>(grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), rois.size(0), scale, g,
                              grad_in_cl.data_ptr<scalar_t>());
  });
  return from_channels_last(grad_in_cl);
}

}  // namespace ls_ops
