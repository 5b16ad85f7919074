/* Portable optimised CARAFE: the shared tiling (carafe_opt.h) over GCC/Clang vector
 * extensions (4 floats), which compile to SSE2 on any x86-64 and to Advanced SIMD on arm64.
 * It is the fallback on x86-64 CPUs without AVX2/FMA. */
#include <string.h>

typedef float carafe_v4 __attribute__((vector_size(16)));
#define VEC carafe_v4
#define VL 4
#define V_ZERO() ((carafe_v4){0.0f, 0.0f, 0.0f, 0.0f})
static inline carafe_v4 carafe_v4_load(const float *p) { carafe_v4 v; memcpy(&v, p, sizeof v); return v; }
static inline void carafe_v4_store(float *p, carafe_v4 v) { memcpy(p, &v, sizeof v); }
#define V_LOAD(p) carafe_v4_load(p)
#define V_FMA(acc, a, b) ((acc) + (a) * (b))
#define V_STORE(p, v) carafe_v4_store((p), (v))
#define OPT(x) CARAFE_CAT(carafe_generic_, x)
#define CB_S1 8
#define CB_S2 4
#include "carafe_opt.h"

const carafe_variant carafe_variant_generic = {"generic", carafe_generic_tasks, carafe_generic_run};

/* The backward for training (carafe_backward.c), over the same vocabulary. */
#include "carafe_bwd_opt.h"

const carafe_bwd_variant carafe_bwd_variant_generic = {
	"generic",
	carafe_generic_bwd_feat_tasks, carafe_generic_bwd_feat_scratch, carafe_generic_bwd_feat_run,
	carafe_generic_bwd_mask_tasks, carafe_generic_bwd_mask_scratch, carafe_generic_bwd_mask_run,
};
