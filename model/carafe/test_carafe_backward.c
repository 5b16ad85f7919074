/* Checks the training entry points: every backward variant against the reference backward on the
 * shapes of carafe_test.h, with 1 and 3 threads; the float64 reference against the float32 one;
 * the threaded forward against the single-threaded one; and that invalid calls are refused.
 * Poisoned inputs check that taps outside the image are skipped as in the forward: NaN/Inf on the
 * feature borders reach only the mask gradients of the taps that read them, NaN in the masks of
 * taps outside the image reach nothing, and a NaN upstream gradient reaches only the pixels its
 * window covers (its out-of-image taps' mask gradients stay exactly 0). The reference itself is
 * checked against PyTorch's autograd of the definition by gradcheck (model/reference/tests).
 * Links libstardetr_carafe.so and uses only its exported entry points. Last line: "N passed, M failed". */
#include "carafe.h"
#include "carafe_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x853c49e6748fea9bull;

typedef struct case_data {
	int64_t n, c, h, w, g, k, ho, wo;
	float s;
	size_t nf, nm, no;
	float *feat, *mask, *gout;
} case_data;

static void fill(case_data *t, const carafe_shape *sh)
{
	t->n = sh->n, t->c = sh->c, t->h = sh->h, t->w = sh->w, t->g = sh->g, t->k = sh->k, t->s = sh->s;
	t->ho = carafe_out_size(sh->h, sh->s), t->wo = carafe_out_size(sh->w, sh->s);
	t->nf = (size_t)(t->n * t->c * t->h * t->w), t->nm = (size_t)(t->n * t->g * t->k * t->k * t->ho * t->wo);
	t->no = (size_t)(t->n * t->c * t->ho * t->wo);
	t->feat = malloc((t->nf + 1) * sizeof(float));
	t->mask = malloc((t->nm + 1) * sizeof(float));
	t->gout = malloc((t->no + 1) * sizeof(float));
	for (size_t i = 0; i < t->nf; i++)
		t->feat[i] = carafe_rnd(&rng_state);
	for (size_t i = 0; i < t->nm; i++)
		t->mask[i] = carafe_rnd(&rng_state);
	for (size_t i = 0; i < t->no; i++)
		t->gout[i] = carafe_rnd(&rng_state);
}

static void release(case_data *t) { free(t->feat), free(t->mask), free(t->gout); }

static int in_image(const case_data *t, int64_t p, int64_t size, int64_t tap)
{
	const int64_t src = (int64_t)floor((double)p / (double)t->s) + tap - (t->k - 1) / 2;
	return src >= 0 && src < size;
}

/* NaN/Inf on the feature borders, NaN in every mask value of a tap outside the image, and one
 * NaN upstream gradient per image at output pixel (0, wo-1), whose window crosses the border. */
static void poison(case_data *t)
{
	carafe_poison_border(t->feat, t->n, t->c, t->h, t->w);
	const int64_t k = t->k, howo = t->ho * t->wo;
	for (int64_t n = 0; n < t->n; n++)
		for (int64_t mc = 0; mc < t->g * k * k; mc++)
			for (int64_t ph = 0; ph < t->ho; ph++)
				for (int64_t pw = 0; pw < t->wo; pw++)
					if (!in_image(t, ph, t->h, mc / k % k) || !in_image(t, pw, t->w, mc % k))
						t->mask[(n * t->g * k * k + mc) * howo + ph * t->wo + pw] = NAN;
	if (howo && t->c)
		for (int64_t n = 0; n < t->n; n++)
			t->gout[(n * t->c + t->c - 1) * howo + t->wo - 1] = NAN;
}

static int backward(const char *variant, const case_data *t, const float *feat, const float *mask, const float *gout,
                    float *gf, float *gm, int threads, char *err, size_t err_len)
{
	return stardetr_carafe_backward(variant, feat, mask, gout, gf, gm, t->n, t->c, t->h, t->w, t->g, t->k, t->s,
	                                t->ho, t->wo, threads, err, err_len);
}

static float *absolute(const float *v, size_t count)
{
	float *a = malloc((count + 1) * sizeof(float));
	for (size_t i = 0; i < count; i++)
		a[i] = 1.0f + fabsf(v[i]);
	return a;
}

#define SHAPE_FMT "N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g%s"
#define SHAPE_ARGS(t, p)                                                                                               \
	(long long)(t)->n, (long long)(t)->c, (long long)(t)->h, (long long)(t)->w, (long long)(t)->g, (long long)(t)->k, \
	    (double)(t)->s, (p) ? " poisoned" : ""

static void compare(const carafe_shape *sh, int poisoned)
{
	case_data t;
	fill(&t, sh);
	if (poisoned)
		poison(&t);
	float *rf = malloc((t.nf + 1) * sizeof(float)), *rm = malloc((t.nm + 1) * sizeof(float));
	float *gf = malloc((t.nf + 1) * sizeof(float)), *gm = malloc((t.nm + 1) * sizeof(float));
	float *gf1 = malloc((t.nf + 1) * sizeof(float)), *gm1 = malloc((t.nm + 1) * sizeof(float));
	char err[256] = "";
	int rc = backward("reference", &t, t.feat, t.mask, t.gout, rf, rm, 1, err, sizeof err);
	check(rc == 0, "reference " SHAPE_FMT ": rc=%d %s", SHAPE_ARGS(&t, poisoned), rc, err);

	/* Bounds: the float32 error of a sum is relative to the sum of its terms' magnitudes, which is
	 * the reference backward of the inputs' absolute values (1 + that, for sums near 0). */
	float *mf = malloc((t.nf + 1) * sizeof(float)), *mm = malloc((t.nm + 1) * sizeof(float));
	{
		float *af = absolute(t.feat, t.nf), *am = absolute(t.mask, t.nm), *ag = absolute(t.gout, t.no);
		for (size_t i = 0; i < t.nf; i++)
			af[i] -= 1.0f;
		for (size_t i = 0; i < t.nm; i++)
			am[i] -= 1.0f;
		for (size_t i = 0; i < t.no; i++)
			ag[i] -= 1.0f;
		backward("reference", &t, af, am, ag, mf, mm, 1, err, sizeof err);
		for (size_t i = 0; i < t.nf; i++)
			mf[i] = 1.0f + (isfinite(mf[i]) ? mf[i] : 0.0f);
		for (size_t i = 0; i < t.nm; i++)
			mm[i] = 1.0f + (isfinite(mm[i]) ? mm[i] : 0.0f);
		free(af), free(am), free(ag);
	}

	if (poisoned) {
		/* The reference's own contract: a mask value NaN only where a tap outside the image is
		 * never read; a feature gradient non-finite only in the windows of the NaN gradient. */
		int ok = 1;
		const int64_t r = (t.k - 1) / 2;
		for (int64_t n = 0; n < t.n; n++)
			for (int64_t c = 0; c < t.c; c++)
				for (int64_t y = 0; y < t.h; y++)
					for (int64_t x = 0; x < t.w; x++) {
						/* the NaN gradient sits at output (0, wo-1) of channel C-1: source (0, (wo-1)/s) */
						const int64_t sx = (int64_t)floor((double)(t.wo - 1) / (double)t.s);
						const int reach = c == t.c - 1 && y <= r && x >= sx - r && x <= sx + r;
						ok &= (!isfinite(rf[((n * t.c + c) * t.h + y) * t.w + x])) == reach;
					}
		check(ok, "reference " SHAPE_FMT ": feature gradient non-finite exactly in the NaN gradient's window",
		      SHAPE_ARGS(&t, poisoned));
	}

	char names[128];
	snprintf(names, sizeof names, "%s,best", stardetr_carafe_variants());
	for (char *v = strtok(names, ","); v; v = strtok(NULL, ",")) {
		if (strcmp(v, "reference") == 0)
			continue;
		for (size_t i = 0; i < t.nf; i++)
			gf[i] = NAN; /* every element must be written */
		for (size_t i = 0; i < t.nm; i++)
			gm[i] = NAN;
		rc = backward(v, &t, t.feat, t.mask, t.gout, gf, gm, 1, err, sizeof err);
		size_t atf, atm;
		const double wf = carafe_mismatch(gf, rf, mf, t.nf, 0, 1e-5, &atf);
		const double wm = carafe_mismatch(gm, rm, mm, t.nm, 0, 1e-5, &atm);
		check(rc == 0 && wf <= 1 && wm <= 1,
		      "%s vs reference " SHAPE_FMT ": rc=%d %s gfeat worst/tol=%g at %zu (got %g, want %g), gmask worst/tol=%g "
		      "at %zu (got %g, want %g)",
		      v, SHAPE_ARGS(&t, poisoned), rc, err, wf, atf, t.nf ? (double)gf[atf] : 0.0,
		      t.nf ? (double)rf[atf] : 0.0, wm, atm, t.nm ? (double)gm[atm] : 0.0, t.nm ? (double)rm[atm] : 0.0);
		/* Threads split the same tasks: the same bits. */
		rc = backward(v, &t, t.feat, t.mask, t.gout, gf1, gm1, 3, err, sizeof err);
		const int same = rc == 0 && memcmp(gf, gf1, t.nf * sizeof(float)) == 0 &&
		                 memcmp(gm, gm1, t.nm * sizeof(float)) == 0;
		check(same, "%s " SHAPE_FMT ": 3 threads give other bits than 1 (rc=%d %s)", v, SHAPE_ARGS(&t, poisoned), rc,
		      err);
		/* One gradient alone is the same as both. */
		rc = backward(v, &t, t.feat, t.mask, t.gout, gf1, NULL, 2, err, sizeof err);
		int alone = rc == 0 && memcmp(gf, gf1, t.nf * sizeof(float)) == 0;
		rc = backward(v, &t, t.feat, t.mask, t.gout, NULL, gm1, 2, err, sizeof err);
		alone &= rc == 0 && memcmp(gm, gm1, t.nm * sizeof(float)) == 0;
		check(alone, "%s " SHAPE_FMT ": one gradient alone differs from both together", v, SHAPE_ARGS(&t, poisoned));
	}
	free(rf), free(rm), free(gf), free(gm), free(gf1), free(gm1), free(mf), free(mm);
	release(&t);
}

/* The float64 reference against the float32 one (the same loops). */
static void compare_f64(const carafe_shape *sh)
{
	case_data t;
	fill(&t, sh);
	double *f = malloc((t.nf + 1) * sizeof(double)), *m = malloc((t.nm + 1) * sizeof(double));
	double *g = malloc((t.no + 1) * sizeof(double)), *gf = malloc((t.nf + 1) * sizeof(double));
	double *gm = malloc((t.nm + 1) * sizeof(double));
	float *rf = malloc((t.nf + 1) * sizeof(float)), *rm = malloc((t.nm + 1) * sizeof(float));
	for (size_t i = 0; i < t.nf; i++)
		f[i] = t.feat[i];
	for (size_t i = 0; i < t.nm; i++)
		m[i] = t.mask[i];
	for (size_t i = 0; i < t.no; i++)
		g[i] = t.gout[i];
	char err[256] = "";
	int rc = stardetr_carafe_backward_f64(f, m, g, gf, gm, t.n, t.c, t.h, t.w, t.g, t.k, t.s, t.ho, t.wo, 2, err,
	                                      sizeof err);
	rc |= backward("reference", &t, t.feat, t.mask, t.gout, rf, rm, 1, err, sizeof err);
	double worst = 0;
	for (size_t i = 0; i < t.nf; i++)
		worst = fmax(worst, fabs(gf[i] - rf[i]));
	for (size_t i = 0; i < t.nm; i++)
		worst = fmax(worst, fabs(gm[i] - rm[i]));
	check(rc == 0 && worst < 1e-4, "float64 vs float32 reference " SHAPE_FMT ": rc=%d %s max|diff|=%g",
	      SHAPE_ARGS(&t, 0), rc, err, worst);
	free(f), free(m), free(g), free(gf), free(gm), free(rf), free(rm);
	release(&t);
}

/* The threaded forward computes the same tasks as stardetr_carafe_run: the same bits. */
static void forward_threads(const carafe_shape *sh)
{
	case_data t;
	fill(&t, sh);
	float *a = malloc((t.no + 1) * sizeof(float)), *b = malloc((t.no + 1) * sizeof(float));
	char err[256] = "";
	int rc = stardetr_carafe_run("best", t.feat, t.mask, a, t.n, t.c, t.h, t.w, t.g, t.k, t.s, t.ho, t.wo, err,
	                             sizeof err);
	rc |= stardetr_carafe_forward("best", t.feat, t.mask, b, t.n, t.c, t.h, t.w, t.g, t.k, t.s, t.ho, t.wo, 3, err,
	                              sizeof err);
	check(rc == 0 && memcmp(a, b, t.no * sizeof(float)) == 0, "forward with 3 threads " SHAPE_FMT ": rc=%d %s",
	      SHAPE_ARGS(&t, 0), rc, err);
	free(a), free(b);
	release(&t);
}

static void refuse(void)
{
	static float dummy[64];
	char err[256] = "";
	int rc = stardetr_carafe_backward("best", dummy, dummy, dummy, dummy, dummy, 1, 6, 5, 5, 4, 3, 2, 10, 10, 1, err,
	                                  sizeof err);
	check(rc == -2 && strstr(err, "C=6 must be divisible by attribute group_size=4"), "backward C %% G: rc=%d '%s'",
	      rc, err);
	rc = stardetr_carafe_backward("best", dummy, dummy, dummy, dummy, dummy, 1, 4, 5, 5, 1, 3, 2, 10, 9, 1, err,
	                              sizeof err);
	check(rc == -2 && strstr(err, "masks size 10x9"), "backward mask size: rc=%d '%s'", rc, err);
	rc = stardetr_carafe_backward("sse9", dummy, dummy, dummy, dummy, dummy, 1, 4, 5, 5, 1, 3, 2, 10, 10, 1, err,
	                              sizeof err);
	check(rc == -1 && strstr(err, "variant sse9 is not available"), "backward unknown variant: rc=%d '%s'", rc, err);
	rc = stardetr_carafe_backward_f64(NULL, NULL, NULL, NULL, NULL, 1, 4, 5, 5, 1, 4, 2, 10, 10, 1, err, sizeof err);
	check(rc == -2 && strstr(err, "kernel_size=4 must be odd"), "backward_f64 even k: rc=%d '%s'", rc, err);
	rc = stardetr_carafe_forward("best", dummy, dummy, dummy, 1, 4, 5, 5, 1, 3, 0.5f, 2, 2, 2, err, sizeof err);
	check(rc == -2 && strstr(err, "scale_factor=0.5 must be"), "forward scale < 1: rc=%d '%s'", rc, err);
}

int main(void)
{
	printf("libstardetr_carafe %s backward, variants: %s\n", stardetr_carafe_version(), stardetr_carafe_variants());
	carafe_shape shapes[80];
	size_t nshapes = carafe_test_shapes(shapes, 64);
	/* k=9 (more taps in a row than the gmask tile holds at once), odd band remainders, one pixel. */
	const carafe_shape extra[] = {{1, 6, 13, 11, 2, 9, 2}, {2, 5, 9, 7, 1, 9, 1}, {1, 3, 1, 1, 1, 3, 2},
	                              {1, 40, 17, 9, 1, 3, 2}, {1, 0, 5, 5, 1, 3, 2}, {0, 4, 5, 5, 1, 3, 2}};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
		shapes[nshapes++] = extra[i];
	for (int poisoned = 0; poisoned < 2; poisoned++)
		for (size_t i = 0; i < nshapes; i++)
			compare(&shapes[i], poisoned);
	for (size_t i = 0; i < nshapes; i++)
		if (shapes[i].c <= 64)
			compare_f64(&shapes[i]);
	for (size_t i = 0; i < nshapes; i++)
		forward_threads(&shapes[i]);
	refuse();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
