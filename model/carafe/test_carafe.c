/* Checks every CPU variant the library offers against the reference on odd shapes (H != W,
 * odd sizes, channel counts that are not a multiple of any vector width or tile, G in
 * {1,2,4}, k in {1,3,5,7}, s in {1,2,3} and one non-integral s, N=2), plus the five
 * FreqFusion call shapes, and that invalid dimensions are refused. Links libstardetr_carafe.so
 * and uses only its exported entry points. Last line: "N passed, M failed". */
#include "carafe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) /* uniform in [-1, 1) */
{
	rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
	return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
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

static void compare(int64_t n, int64_t c, int64_t h, int64_t w, int64_t g, int64_t k, float s)
{
	const int64_t ho = (int64_t)floor((double)h * s), wo = (int64_t)floor((double)w * s);
	const size_t nf = (size_t)(n * c * h * w), nm = (size_t)(n * g * k * k * ho * wo), no = (size_t)(n * c * ho * wo);
	float *feat = malloc(nf * sizeof *feat), *mask = malloc(nm * sizeof *mask);
	float *ref = malloc(no * sizeof *ref), *got = malloc(no * sizeof *got);
	for (size_t i = 0; i < nf; i++)
		feat[i] = rnd();
	for (size_t i = 0; i < nm; i++)
		mask[i] = rnd();
	char err[256] = "";
	int rc = stardetr_carafe_run("reference", feat, mask, ref, n, c, h, w, g, k, s, ho, wo, err, sizeof err);
	check(rc == 0, "reference N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g: rc=%d %s", (long long)n, (long long)c,
	      (long long)h, (long long)w, (long long)g, (long long)k, (double)s, rc, err);
	char names[128];
	snprintf(names, sizeof names, "%s,best", stardetr_carafe_variants());
	for (char *v = strtok(names, ","); v; v = strtok(NULL, ",")) {
		if (strcmp(v, "reference") == 0)
			continue;
		for (size_t i = 0; i < no; i++)
			got[i] = NAN; /* every output element must be written */
		rc = stardetr_carafe_run(v, feat, mask, got, n, c, h, w, g, k, s, ho, wo, err, sizeof err);
		double worst = 0;
		size_t at = 0;
		for (size_t i = 0; i < no; i++) {
			const double d = fabs((double)got[i] - (double)ref[i]);
			if (!(d <= worst)) {
				worst = isnan(d) ? INFINITY : d;
				at = i;
				if (isnan(d))
					break;
			}
		}
		check(rc == 0 && worst <= 1e-5,
		      "%s vs reference N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g: rc=%d max|diff|=%g at %zu", v,
		      (long long)n, (long long)c, (long long)h, (long long)w, (long long)g, (long long)k, (double)s, rc,
		      worst, at);
	}
	free(feat), free(mask), free(ref), free(got);
}

static void refuse(const char *what, int64_t c, int64_t h, int64_t w, int64_t g, int64_t k, float s, int64_t ho,
                   int64_t wo, const char *needle)
{
	static float dummy[64]; /* never read: the dimensions are refused first */
	char err[256] = "";
	const int rc = stardetr_carafe_run("best", dummy, dummy, dummy, 1, c, h, w, g, k, s, ho, wo, err, sizeof err);
	check(rc == -2 && strstr(err, needle) != NULL, "%s: want rc=-2 and an error naming '%s', got rc=%d '%s'", what,
	      needle, rc, err);
}

int main(void)
{
	printf("libstardetr_carafe %s, variants: %s\n", stardetr_carafe_version(), stardetr_carafe_variants());
	check(strcmp(stardetr_carafe_version(), STARDETR_CARAFE_VERSION) == 0, "version %s", stardetr_carafe_version());

	static const int64_t groups[] = {1, 2, 4}, ks[] = {1, 3, 5, 7}, ss[] = {1, 2, 3};
	static const int64_t cpgs[] = {13, 5, 9, 3}, hs[] = {7, 5, 12, 1, 9}, ws[] = {11, 3, 9, 6, 17};
	int combo = 0;
	for (size_t gi = 0; gi < 3; gi++)
		for (size_t ki = 0; ki < 4; ki++)
			for (size_t si = 0; si < 3; si++, combo++)
				compare(2, groups[gi] * cpgs[combo % 4], hs[combo % 5], ws[combo % 5], groups[gi], ks[ki],
				        (float)ss[si]);
	compare(2, 13, 7, 10, 1, 5, 1.5f); /* non-integral scale: floor(p / s) */
	compare(2, 6, 5, 8, 2, 3, 2.5f);
	/* The FreqFusion call shapes at 640 input, P4 level (lr 20x20, hr 40x40). */
	compare(1, 64, 40, 40, 1, 3, 1);
	compare(1, 25, 20, 20, 1, 5, 2);
	compare(1, 9, 20, 20, 1, 5, 2);
	compare(1, 256, 20, 20, 1, 5, 2);
	compare(1, 256, 40, 40, 1, 3, 1);

	refuse("even kernel_size", 4, 5, 5, 1, 4, 2, 10, 10, "kernel_size=4 must be odd");
	refuse("C %% G", 6, 5, 5, 4, 3, 2, 10, 10, "C=6 must be divisible by attribute group_size=4");
	refuse("mask size", 4, 5, 5, 1, 3, 2, 10, 9, "masks size 10x9 must equal features size 5x5 times");
	refuse("scale < 1", 4, 5, 5, 1, 3, 0.5f, 2, 2, "scale_factor=0.5 must be");

	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
