// 3-D NMS with torchvision's bitmask approach: boxes sorted by score, one 64-bit mask word per
// (box, block of 64 boxes) marking the later boxes of that block it overlaps above the
// threshold, computed in parallel (nms3d_mask_kernel); then the greedy sweep over the mask words
// (nms3d_sweep, host code). No ATen here, so that tests/cuda_emulation can compile these same
// functions as host C++ and check them against the reference without a GPU. Host wrapper:
// nms3d_cuda.cu.
#pragma once

#include <cstdint>
#include <vector>

#include "../geometry.h"

namespace ls_ops {
namespace kernels {

constexpr int kNmsBlock = 64;  // bits per mask word = boxes per block = threads per block

LS_HD int64_t nms3d_col_blocks(int64_t n) { return (n + kNmsBlock - 1) / kNmsBlock; }

// Grid (col_blocks, col_blocks), kNmsBlock threads. boxes (n, 6) and volumes (n) sorted by
// decreasing score. Row i, word c: bit j set when box i overlaps box c * 64 + j > i above the
// threshold. Words of blocks left of the diagonal are never written (and never read).
template <typename T>
__global__ void nms3d_mask_kernel(int64_t n, double threshold, const T* __restrict__ boxes,
                                  const T* __restrict__ volumes, unsigned long long* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t row_size = min(n - row_block * kNmsBlock, static_cast<int64_t>(kNmsBlock));
  const int64_t col_size = min(n - col_block * kNmsBlock, static_cast<int64_t>(kNmsBlock));
  __shared__ T block_boxes[kNmsBlock * 6];
  __shared__ T block_volumes[kNmsBlock];
  if (threadIdx.x < col_size) {
    const int64_t j = col_block * kNmsBlock + threadIdx.x;
    for (int a = 0; a < 6; ++a) block_boxes[threadIdx.x * 6 + a] = boxes[j * 6 + a];
    block_volumes[threadIdx.x] = volumes[j];
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int64_t i = row_block * kNmsBlock + threadIdx.x;
    const T* box = boxes + i * 6;
    unsigned long long bits = 0;
    const int64_t start = row_block == col_block ? threadIdx.x + 1 : 0;
    for (int64_t j = start; j < col_size; ++j) {
      if (static_cast<double>(box_iou<T>(box, volumes[i], block_boxes + j * 6, block_volumes[j])) > threshold) {
        bits |= 1ULL << j;
      }
    }
    mask[i * nms3d_col_blocks(n) + col_block] = bits;
  }
}

// Greedy sweep over the mask of nms3d_mask_kernel: positions (in score order) of the kept boxes.
inline std::vector<int64_t> nms3d_sweep(const unsigned long long* mask, int64_t n) {
  const int64_t col_blocks = nms3d_col_blocks(n);
  std::vector<unsigned long long> removed(col_blocks, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / kNmsBlock, bit = i % kNmsBlock;
    if (removed[block] & (1ULL << bit)) continue;
    keep.push_back(i);
    const unsigned long long* row = mask + i * col_blocks;
    for (int64_t j = block; j < col_blocks; ++j) removed[j] |= row[j];
  }
  return keep;
}

}  // namespace kernels
}  // namespace ls_ops
