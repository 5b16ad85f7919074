/* Checks every CPU variant the library offers against the reference on the shapes of
 * carafe_test.h, again with NaN and Inf on the feature planes' borders (taps outside the image
 * are skipped, so they reach only the outputs whose window covers them), the border case of
 * issue 17 by value, and that invalid dimensions are refused. Links libstardetr_carafe.so and
 * uses only its exported entry points. Last line: "N passed, M failed". */
#include "carafe.h"
#include "carafe_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rnd(void) { return carafe_rnd(&rng_state); }


static void compare(int64_t n, int64_t c, int64_t h, int64_t w, int64_t g, int64_t k, float s, int poison)
{
	const int64_t ho = carafe_out_size(h, s), wo = carafe_out_size(w, s);
	const size_t nf = (size_t)(n * c * h * w), nm = (size_t)(n * g * k * k * ho * wo), no = (size_t)(n * c * ho * wo);
	float *feat = malloc(nf * sizeof *feat), *mask = malloc(nm * sizeof *mask);
	float *ref = malloc(no * sizeof *ref), *got = malloc(no * sizeof *got);
	for (size_t i = 0; i < nf; i++)
		feat[i] = rnd();
	for (size_t i = 0; i < nm; i++)
		mask[i] = rnd();
	if (poison)
		carafe_poison_border(feat, n, c, h, w);
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
		size_t at;
		const double worst = carafe_mismatch(got, ref, NULL, no, 1e-5, 0, &at);
		check(rc == 0 && worst <= 1,
		      "%s vs reference N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g%s: rc=%d max|diff|/1e-5=%g at %zu "
		      "(got %g, want %g)",
		      v, (long long)n, (long long)c, (long long)h, (long long)w, (long long)g, (long long)k, (double)s,
		      poison ? " NaN/Inf border" : "", rc, worst, at, (double)got[at], (double)ref[at]);
	}
	free(feat), free(mask), free(ref), free(got);
}

/* Issue 17's case by value: N=C=G=1, 8x8, k=3, s=2, masks 1/9, features 1 except a NaN at
 * (0,0). Output (0,8) reads source rows -1..1 (row -1 is outside) and columns 3..5: six taps of
 * 1/9, so 2/3; every output whose window covers (0,0) (rows and columns 0..3) is NaN. */
static void nan_corner(void)
{
	float feat[64], mask[9 * 256], out[256];
	for (int i = 0; i < 64; i++)
		feat[i] = 1.0f;
	feat[0] = NAN;
	for (int i = 0; i < 9 * 256; i++)
		mask[i] = 1.0f / 9.0f;
	char names[128];
	snprintf(names, sizeof names, "%s", stardetr_carafe_variants());
	for (char *v = strtok(names, ","); v; v = strtok(NULL, ",")) {
		char err[256] = "";
		const int rc = stardetr_carafe_run(v, feat, mask, out, 1, 1, 8, 8, 1, 3, 2, 16, 16, err, sizeof err);
		int nan_ok = 1;
		for (int ph = 0; ph < 16; ph++)
			for (int pw = 0; pw < 16; pw++)
				nan_ok &= isnan(out[ph * 16 + pw]) == (ph < 4 && pw < 4);
		check(rc == 0 && fabsf(out[8] - 6.0f / 9.0f) <= 1e-6f && nan_ok,
		      "%s: NaN at feat[0,0,0,0]: out[0,0,0,8]=%g, want 0.667; NaN exactly where the window covers it: %s", v,
		      (double)out[8], nan_ok ? "yes" : "no");
	}
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

	carafe_shape shapes[64];
	const size_t nshapes = carafe_test_shapes(shapes, 64);
	for (int poison = 0; poison < 2; poison++)
		for (size_t i = 0; i < nshapes; i++)
			compare(shapes[i].n, shapes[i].c, shapes[i].h, shapes[i].w, shapes[i].g, shapes[i].k, shapes[i].s, poison);
	nan_corner();

	refuse("even kernel_size", 4, 5, 5, 1, 4, 2, 10, 10, "kernel_size=4 must be odd");
	refuse("C %% G", 6, 5, 5, 4, 3, 2, 10, 10, "C=6 must be divisible by attribute group_size=4");
	refuse("mask size", 4, 5, 5, 1, 3, 2, 10, 9, "masks size 10x9 must equal features size 5x5 times");
	refuse("scale < 1", 4, 5, 5, 1, 3, 0.5f, 2, 2, "scale_factor=0.5 must be");

	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
