// 3-D NMS on CUDA: host wrapper of the bitmask kernel and sweep in nms3d_kernels.cuh.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "../ops.h"
#include "nms3d_kernels.cuh"

namespace ls_ops {

at::Tensor nms3d_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 6, "ls_ops.nms3d: boxes must be (N, 6), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "ls_ops.nms3d: scores must be (",
              boxes.size(0), ",), got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "ls_ops.nms3d: boxes and scores dtypes differ");
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  if (boxes.scalar_type() == at::kHalf || boxes.scalar_type() == at::kBFloat16) {
    return nms3d_cuda(boxes.to(at::kFloat), scores.to(at::kFloat), iou_threshold);
  }
  constexpr int64_t max_boxes = static_cast<int64_t>(kernels::kNmsBlock) * 65535;  // gridDim.y <= 65535
  TORCH_CHECK(n <= max_boxes, "ls_ops.nms3d: at most ", max_boxes, " boxes on CUDA, got ", n);
  c10::cuda::CUDAGuard guard(boxes.device());
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).contiguous();
  const auto extent = sorted.narrow(1, 3, 3).sub(sorted.narrow(1, 0, 3));
  const auto volumes = extent.select(1, 0).mul(extent.select(1, 1)).mul(extent.select(1, 2)).contiguous();
  const int64_t col_blocks = kernels::nms3d_col_blocks(n);
  auto mask = at::empty({n * col_blocks}, boxes.options().dtype(at::kLong));
  const dim3 blocks(col_blocks, col_blocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "ls_ops_nms3d_cuda", [&] {
    kernels::nms3d_mask_kernel<scalar_t><<<blocks, kernels::kNmsBlock, 0, stream>>>(
        n, iou_threshold, sorted.data_ptr<scalar_t>(), volumes.data_ptr<scalar_t>(),
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const auto mask_cpu = mask.cpu();
  const std::vector<int64_t> keep_sorted =
      kernels::nms3d_sweep(reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>()), n);
  auto keep = at::empty({static_cast<int64_t>(keep_sorted.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(keep_sorted.begin(), keep_sorted.end(), keep.data_ptr<int64_t>());
  return order.index_select(0, keep.to(order.device()));
}

}  // namespace ls_ops
