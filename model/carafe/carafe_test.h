/* Shared by the CPU test (test_carafe.c) and the GPU test (test_carafe_cuda.cu): the check
 * counter, the shapes every kernel is checked on, the input generator, and the comparison
 * against the reference that treats NaN and Inf as values (a NaN must stay a NaN, an Inf the
 * same Inf). Header-only, C and C++; each test program includes it once. */
#ifndef STARDETR_CARAFE_TEST_H
#define STARDETR_CARAFE_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Counts of the checks so far; the program's last line reports them. */
static int passed, failed;

/* Counts one check, printing "FAIL: <message>" when ok is false. */
static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (ok) {
		passed++;
	} else {
		failed++;
		printf("FAIL: ");
		vprintf(fmt, ap);
		printf("\n");
	}
	va_end(ap);
}

typedef struct carafe_shape {
	int64_t n, c, h, w, g, k;
	float s;
} carafe_shape;

/* Odd shapes (H != W, odd sizes, channel counts that are not a multiple of any vector width or
 * tile, G in {1,2,4}, k in {1,3,5,7}, s in {1,2,3} and two non-integral s, N=2), plus the five
 * FreqFusion call shapes at 640 input (P4 level: lr 20x20, hr 40x40). Returns the count (at most max). */
static inline size_t carafe_test_shapes(carafe_shape *out, size_t max)
{
	static const int64_t groups[] = {1, 2, 4}, ks[] = {1, 3, 5, 7}, ss[] = {1, 2, 3};
	static const int64_t cpgs[] = {13, 5, 9, 3}, hs[] = {7, 5, 12, 1, 9}, ws[] = {11, 3, 9, 6, 17};
	static const carafe_shape fixed[] = {
		{2, 13, 7, 10, 1, 5, 1.5f}, {2, 6, 5, 8, 2, 3, 2.5f}, /* non-integral scale: floor(p / s) */
		{1, 64, 40, 40, 1, 3, 1},   {1, 25, 20, 20, 1, 5, 2},  {1, 9, 20, 20, 1, 5, 2},
		{1, 256, 20, 20, 1, 5, 2},  {1, 256, 40, 40, 1, 3, 1},
	};
	size_t n = 0;
	int combo = 0;
	for (size_t gi = 0; gi < 3; gi++)
		for (size_t ki = 0; ki < 4; ki++)
			for (size_t si = 0; si < 3; si++, combo++)
				if (n < max) {
					const carafe_shape sh = {2,      groups[gi] * cpgs[combo % 4], hs[combo % 5], ws[combo % 5],
					                         groups[gi], ks[ki], (float)ss[si]};
					out[n++] = sh;
				}
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n < max; i++)
		out[n++] = fixed[i];
	return n;
}

/* The CUDA kernel's extra shapes (after the CPU ones, for the GPU test and the host emulation):
 * channel chunks that do not divide C/G, C=G, k=1, k=7, k=9 (the kernel's generic-k path), s=3,
 * H=W=1, odd H/W. Returns the count (at most max). */
static inline size_t carafe_test_shapes_cuda(carafe_shape *out, size_t max)
{
	static const carafe_shape extra[] = {
		{1, 96, 20, 20, 2, 5, 2},  {1, 96, 100, 100, 2, 3, 2}, {1, 100, 33, 17, 2, 5, 2}, {1, 8, 9, 11, 8, 3, 2},
		{1, 16, 9, 7, 1, 1, 2},    {2, 12, 11, 13, 2, 7, 1},   {1, 10, 13, 9, 1, 9, 2},   {1, 6, 5, 7, 2, 9, 3},
		{2, 9, 7, 5, 3, 5, 3},     {1, 4, 1, 1, 1, 5, 2},      {1, 7, 1, 1, 1, 3, 1},     {1, 33, 17, 9, 3, 5, 2},
		{3, 20, 15, 21, 4, 3, 2},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof extra / sizeof extra[0] && n < max; i++)
		out[n++] = extra[i];
	return n;
}

static inline int64_t carafe_out_size(int64_t x, float s) { return (int64_t)floor((double)x * s); }

/* xorshift64, uniform in [-1, 1): the same sequence on every machine. */
static inline float carafe_rnd(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	*state = x;
	return (float)((x >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Puts NaN, +Inf and -Inf on the border of every feature plane (corners and the middle of two
 * edges): outputs whose window covers them are non-finite in the reference, every other output
 * must stay finite and exact. */
static inline void carafe_poison_border(float *feat, int64_t n, int64_t c, int64_t h, int64_t w)
{
	for (int64_t p = 0; p < n * c; p++) {
		float *f = feat + p * h * w;
		f[0] = NAN;
		f[h * w - 1] = INFINITY;
		f[(h / 2) * w] = -INFINITY;          /* left edge */
		f[(h - 1) * w + w / 2] = NAN;        /* bottom edge */
		if (w > 1)
			f[w - 1] = h > 1 ? INFINITY : NAN; /* top-right corner */
	}
}

/* Worst mismatch of got against ref: 0 when every element matches, where a NaN must be a NaN, an
 * Inf the same Inf, and a finite value within tol_abs + tol_rel * scale[i] (scale NULL: |ref[i]|).
 * Returns the worst |diff| / allowed ratio (> 1 means failed; INFINITY for a non-finite mismatch)
 * and sets *at to its index. */
static inline double carafe_mismatch(const float *got, const float *ref, const float *scale, size_t count,
                                     double tol_abs, double tol_rel, size_t *at)
{
	double worst = 0;
	*at = 0;
	for (size_t i = 0; i < count; i++) {
		const double g = got[i], r = ref[i];
		double bad;
		if (isnan(r) || isinf(r))
			bad = (isnan(r) ? isnan(g) : g == r) ? 0 : INFINITY;
		else if (!isfinite(g))
			bad = INFINITY;
		else
			bad = fabs(g - r) / (tol_abs + tol_rel * (scale ? (double)scale[i] : fabs(r)));
		if (bad > worst) {
			worst = bad;
			*at = i;
			if (isinf(bad))
				break;
		}
	}
	return worst;
}

#endif
