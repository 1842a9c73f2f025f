// RoIAlign3D forward and backward kernels: one thread per output element (grid-stride loop),
// 64-bit indexing, atomicAdd into the input gradient. Device code only (no ATen), so that
// tests/cuda_emulation can compile these same kernels as host C++ and check them against the
// reference on a machine without a GPU. Host wrappers: roi_align3d_cuda.cu.
#pragma once

#include <cstdint>

#include "../geometry.h"

namespace ls_ops {
namespace kernels {

constexpr int kRoiAlignThreads = 256;

// Shapes of one call: the input (or input gradient), the output bins, the sampling grid.
struct Dims {
  int64_t batch, channels, depth, height, width, od, oh, ow, sd, sh, sw;
  bool aligned;
};

// The (roi, channel, bin) of an output element of the (K, C, od, oh, ow) output.
struct Element {
  int64_t k, c, pd, ph, pw;
};

__device__ __forceinline__ Element element_at(int64_t index, const Dims& g) {
  Element e;
  e.pw = index % g.ow;
  e.ph = (index / g.ow) % g.oh;
  e.pd = (index / (g.ow * g.oh)) % g.od;
  e.c = (index / (g.ow * g.oh * g.od)) % g.channels;
  e.k = index / (g.ow * g.oh * g.od * g.channels);
  return e;
}

// Calls fn(offset_in_channel_volume, weight) for the 8 corners of every inside sample of a bin;
// returns the sample count the bin is averaged over.
template <typename T, typename Fn>
__device__ __forceinline__ int64_t visit_bin(const T* roi, const T* scale, const Dims& g, const Element& e, Fn fn) {
  const RoiAxis<T> az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
  const RoiAxis<T> ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
  const RoiAxis<T> ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
  for (int64_t iz = 0; iz < az.grid; ++iz) {
    const Tap<T> z = make_tap<T>(sample_coord<T>(az, e.pd, iz), g.depth);
    if (!z.inside) continue;
    for (int64_t iy = 0; iy < ay.grid; ++iy) {
      const Tap<T> y = make_tap<T>(sample_coord<T>(ay, e.ph, iy), g.height);
      if (!y.inside) continue;
      for (int64_t ix = 0; ix < ax.grid; ++ix) {
        const Tap<T> x = make_tap<T>(sample_coord<T>(ax, e.pw, ix), g.width);
        if (!x.inside) continue;
        const int64_t zl = z.low * g.height, zh = z.high * g.height;
        fn(((zl + y.low) * g.width) + x.low, z.w_low * y.w_low * x.w_low);
        fn(((zl + y.low) * g.width) + x.high, z.w_low * y.w_low * x.w_high);
        fn(((zl + y.high) * g.width) + x.low, z.w_low * y.w_high * x.w_low);
        fn(((zl + y.high) * g.width) + x.high, z.w_low * y.w_high * x.w_high);
        fn(((zh + y.low) * g.width) + x.low, z.w_high * y.w_low * x.w_low);
        fn(((zh + y.low) * g.width) + x.high, z.w_high * y.w_low * x.w_high);
        fn(((zh + y.high) * g.width) + x.low, z.w_high * y.w_high * x.w_low);
        fn(((zh + y.high) * g.width) + x.high, z.w_high * y.w_high * x.w_high);
      }
    }
  }
  return sample_count(az.grid, ay.grid, ax.grid);
}

// Calls fn(index, element, roi, batch) for each output element of this thread (grid-stride
// loop over `total` elements); batch is the roi's batch index, or -1 when it is outside [0, B)
// (the Python wrapper rejects those in eager mode; the kernels then skip the roi instead of
// reading or writing out of bounds).
template <typename T, typename Fn>
__device__ __forceinline__ void for_each_element(int64_t total, const T* rois, const Dims& g, Fn fn) {
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const Element e = element_at(index, g);
    const T* roi = rois + e.k * 7;
    const int64_t b = static_cast<int64_t>(roi[0]);
    fn(index, e, roi, b >= 0 && b < g.batch ? b : int64_t{-1});
  }
}

// out (K, C, od, oh, ow) from input (B, C, D, H, W) and rois (K, 7); total = out.numel(). A roi
// outside the batch yields zeros.
template <typename T>
__global__ void roi_align3d_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                           T scale_d, T scale_h, T scale_w, Dims g, T* __restrict__ out) {
  const T scale[3] = {scale_d, scale_h, scale_w};
  const int64_t volume = g.depth * g.height * g.width;
  for_each_element(total, rois, g, [&](int64_t index, const Element& e, const T* roi, int64_t b) {
    if (b < 0) {
      out[index] = static_cast<T>(0);
      return;
    }
    const T* in = input + (b * g.channels + e.c) * volume;
    T sum = 0;
    const int64_t count = visit_bin<T>(roi, scale, g, e, [&](int64_t off, T w) { sum += w * in[off]; });
    out[index] = sum / static_cast<T>(count);
  });
}

// grad_input (B, C, D, H, W), zero-filled by the caller, accumulates the output gradient grad
// (K, C, od, oh, ow); total = grad.numel(). A roi outside the batch contributes nothing.
template <typename T>
__global__ void roi_align3d_backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ rois,
                                            T scale_d, T scale_h, T scale_w, Dims g, T* __restrict__ grad_input) {
  const T scale[3] = {scale_d, scale_h, scale_w};
  const int64_t volume = g.depth * g.height * g.width;
  for_each_element(total, rois, g, [&](int64_t index, const Element& e, const T* roi, int64_t b) {
    if (b < 0) return;
    T* gin = grad_input + (b * g.channels + e.c) * volume;
    // The sample count is known only after the geometry: scale the weights by 1 / count inside.
    const RoiAxis<T> az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
    const RoiAxis<T> ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
    const RoiAxis<T> ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
    const T scaled = grad[index] / static_cast<T>(sample_count(az.grid, ay.grid, ax.grid));
    visit_bin<T>(roi, scale, g, e, [&](int64_t off, T w) {
      if (w != static_cast<T>(0)) atomicAdd(gin + off, scaled * w);
    });
  });
}

}  // namespace kernels
}  // namespace ls_ops
