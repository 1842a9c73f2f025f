// Greedy 3-D NMS on the CPU.
//
// Boxes are sorted once by decreasing score (stable: ties keep input order) into a
// structure-of-arrays copy, so the suppression sweep of a kept box over the later boxes is a
// branch-free loop over contiguous arrays that the compiler vectorises. IoU is computed in the
// boxes' dtype and compared with the threshold in double, exactly as torchvision's CPU nms.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>

#include <vector>

#include "../ops.h"
#include "vectorize.h"

namespace ls_ops {
namespace {

// suppressed[j] |= iou(box, j) > threshold for j in [begin, n), boxes as 6 column arrays.
#define LS_OPS_DEFINE_SWEEP(T)                                                                                 \
  LS_OPS_VECTOR_CLONES void sweep(const T* const* col, const T* __restrict vol, const T* box, T box_vol,       \
                                  double threshold, int64_t begin, int64_t n, uint8_t* __restrict suppressed) { \
    const T* __restrict z1 = col[0];                                                                           \
    const T* __restrict y1 = col[1];                                                                           \
    const T* __restrict x1 = col[2];                                                                           \
    const T* __restrict z2 = col[3];                                                                           \
    const T* __restrict y2 = col[4];                                                                           \
    const T* __restrict x2 = col[5];                                                                           \
    const T bz1 = box[0], by1 = box[1], bx1 = box[2], bz2 = box[3], by2 = box[4], bx2 = box[5];               \
    for (int64_t j = begin; j < n; ++j) {                                                                      \
      const T zz1 = bz1 > z1[j] ? bz1 : z1[j];                                                                 \
      const T yy1 = by1 > y1[j] ? by1 : y1[j];                                                                 \
      const T xx1 = bx1 > x1[j] ? bx1 : x1[j];                                                                 \
      const T zz2 = bz2 < z2[j] ? bz2 : z2[j];                                                                 \
      const T yy2 = by2 < y2[j] ? by2 : y2[j];                                                                 \
      const T xx2 = bx2 < x2[j] ? bx2 : x2[j];                                                                 \
      const T d = zz2 - zz1 > 0 ? zz2 - zz1 : static_cast<T>(0);                                              \
      const T h = yy2 - yy1 > 0 ? yy2 - yy1 : static_cast<T>(0);                                              \
      const T w = xx2 - xx1 > 0 ? xx2 - xx1 : static_cast<T>(0);                                              \
      const T inter = d * h * w;                                                                               \
      const T iou = inter / (box_vol + vol[j] - inter);                                                        \
      suppressed[j] |= static_cast<uint8_t>(static_cast<double>(iou) > threshold);                           \
    }                                                                                                          \
  }
LS_OPS_DEFINE_SWEEP(float)
LS_OPS_DEFINE_SWEEP(double)

template <typename T>
at::Tensor nms_kernel(const at::Tensor& boxes, const at::Tensor& scores, double threshold) {
  const int64_t n = boxes.size(0);
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* ord = order.data_ptr<int64_t>();
  const auto b = boxes.contiguous();
  const T* src = b.data_ptr<T>();
  std::vector<T> cols(6 * n), vol(n);
  const T* col[6];
  for (int a = 0; a < 6; ++a) col[a] = cols.data() + a * n;
  for (int64_t i = 0; i < n; ++i) {
    const T* r = src + ord[i] * 6;
    for (int a = 0; a < 6; ++a) cols[a * n + i] = r[a];
    vol[i] = (r[3] - r[0]) * (r[4] - r[1]) * (r[5] - r[2]);
  }
  std::vector<uint8_t> suppressed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    keep.push_back(ord[i]);
    const T box[6] = {col[0][i], col[1][i], col[2][i], col[3][i], col[4][i], col[5][i]};
    sweep(col, vol.data(), box, vol[i], threshold, i + 1, n, suppressed.data());
  }
  auto out = at::empty({static_cast<int64_t>(keep.size())}, boxes.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

}  // namespace

at::Tensor nms3d_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 6, "ls_ops.nms3d: boxes must be (N, 6), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "ls_ops.nms3d: scores must be (",
              boxes.size(0), ",), got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "ls_ops.nms3d: boxes and scores dtypes differ");
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  if (boxes.scalar_type() == at::kHalf || boxes.scalar_type() == at::kBFloat16) {
    return nms3d_cpu(boxes.to(at::kFloat), scores.to(at::kFloat), iou_threshold);
  }
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "ls_ops_nms3d", [&] {
    out = nms_kernel<scalar_t>(boxes, scores, iou_threshold);
  });
  return out;
}

}  // namespace ls_ops
