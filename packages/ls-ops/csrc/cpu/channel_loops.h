// The vectorised inner loops of the CPU RoIAlign3D: weighted sums of channel vectors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

#include "axis_map.h"
#include "vectorize.h"

namespace ls_ops {
namespace loops {

// y[c] (+)= sum over j < k (k <= 4) of w[j] * x[j][c], for c in [0, n): one pass over y.
template <typename T>
__attribute__((always_inline)) inline void weighted_sum4(T* __restrict y, const T* const* x, const T* w, int k,
                                                          int64_t n, bool add) {
  const T* __restrict x0 = x[0];
  const T* __restrict x1 = x[k > 1 ? 1 : 0];
  const T* __restrict x2 = x[k > 2 ? 2 : 0];
  const T* __restrict x3 = x[k > 3 ? 3 : 0];
  const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
#define LS_OPS_CHANNEL_LOOP(expr)                         \
  if (add) {                                              \
    for (int64_t c = 0; c < n; ++c) y[c] += (expr);       \
  } else {                                                \
    for (int64_t c = 0; c < n; ++c) y[c] = (expr);        \
  }
  switch (k) {
    case 1:
      LS_OPS_CHANNEL_LOOP(w0 * x0[c])
      break;
    case 2:
      LS_OPS_CHANNEL_LOOP(w0 * x0[c] + w1 * x1[c])
      break;
    case 3:
      LS_OPS_CHANNEL_LOOP(w0 * x0[c] + w1 * x1[c] + w2 * x2[c])
      break;
    default:
      LS_OPS_CHANNEL_LOOP(w0 * x0[c] + w1 * x1[c] + w2 * x2[c] + w3 * x3[c])
      break;
  }
#undef LS_OPS_CHANNEL_LOOP
}

// y (+)= sum over entries e of e.weight * x[e.index * stride][c], for c in [0, n); without
// entries, y = 0 (or unchanged when adding). Entries are taken four at a time, in order.
#define LS_OPS_DEFINE_WEIGHTED_SUM(T)                                                                  \
  LS_OPS_VECTOR_CLONES void weighted_sum(T* y, const T* x, int64_t stride, const AxisEntry<T>* e,    \
                                         int64_t m, int64_t n, bool add) {                            \
    if (m == 0 && !add) std::fill(y, y + n, static_cast<T>(0));                                       \
    for (int64_t j = 0; j < m; j += 4) {                                                              \
      const int k = static_cast<int>(std::min<int64_t>(4, m - j));                                    \
      const T* xs[4];                                                                                 \
      T ws[4] = {0, 0, 0, 0};                                                                         \
      for (int i = 0; i < k; ++i) {                                                                   \
        xs[i] = x + e[j + i].index * stride;                                                          \
        ws[i] = e[j + i].weight;                                                                      \
      }                                                                                               \
      weighted_sum4<T>(y, xs, ws, k, n, add || j > 0);                                                \
    }                                                                                                 \
  }
LS_OPS_DEFINE_WEIGHTED_SUM(float)
LS_OPS_DEFINE_WEIGHTED_SUM(double)
#undef LS_OPS_DEFINE_WEIGHTED_SUM

template <typename T>
void weighted_sum(T* y, const T* x, int64_t stride, std::span<const AxisEntry<T>> entries, int64_t n, bool add) {
  weighted_sum(y, x, stride, entries.data(), static_cast<int64_t>(entries.size()), n, add);
}

}  // namespace loops
}  // namespace ls_ops
