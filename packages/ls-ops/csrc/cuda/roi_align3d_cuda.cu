// RoIAlign3D forward and backward on CUDA: host wrappers of the kernels in
// roi_align3d_kernels.cuh. Half / bfloat16 are computed in float32.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "roi_align3d_kernels.cuh"

namespace ls_ops {
namespace {

using kernels::Dims;
using kernels::kRoiAlignThreads;

Dims make_dims(c10::IntArrayRef shape, c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned) {
  return {shape[0],       shape[1],       shape[2],          shape[3],          shape[4],          output_size[0],
          output_size[1], output_size[2], sampling_ratio[0], sampling_ratio[1], sampling_ratio[2], aligned};
}

int64_t num_blocks(int64_t total) {
  const int64_t blocks = (total + kRoiAlignThreads - 1) / kRoiAlignThreads;
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
    kernels::roi_align3d_forward_kernel<scalar_t><<<num_blocks(total), kRoiAlignThreads, 0, stream>>>(
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
    kernels::roi_align3d_backward_kernel<scalar_t><<<num_blocks(total), kRoiAlignThreads, 0, stream>>>(
        total, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(), static_cast<scalar_t>(spatial_scale[0]),
        static_cast<scalar_t>(spatial_scale[1]), static_cast<scalar_t>(spatial_scale[2]), g,
        grad_input.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

}  // namespace ls_ops
