// Sampling geometry of RoIAlign3D, shared by the CPU and CUDA kernels.
//
// Per axis, exactly torchvision's roi_align rules (see ls_ops/reference/roi_align.py): a roi
// spans [c1 * scale - offset, c2 * scale - offset), split into `pooled` bins of `grid` samples;
// a sample coordinate < -1 or > size is outside (weight 0), otherwise it is clamped to
// [0, size - 1] and interpolated between floor and floor + 1. Arithmetic is in T and in the
// same order as torchvision's kernels, so sample positions and per-axis weights round exactly as
// torchvision's (a sample never lands on another voxel than torchvision's would).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LS_HD __host__ __device__ __forceinline__
#else
#define LS_HD inline
#endif

namespace ls_ops {

template <typename T>
struct RoiAxis {
  T start;       // first coordinate of the roi in input voxels
  T bin;         // bin size
  int64_t grid;  // samples per bin (may be <= 0: no samples)
};

template <typename T>
LS_HD RoiAxis<T> roi_axis(T c1, T c2, T scale, int64_t pooled, int64_t sampling_ratio, bool aligned) {
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  const T start = c1 * scale - offset;
  const T end = c2 * scale - offset;
  T extent = end - start;
  if (!aligned && extent < static_cast<T>(1)) {
    extent = static_cast<T>(1);  // legacy behaviour: rois are at least one voxel
  }
  const T bin = extent / static_cast<T>(pooled);
  const int64_t grid = sampling_ratio > 0 ? sampling_ratio
                                          : static_cast<int64_t>(ceil(extent / static_cast<T>(pooled)));
  return {start, bin, grid};
}

// Coordinate of sample i of bin p.
template <typename T>
LS_HD T sample_coord(const RoiAxis<T>& a, int64_t p, int64_t i) {
  return a.start + static_cast<T>(p) * a.bin + static_cast<T>(i + .5f) * a.bin / static_cast<T>(a.grid);
}

// Linear interpolation along one axis: returns false (zero weights) outside [-1, size].
template <typename T>
LS_HD bool axis_weights(T coord, int64_t size, int64_t& low, int64_t& high, T& w_low, T& w_high) {
  if (coord < -1.0 || coord > static_cast<T>(size)) {
    low = high = 0;
    w_low = w_high = static_cast<T>(0);
    return false;
  }
  if (coord <= 0) {
    coord = 0;
  }
  low = static_cast<int64_t>(coord);
  if (low >= size - 1) {
    high = low = size - 1;
    coord = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  w_high = coord - static_cast<T>(low);
  w_low = static_cast<T>(1) - w_high;
  return true;
}

// One interpolation tap along an axis: two voxel indices and their weights.
template <typename T>
struct Tap {
  int64_t low, high;
  T w_low, w_high;
  bool inside;
};

template <typename T>
LS_HD Tap<T> make_tap(T coord, int64_t size) {
  Tap<T> t;
  t.inside = axis_weights(coord, size, t.low, t.high, t.w_low, t.w_high);
  return t;
}

// Samples averaged per output voxel (torchvision: max(grid_h * grid_w, 1)).
LS_HD int64_t sample_count(int64_t gd, int64_t gh, int64_t gw) {
  const int64_t n = gd * gh * gw;
  return n > 1 ? n : 1;
}

// IoU of two boxes (z1, y1, x1, z2, y2, x2), inter = (d * h) * w as torchvision's w * h.
template <typename T>
LS_HD T box_iou(const T* a, T vol_a, const T* b, T vol_b) {
  const T zz1 = a[0] > b[0] ? a[0] : b[0];
  const T yy1 = a[1] > b[1] ? a[1] : b[1];
  const T xx1 = a[2] > b[2] ? a[2] : b[2];
  const T zz2 = a[3] < b[3] ? a[3] : b[3];
  const T yy2 = a[4] < b[4] ? a[4] : b[4];
  const T xx2 = a[5] < b[5] ? a[5] : b[5];
  const T d = zz2 - zz1 > 0 ? zz2 - zz1 : static_cast<T>(0);
  const T h = yy2 - yy1 > 0 ? yy2 - yy1 : static_cast<T>(0);
  const T w = xx2 - xx1 > 0 ? xx2 - xx1 : static_cast<T>(0);
  const T inter = d * h * w;
  return inter / (vol_a + vol_b - inter);
}

}  // namespace ls_ops
