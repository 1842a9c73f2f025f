// 3-D NMS on CUDA with torchvision's bitmask approach: boxes sorted by score, one 64-bit mask
// word per (box, block of 64 boxes) marking the later boxes it overlaps above the threshold,
// computed in parallel; the greedy sweep over the mask words then runs on the host.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "../geometry.h"
#include "../ops.h"

namespace ls_ops {
namespace {

constexpr int kBlock = 64;  // bits per mask word = boxes per block

template <typename T>
__global__ void nms_mask_kernel(int64_t n, double threshold, const T* __restrict__ boxes,
                                const T* __restrict__ volumes, unsigned long long* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t row_size = min(n - row_block * kBlock, static_cast<int64_t>(kBlock));
  const int64_t col_size = min(n - col_block * kBlock, static_cast<int64_t>(kBlock));
  __shared__ T block_boxes[kBlock * 6];
  __shared__ T block_volumes[kBlock];
  if (threadIdx.x < col_size) {
    const int64_t j = col_block * kBlock + threadIdx.x;
    for (int a = 0; a < 6; ++a) block_boxes[threadIdx.x * 6 + a] = boxes[j * 6 + a];
    block_volumes[threadIdx.x] = volumes[j];
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int64_t i = row_block * kBlock + threadIdx.x;
    const T* box = boxes + i * 6;
    unsigned long long bits = 0;
    const int64_t start = row_block == col_block ? threadIdx.x + 1 : 0;
    for (int64_t j = start; j < col_size; ++j) {
      if (static_cast<double>(box_iou<T>(box, volumes[i], block_boxes + j * 6, block_volumes[j])) > threshold) {
        bits |= 1ULL << j;
      }
    }
    const int64_t col_blocks = (n + kBlock - 1) / kBlock;
    mask[i * col_blocks + col_block] = bits;
  }
}

}  // namespace

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
  TORCH_CHECK(n <= static_cast<int64_t>(kBlock) * 65535, "ls_ops.nms3d: at most ", kBlock * 65535,
              " boxes on CUDA, got ", n);
  c10::cuda::CUDAGuard guard(boxes.device());
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const auto sorted = boxes.index_select(0, order).contiguous();
  const auto extent = sorted.narrow(1, 3, 3).sub(sorted.narrow(1, 0, 3));
  const auto volumes = extent.select(1, 0).mul(extent.select(1, 1)).mul(extent.select(1, 2)).contiguous();
  const int64_t col_blocks = (n + kBlock - 1) / kBlock;
  auto mask = at::empty({n * col_blocks}, boxes.options().dtype(at::kLong));
  const dim3 blocks(col_blocks, col_blocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "ls_ops_nms3d_cuda", [&] {
    nms_mask_kernel<scalar_t><<<blocks, kBlock, 0, stream>>>(
        n, iou_threshold, sorted.data_ptr<scalar_t>(), volumes.data_ptr<scalar_t>(),
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const auto mask_cpu = mask.cpu();
  const auto* words = reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(col_blocks, 0);
  std::vector<int64_t> keep_sorted;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / kBlock, bit = i % kBlock;
    if (removed[block] & (1ULL << bit)) continue;
    keep_sorted.push_back(i);
    const unsigned long long* row = words + i * col_blocks;
    for (int64_t j = block; j < col_blocks; ++j) removed[j] |= row[j];
  }
  auto keep = at::empty({static_cast<int64_t>(keep_sorted.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(keep_sorted.begin(), keep_sorted.end(), keep.data_ptr<int64_t>());
  return order.index_select(0, keep.to(order.device()));
}

}  // namespace ls_ops
