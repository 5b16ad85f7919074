/* Advanced SIMD (NEON) CARAFE for arm64, where it is always present. 32 q registers allow
 * 8 channels x 2 rows of accumulators for s=2. */
#include <arm_neon.h>

#define VEC float32x4_t
#define VL 4
#define V_ZERO() vdupq_n_f32(0.0f)
#define V_LOAD(p) vld1q_f32(p)
#define V_FMA(acc, a, b) vfmaq_f32((acc), (a), (b))
#define V_STORE(p, v) vst1q_f32((p), (v))
#define OPT(x) CARAFE_CAT(carafe_neon_, x)
#define CB_S1 8
#define CB_S2 8
#include "carafe_opt.h"

const carafe_variant carafe_variant_neon = {"neon", carafe_neon_tasks, carafe_neon_run};

/* The backward for training (carafe_backward.c), over the same vocabulary. */
#include "carafe_bwd_opt.h"

const carafe_bwd_variant carafe_bwd_variant_neon = {
	"neon",
	carafe_neon_bwd_feat_tasks, carafe_neon_bwd_feat_scratch, carafe_neon_bwd_feat_run,
	carafe_neon_bwd_mask_tasks, carafe_neon_bwd_mask_scratch, carafe_neon_bwd_mask_run,
};
