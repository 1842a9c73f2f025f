// The ls_ops operator library: schemas, CPU/CUDA kernels, autocast kernels and build_info.
//
// Autograd and fake (meta) kernels are registered from Python (ls_ops/roi_align.py, ls_ops/nms.py)
// with torch.library.register_autograd / register_fake.
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <atomic>
#include <string>
#include <vector>

#include "ops.h"

#ifndef LS_OPS_TORCH_VERSION
#error "LS_OPS_TORCH_VERSION must be defined by the build"
#endif
#ifndef LS_OPS_CUDA_ARCHITECTURES
#define LS_OPS_CUDA_ARCHITECTURES ""
#endif
#ifndef LS_OPS_CUDA_VERSION
#define LS_OPS_CUDA_VERSION ""
#endif
#ifndef LS_OPS_CPU_PARALLEL
#error "LS_OPS_CPU_PARALLEL must be defined by the build"
#endif
#ifndef LS_OPS_COMPILER
#define LS_OPS_COMPILER ""
#endif

namespace ls_ops {
namespace {

// JSON description of this build, parsed by ls_ops.build_info().
std::string build_info() {
  std::string info = "{\"torch\": \"" LS_OPS_TORCH_VERSION "\", \"compiler\": \"" LS_OPS_COMPILER "\", ";
  info += "\"cpu_parallel\": \"" LS_OPS_CPU_PARALLEL "\", ";
#ifdef LS_OPS_WITH_CUDA
  info += "\"cuda\": true, \"cuda_version\": \"" LS_OPS_CUDA_VERSION "\", ";
  info += "\"cuda_architectures\": \"" LS_OPS_CUDA_ARCHITECTURES "\"}";
#else
  info += "\"cuda\": false, \"cuda_version\": null, \"cuda_architectures\": null}";
#endif
  return info;
}

// How many threads at::parallel_for runs a loop of `at::get_num_threads()` items on, in this
// library: the CPU kernels' parallelism as built (1 when they would run serially).
int64_t parallel_threads() {
  const int64_t n = at::get_num_threads();
  std::vector<std::atomic<bool>> seen(n);
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    const int64_t t = at::get_thread_num();
    if (t >= 0 && t < n) seen[t] = true;
  });
  int64_t count = 0;
  for (const auto& s : seen) count += s ? 1 : 0;
  return count;
}

// Autocast: half / bfloat16 inputs are computed in float32 and the result is cast back.
template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
at::Tensor roi_align3d_autocast(const at::Tensor& input, const at::Tensor& rois, c10::ArrayRef<double> spatial_scale,
                                c10::IntArrayRef output_size, c10::IntArrayRef sampling_ratio, bool aligned) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ls_ops::roi_align3d", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::ArrayRef<double>,
                                         c10::IntArrayRef, c10::IntArrayRef, bool)>();
  return op
      .call(at::autocast::cached_cast(at::kFloat, input, device_type),
            at::autocast::cached_cast(at::kFloat, rois, device_type), spatial_scale, output_size, sampling_ratio,
            aligned)
      .to(input.scalar_type());
}

}  // namespace
}  // namespace ls_ops

TORCH_LIBRARY(ls_ops, m) {
  m.def(
      "roi_align3d(Tensor input, Tensor rois, float[3] spatial_scale, int[3] output_size, int[3] sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def(
      "roi_align3d_backward(Tensor grad, Tensor rois, float[3] spatial_scale, int[3] output_size, "
      "int[3] sampling_ratio, bool aligned, SymInt batch_size, SymInt channels, SymInt depth, SymInt height, "
      "SymInt width) -> Tensor");
  m.def("nms3d(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("build_info() -> str", &ls_ops::build_info);
  m.def("parallel_threads() -> int", &ls_ops::parallel_threads);
}

TORCH_LIBRARY_IMPL(ls_ops, CPU, m) {
  m.impl("roi_align3d", &ls_ops::roi_align3d_cpu);
  m.impl("roi_align3d_backward", &ls_ops::roi_align3d_backward_cpu);
  m.impl("nms3d", &ls_ops::nms3d_cpu);
}

#ifdef LS_OPS_WITH_CUDA
TORCH_LIBRARY_IMPL(ls_ops, CUDA, m) {
  m.impl("roi_align3d", &ls_ops::roi_align3d_cuda);
  m.impl("roi_align3d_backward", &ls_ops::roi_align3d_backward_cuda);
  m.impl("nms3d", &ls_ops::nms3d_cuda);
}
#endif

TORCH_LIBRARY_IMPL(ls_ops, AutocastCPU, m) {
  m.impl("roi_align3d", &ls_ops::roi_align3d_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(ls_ops, AutocastCUDA, m) {
  m.impl("roi_align3d", &ls_ops::roi_align3d_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
}
