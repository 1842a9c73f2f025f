// RoIAlign3D forward and backward on CUDA: one thread per output element (grid-stride loop),
// 64-bit indexing, and atomicAdd into the input gradient. Half / bfloat16 are computed in
// float32 by the host wrappers. A roi whose batch index is outside [0, B) (the Python wrapper
// rejects those in eager mode) yields zeros instead of reading out of bounds.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include "../geometry.h"
#include "../ops.h"

namespace ls_ops {
namespace {

constexpr int kThreads = 256;

struct Dims {
  int64_t batch, channels, depth, height, width, od, oh, ow, sd, sh, sw;
  bool aligned;
};

// Calls fn(offset_in_channel_plane, weight) for the 8 corners of every inside sample of a bin.
template <typename T, typename Fn>
__device__ __forceinline__ int64_t visit_bin(const T* roi, const T* scale, const Dims& g, int64_t pd, int64_t ph,
                                             int64_t pw, Fn fn) {
  const RoiAxis<T> az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
  const RoiAxis<T> ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
  const RoiAxis<T> ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
  for (int64_t iz = 0; iz < az.grid; ++iz) {
    const Tap<T> z = make_tap<T>(sample_coord<T>(az, pd, iz), g.depth);
    if (!z.inside) continue;
    for (int64_t iy = 0; iy < ay.grid; ++iy) {
      const Tap<T> y = make_tap<T>(sample_coord<T>(ay, ph, iy), g.height);
      if (!y.inside) continue;
      for (int64_t ix = 0; ix < ax.grid; ++ix) {
        const Tap<T> x = make_tap<T>(sample_coord<T>(ax, pw, ix), g.width);
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

template <typename T>
__global__ void forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois, T scale_d,
                               T scale_h, T scale_w, Dims g, T* __restrict__ out) {
  const T scale[3] = {scale_d, scale_h, scale_w};
  const int64_t plane = g.depth * g.height * g.width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % g.ow;
    const int64_t ph = (index / g.ow) % g.oh;
    const int64_t pd = (index / (g.ow * g.oh)) % g.od;
    const int64_t c = (index / (g.ow * g.oh * g.od)) % g.channels;
    const int64_t k = index / (g.ow * g.oh * g.od * g.channels);
    const T* roi = rois + k * 7;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (b < 0 || b >= g.batch) {
      out[index] = static_cast<T>(0);
      continue;
    }
    const T* in = input + (b * g.channels + c) * plane;
    T sum = 0;
    const int64_t count = visit_bin<T>(roi, scale, g, pd, ph, pw, [&](int64_t off, T w) { sum += w * in[off]; });
    out[index] = sum / static_cast<T>(count);
  }
}

template <typename T>
__global__ void backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ rois, T scale_d,
                                T scale_h, T scale_w, Dims g, T* __restrict__ grad_input) {
  const T scale[3] = {scale_d, scale_h, scale_w};
  const int64_t plane = g.depth * g.height * g.width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = index % g.ow;
    const int64_t ph = (index / g.ow) % g.oh;
    const int64_t pd = (index / (g.ow * g.oh)) % g.od;
    const int64_t c = (index / (g.ow * g.oh * g.od)) % g.channels;
    const int64_t k = index / (g.ow * g.oh * g.od * g.channels);
    const T* roi = rois + k * 7;
    const int64_t b = static_cast<int64_t>(roi[0]);
    if (b < 0 || b >= g.batch) continue;
    T* gin = grad_input + (b * g.channels + c) * plane;
    const T g_out = grad[index];
    // The sample count is known only after the geometry: scale the weights by 1 / count inside.
    const RoiAxis<T> az = roi_axis<T>(roi[1], roi[4], scale[0], g.od, g.sd, g.aligned);
    const RoiAxis<T> ay = roi_axis<T>(roi[2], roi[5], scale[1], g.oh, g.sh, g.aligned);
    const RoiAxis<T> ax = roi_axis<T>(roi[3], roi[6], scale[2], g.ow, g.sw, g.aligned);
    const T scaled = g_out / static_cast<T>(sample_count(az.grid, ay.grid, ax.grid));
    visit_bin<T>(roi, scale, g, pd, ph, pw, [&](int64_t off, T w) {
      if (w != static_cast<T>(0)) atomicAdd(gin + off, scaled * w);
    });
  }
}

Dims make_dims(c10::IntArrayRef shape, c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned) {
  return {shape[0],       shape[1],       shape[2],          shape[3],          shape[4],          output_size[0],
          output_size[1], output_size[2], sampling_ratio[0], sampling_ratio[1], sampling_ratio[2], aligned};
}

int64_t num_blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return blocks < 65536 ? blocks : 65536;  // grid-stride loop covers the rest
}

bool is_reduced_float(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

}  // namespace

at::Tensor roi_align3d_cuda(const at::Tensor& input, const at::Tensor& rois, c10::ArrayRef<double> spatial_scale,
                            c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned) {
  check_roi_align_args(input, rois, spatial_scale, output_size, sampling_ratio, "ls_ops.roi_align3d");
  if (is_reduced_float(input.scalar_type())) {
    return roi_align3d_cuda(input.to(at::kFloat), rois.to(at::kFloat), spatial_scale, output_size, sampling_ratio,
                            aligned)
        .to(input.scalar_type());
  }
  c10::cuda::CUDAGuard guard(input.device());
  const Dims g = make_dims(input.sizes(), output_size, sampling_ratio, aligned);
  auto out = at::zeros({rois.size(0), g.channels, g.od, g.oh, g.ow}, input.options());
  const int64_t total = out.numel();
  if (total == 0 || input.numel() == 0) return out;
  const auto in_c = input.contiguous();
  const auto rois_c = rois.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "ls_ops_roi_align3d_forward_cuda", [&] {
    forward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        total, in_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), static_cast<scalar_t>(spatial_scale[0]),
        static_cast<scalar_t>(spatial_scale[1]), static_cast<scalar_t>(spatial_scale[2]), g,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor roi_align3d_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                     c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                                     c10::IntArrayRef sampling_ratio, bool aligned, int64_t batch_size,
                                     int64_t channels, int64_t depth, int64_t height, int64_t width) {
  check_roi_align_args(grad, rois, spatial_scale, output_size, sampling_ratio, "ls_ops.roi_align3d_backward");
  if (is_reduced_float(grad.scalar_type())) {
    return roi_align3d_backward_cuda(grad.to(at::kFloat), rois.to(at::kFloat), spatial_scale, output_size,
                                     sampling_ratio, aligned, batch_size, channels, depth, height, width)
        .to(grad.scalar_type());
  }
  c10::cuda::CUDAGuard guard(grad.device());
  const int64_t shape[5] = {batch_size, channels, depth, height, width};
  const Dims g = make_dims(shape, output_size, sampling_ratio, aligned);
  auto grad_input = at::zeros({batch_size, channels, depth, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input;
  const auto grad_c = grad.contiguous();
  const auto rois_c = rois.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "ls_ops_roi_align3d_backward_cuda", [&] {
    backward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        total, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), static_cast<scalar_t>(spatial_scale[0]),
        static_cast<scalar_t>(spatial_scale[1]), static_cast<scalar_t>(spatial_scale[2]), g,
        grad_input.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

}  // namespace ls_ops
