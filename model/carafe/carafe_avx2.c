/* AVX2+FMA CARAFE (x86-64). Only this file is compiled with -mavx2 -mfma; carafe_core.c picks
 * it at run time when the CPU reports both features. */
#include <immintrin.h>

#define VEC __m256
#define VL 8
#define V_ZERO() _mm256_setzero_ps()
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_FMA(acc, a, b) _mm256_fmadd_ps((a), (b), (acc))
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_PIN(v) __asm__("" : "+x"(v))
#define OPT(x) CARAFE_CAT(carafe_avx2_, x)
/* 16 ymm registers: s=1 keeps 8 channel accumulators, s=2 keeps 4 channels x 2 rows. */
#define CB_S1 8
#define CB_S2 4
#include "carafe_opt.h"

const carafe_variant carafe_variant_avx2 = {"avx2", carafe_avx2_tasks, carafe_avx2_run};

/* The backward for training (carafe_backward.c), over the same vocabulary. */
#include "carafe_bwd_opt.h"

const carafe_bwd_variant carafe_bwd_variant_avx2 = {
	"avx2",
	carafe_avx2_bwd_feat_tasks, carafe_avx2_bwd_feat_scratch, carafe_avx2_bwd_feat_run,
	carafe_avx2_bwd_mask_tasks, carafe_avx2_bwd_mask_scratch, carafe_avx2_bwd_mask_run,
};
