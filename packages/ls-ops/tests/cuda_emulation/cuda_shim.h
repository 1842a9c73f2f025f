// Just enough of CUDA's execution model to run the kernels of csrc/cuda/*.cuh as host C++, so
// that they are tested against the reference on machines without a GPU (test_cuda_emulated.py).
//
// A launch runs the blocks one after another and the threads of a block as concurrent
// std::threads: __syncthreads is a barrier of the block's threads, __shared__ arrays are static
// (one block at a time uses them), atomicAdd is an atomic read-modify-write. What this cannot
// show: nvcc-specific compilation, warp-level timing, the host wrappers' tensor handling. Those
// are what tests/test_cuda.py checks on a GPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline dim3 gridDim, blockDim, blockIdx;  // constant while a block runs
inline thread_local dim3 threadIdx;
inline thread_local std::barrier<>* block_barrier = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

using std::max;
using std::min;

namespace cuda_emulation {

// kernel<<<grid, block>>>(args...) for one-dimensional blocks.
template <typename Kernel, typename... Args>
void launch(dim3 grid, unsigned threads, Kernel kernel, Args... args) {
  gridDim = grid;
  blockDim = dim3{threads, 1, 1};
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      blockIdx = dim3{bx, by, 0};
      std::barrier<> barrier(threads);
      std::vector<std::jthread> block;
      block.reserve(threads);
      for (unsigned t = 0; t < threads; ++t) {
        block.emplace_back([&barrier, t, kernel, args...] {
          threadIdx = dim3{t, 0, 0};
          block_barrier = &barrier;
          kernel(args...);
        });
      }
    }  // the jthreads join here: the block is done before the next starts
  }
}

}  // namespace cuda_emulation
