// The CUDA kernels of csrc/cuda, compiled as host C++ with cuda_shim.h and exported with a C ABI
// for ctypes (test_cuda_emulated.py). The launch configuration is the caller's, so a test can
// use the host wrappers' own (blocks of 256 or 64 threads) or a small grid that makes the
// grid-stride loops go round.
#include "cuda_shim.h"

#include "../../csrc/cuda/nms3d_kernels.cuh"
#include "../../csrc/cuda/roi_align3d_kernels.cuh"

namespace {

using ls_ops::kernels::Dims;

// dims: B, C, D, H, W, od, oh, ow, sd, sh, sw (the kernels' Dims order).
Dims make_dims(const int64_t* d, int aligned) {
  return {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], aligned != 0};
}

// kernel<<<blocks, threads>>>(total, data, rois, scales..., dims, out): the forward or backward.
template <typename T, typename Kernel>
void roi_align(Kernel kernel, int64_t total, const T* data, const T* rois, const double* scale, const int64_t* dims,
               int aligned, T* out, unsigned blocks, unsigned threads) {
  cuda_emulation::launch(dim3{blocks, 1, 1}, threads, kernel, total, data, rois, static_cast<T>(scale[0]),
                         static_cast<T>(scale[1]), static_cast<T>(scale[2]), make_dims(dims, aligned), out);
}

// boxes (n, 6) and volumes (n) already sorted by decreasing score; writes the kept positions.
template <typename T>
int64_t nms(int64_t n, double threshold, const T* boxes, const T* volumes, int64_t* keep) {
  const int64_t col_blocks = ls_ops::kernels::nms3d_col_blocks(n);
  std::vector<unsigned long long> mask(n * col_blocks, 0xdeadbeefdeadbeefULL);  // as at::empty: unwritten words
  const unsigned grid = static_cast<unsigned>(col_blocks);
  cuda_emulation::launch(dim3{grid, grid, 1}, ls_ops::kernels::kNmsBlock, ls_ops::kernels::nms3d_mask_kernel<T>, n,
                         threshold, boxes, volumes, mask.data());
  const std::vector<int64_t> kept = ls_ops::kernels::nms3d_sweep(mask.data(), n);
  std::copy(kept.begin(), kept.end(), keep);
  return static_cast<int64_t>(kept.size());
}

}  // namespace

extern "C" {

void roi_align3d_forward_f32(int64_t total, const float* input, const float* rois, const double* scale,
                             const int64_t* dims, int aligned, float* out, unsigned blocks, unsigned threads) {
  roi_align(ls_ops::kernels::roi_align3d_forward_kernel<float>, total, input, rois, scale, dims, aligned, out, blocks,
            threads);
}
void roi_align3d_forward_f64(int64_t total, const double* input, const double* rois, const double* scale,
                             const int64_t* dims, int aligned, double* out, unsigned blocks, unsigned threads) {
  roi_align(ls_ops::kernels::roi_align3d_forward_kernel<double>, total, input, rois, scale, dims, aligned, out,
            blocks, threads);
}
void roi_align3d_backward_f32(int64_t total, const float* grad, const float* rois, const double* scale,
                              const int64_t* dims, int aligned, float* grad_input, unsigned blocks,
                              unsigned threads) {
  roi_align(ls_ops::kernels::roi_align3d_backward_kernel<float>, total, grad, rois, scale, dims, aligned, grad_input,
            blocks, threads);
}
void roi_align3d_backward_f64(int64_t total, const double* grad, const double* rois, const double* scale,
                              const int64_t* dims, int aligned, double* grad_input, unsigned blocks,
                              unsigned threads) {
  roi_align(ls_ops::kernels::roi_align3d_backward_kernel<double>, total, grad, rois, scale, dims, aligned,
            grad_input, blocks, threads);
}
int64_t nms3d_f32(int64_t n, double threshold, const float* boxes, const float* volumes, int64_t* keep) {
  return nms(n, threshold, boxes, volumes, keep);
}
int64_t nms3d_f64(int64_t n, double threshold, const double* boxes, const double* volumes, int64_t* keep) {
  return nms(n, threshold, boxes, volumes, keep);
}

}  // extern "C"
