// Kernel declarations of the ls_ops operator library (schemas: ops.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace ls_ops {

at::Tensor roi_align3d_cpu(const at::Tensor& input, const at::Tensor& rois, c10::ArrayRef<double> spatial_scale,
                           c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned);

at::Tensor roi_align3d_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                    c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                                    c10::IntArrayRef sampling_ratio, bool aligned, int64_t batch_size,
                                    int64_t channels, int64_t depth, int64_t height, int64_t width);

at::Tensor nms3d_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

#ifdef LS_OPS_WITH_CUDA
at::Tensor roi_align3d_cuda(const at::Tensor& input, const at::Tensor& rois, c10::ArrayRef<double> spatial_scale,
                            c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned);

at::Tensor roi_align3d_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                     c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                                     c10::IntArrayRef sampling_ratio, bool aligned, int64_t batch_size,
                                     int64_t channels, int64_t depth, int64_t height, int64_t width);

at::Tensor nms3d_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);
#endif

// Shared argument checks of the kernels (the Python wrappers check first, with friendlier messages).
void check_roi_align_args(const at::Tensor& input_or_grad, const at::Tensor& rois,
                          c10::ArrayRef<double> spatial_scale, c10::IntArrayRef output_size,
                          c10::IntArrayRef sampling_ratio, const char* fn);

}  // namespace ls_ops
