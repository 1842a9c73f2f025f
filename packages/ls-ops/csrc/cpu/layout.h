// Memory layout helpers of the CPU kernels: cache-blocked parallel transposes between
// (B, C, D, H, W) and channels-last (B, D, H, W, C), and large buffers on huge pages.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace ls_ops {

// Transposes of small square blocks: dst[c * dst_stride + r] = src[r * src_stride + c], r, c < 8
// (float) or < 4 (double), in registers with AVX2 (the usual unpack / shuffle / permute network).
#if defined(__x86_64__) && defined(__GNUC__)
#define LS_OPS_X86_TRANSPOSE 1
__attribute__((target("avx2"))) inline void transpose_block_avx2(const float* src, int64_t src_stride, float* dst,
                                                                  int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

__attribute__((target("avx2"))) inline void transpose_block_avx2(const double* src, int64_t src_stride, double* dst,
                                                                  int64_t dst_stride) {
  __m256d r[4], t[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src + i * src_stride);
  t[0] = _mm256_unpacklo_pd(r[0], r[1]);
  t[1] = _mm256_unpackhi_pd(r[0], r[1]);
  t[2] = _mm256_unpacklo_pd(r[2], r[3]);
  t[3] = _mm256_unpackhi_pd(r[2], r[3]);
  _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t[0], t[2], 0x20));
  _mm256_storeu_pd(dst + dst_stride, _mm256_permute2f128_pd(t[1], t[3], 0x20));
  _mm256_storeu_pd(dst + 2 * dst_stride, _mm256_permute2f128_pd(t[0], t[2], 0x31));
  _mm256_storeu_pd(dst + 3 * dst_stride, _mm256_permute2f128_pd(t[1], t[3], 0x31));
}

inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

// dst[c * dst_stride + r] = src[r * src_stride + c] for r in [r0, r1), c in [c0, c1): square
// blocks in registers where the CPU has AVX2, element by element for the rest.
template <typename T>
void transpose_region(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t r0, int64_t r1,
                      int64_t c0, int64_t c1) {
  int64_t rv = r0, cv = c0;  // [r0, rv) x [c0, cv) is done in blocks
#ifdef LS_OPS_X86_TRANSPOSE
  constexpr int64_t kSide = 32 / sizeof(T);
  if (cpu_has_avx2()) {
    rv = r0 + (r1 - r0) / kSide * kSide;
    cv = c0 + (c1 - c0) / kSide * kSide;
    for (int64_t r = r0; r < rv; r += kSide) {
      for (int64_t c = c0; c < cv; c += kSide) {
        transpose_block_avx2(src + r * src_stride + c, src_stride, dst + c * dst_stride + r, dst_stride);
      }
    }
  }
#endif
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = (r < rv ? cv : c0); c < c1; ++c) dst[c * dst_stride + r] = src[r * src_stride + c];
  }
}

// dst[o][c][r] = src[o][r][c] for o < outer, r < rows, c < cols, in blocks of 64 x 64 (64 reads
// and 64 writes of 256 contiguous bytes each for float), optionally in parallel over the blocks.
template <typename T>
void transpose(const T* src, T* dst, int64_t outer, int64_t rows, int64_t cols, bool parallel) {
  constexpr int64_t kBlock = 64;
  const int64_t row_blocks = (rows + kBlock - 1) / kBlock, col_blocks = (cols + kBlock - 1) / kBlock;
  // Row blocks innermost, so that neighbouring items share source pages.
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t o = i / (row_blocks * col_blocks), rb = i % row_blocks, cb = (i / row_blocks) % col_blocks;
      transpose_region(src + o * rows * cols, cols, dst + o * rows * cols, rows, rb * kBlock,
                       std::min((rb + 1) * kBlock, rows), cb * kBlock, std::min((cb + 1) * kBlock, cols));
    }
  };
  const int64_t items = outer * row_blocks * col_blocks;
  if (parallel) {
    at::parallel_for(0, items, 16, run);
  } else {
    run(0, items);
  }
}

// An uninitialised tensor that a kernel is about to fill. Buffers of 4 MiB and more are advised
// onto transparent huge pages (Linux), so that first touching them takes 512 times fewer page
// faults: for the 128 MiB channels-last copy of a feature map this halves the copy's time. The
// advice is a hint; where huge pages are off it changes nothing.
inline at::Tensor empty_for_filling(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const size_t bytes = t.nbytes();
  if (bytes >= 2 * kHuge) {
    const auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t begin = (p + kHuge - 1) & ~(kHuge - 1), end = (p + bytes) & ~(kHuge - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
  return t;
}

// A tensor of zeros, written in parallel (on huge pages where large).
inline at::Tensor zeros_for_filling(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto t = empty_for_filling(sizes, options);
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  at::parallel_for(0, static_cast<int64_t>(t.nbytes()), int64_t{1} << 20,
                   [&](int64_t begin, int64_t end) { std::fill(p + begin, p + end, uint8_t{0}); });
  return t;
}

// (B, C, D, H, W) -> a new (B, D, H, W, C) contiguous tensor.
inline at::Tensor to_channels_last(const at::Tensor& t) {
  const auto src = t.contiguous();
  auto dst = empty_for_filling({t.size(0), t.size(2), t.size(3), t.size(4), t.size(1)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "ls_ops_to_channels_last", [&] {
    transpose(src.data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), t.size(0), t.size(1),
              t.size(2) * t.size(3) * t.size(4), true);
  });
  return dst;
}

// (B, D, H, W, C) contiguous -> a new (B, C, D, H, W) contiguous tensor.
inline at::Tensor from_channels_last(const at::Tensor& t) {
  auto dst = empty_for_filling({t.size(0), t.size(4), t.size(1), t.size(2), t.size(3)}, t.options());
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "ls_ops_from_channels_last", [&] {
    transpose(t.data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), t.size(0), t.size(1) * t.size(2) * t.size(3),
              t.size(4), true);
  });
  return dst;
}

}  // namespace ls_ops
