// One axis of a roi as a sparse linear map from input voxels to output bins (CPU RoIAlign3D).
//
// RoIAlign3D is separable. A trilinear sample's weight is the product of one linear weight per
// axis, and a sample outside the volume along any axis contributes nothing, so
//   out[oz, oy, ox] = (1 / count) * sum_z Az[oz, z] * sum_y Ay[oy, y] * sum_x Ax[ox, x] * in[z, y, x]
// where A[o, v] is the sum of the interpolation weights that the samples of bin o put on voxel v
// (geometry.h: torchvision's sample positions, border clamping and outside rule). An AxisMap holds
// A of one axis twice: by bin, to gather a bin from its voxels, and by voxel, to scatter a voxel
// into its bins. Weights are summed in sample order, low tap before high tap.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "../geometry.h"

namespace ls_ops {

template <typename T>
struct AxisEntry {
  int64_t index;  // a voxel (in a bin's list) or a bin (in a voxel's list)
  T weight;
};

template <typename T>
class AxisMap {
 public:
  // The map of `pooled` bins of roi axis `a` over an input axis of `size` voxels.
  void build(const RoiAxis<T>& a, int64_t pooled, int64_t size) {
    by_bin_.clear();
    bin_begin_.assign(pooled + 1, 0);
    lo_ = size;
    hi_ = -1;
    for (int64_t p = 0; p < pooled; ++p) {
      const size_t first = by_bin_.size();
      for (int64_t i = 0; i < a.grid; ++i) {
        const Tap<T> t = make_tap<T>(sample_coord<T>(a, p, i), size);
        if (!t.inside) continue;
        add(first, t.low, t.w_low);
        add(first, t.high, t.w_high);
      }
      bin_begin_[p + 1] = static_cast<int64_t>(by_bin_.size());
    }
    // By voxel: a counting sort of the entries over [lo, hi], bins ascending within a voxel.
    const int64_t span = hi_ >= lo_ ? hi_ - lo_ + 1 : 0;
    voxel_begin_.assign(span + 1, 0);
    for (const auto& e : by_bin_) ++voxel_begin_[e.index - lo_ + 1];
    for (int64_t v = 0; v < span; ++v) voxel_begin_[v + 1] += voxel_begin_[v];
    by_voxel_.resize(by_bin_.size());
    fill_.assign(voxel_begin_.begin(), voxel_begin_.end());
    for (int64_t p = 0; p < pooled; ++p) {
      for (int64_t j = bin_begin_[p]; j < bin_begin_[p + 1]; ++j) {
        by_voxel_[fill_[by_bin_[j].index - lo_]++] = {p, by_bin_[j].weight};
      }
    }
  }

  // Multiplies every weight by f.
  void scale(T f) {
    for (auto& e : by_bin_) e.weight *= f;
    for (auto& e : by_voxel_) e.weight *= f;
  }

  bool empty() const { return by_bin_.empty(); }
  int64_t lo() const { return lo_; }  // the voxels with weight lie in [lo, hi]
  int64_t hi() const { return hi_; }

  // (voxel, weight) of bin p, voxels in order of first use.
  std::span<const AxisEntry<T>> bin(int64_t p) const {
    return {by_bin_.data() + bin_begin_[p], static_cast<size_t>(bin_begin_[p + 1] - bin_begin_[p])};
  }

  // (bin, weight) of voxel v in [lo, hi], bins ascending.
  std::span<const AxisEntry<T>> voxel(int64_t v) const {
    const int64_t i = v - lo_;
    return {by_voxel_.data() + voxel_begin_[i], static_cast<size_t>(voxel_begin_[i + 1] - voxel_begin_[i])};
  }

 private:
  // Adds weight w on voxel v to the bin whose entries start at `first`.
  void add(size_t first, int64_t v, T w) {
    for (size_t j = first; j < by_bin_.size(); ++j) {
      if (by_bin_[j].index == v) {
        by_bin_[j].weight += w;
        return;
      }
    }
    by_bin_.push_back({v, w});
    lo_ = v < lo_ ? v : lo_;
    hi_ = v > hi_ ? v : hi_;
  }

  std::vector<AxisEntry<T>> by_bin_, by_voxel_;
  std::vector<int64_t> bin_begin_, voxel_begin_, fill_;
  int64_t lo_ = 0, hi_ = -1;
};

}  // namespace ls_ops
