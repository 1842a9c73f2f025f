// Function multi-versioning of the CPU kernels' vectorisable loops.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// One AVX2 clone besides the baseline, picked at load time. Without FMA (and built with
// -ffp-contract=off), so both clones round alike: results do not depend on the CPU they run on.
#define LS_OPS_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LS_OPS_VECTOR_CLONES
#endif
