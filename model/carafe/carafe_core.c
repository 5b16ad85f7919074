/* Dimension checks, variant selection and the exported C entry points. */
#include "carafe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int carafe_check_attrs(int64_t groups, int64_t k, float scale, char *msg, size_t msg_len)
{
	if (k < 1 || k % 2 == 0) {
		snprintf(msg, msg_len, "attribute kernel_size=%lld must be odd and >= 1 (1, 3, 5, 7, ...)", (long long)k);
		return 1;
	}
	if (groups < 1) {
		snprintf(msg, msg_len, "attribute group_size=%lld must be >= 1", (long long)groups);
		return 1;
	}
	if (!(scale >= 1.0f) || !isfinite(scale)) {
		snprintf(msg, msg_len, "attribute scale_factor=%g must be a finite number >= 1", (double)scale);
		return 1;
	}
	return 0;
}

int carafe_dims_init(carafe_dims *d, int64_t n, int64_t c, int64_t h, int64_t w, int64_t mask_c,
                     int64_t ho, int64_t wo, int64_t groups, int64_t k, float scale, char *msg, size_t msg_len)
{
	if (carafe_check_attrs(groups, k, scale, msg, msg_len))
		return 1;
	if (n < 0 || c < 0 || h < 0 || w < 0 || mask_c < 0 || ho < 0 || wo < 0) {
		snprintf(msg, msg_len, "negative dimension");
		return 1;
	}
	if (c % groups != 0) {
		snprintf(msg, msg_len, "features channels C=%lld must be divisible by attribute group_size=%lld (C %% G == 0)",
		         (long long)c, (long long)groups);
		return 1;
	}
	if (mask_c != groups * k * k) {
		snprintf(msg, msg_len,
		         "masks channels=%lld must equal group_size*kernel_size*kernel_size = %lld*%lld*%lld = %lld",
		         (long long)mask_c, (long long)groups, (long long)k, (long long)k, (long long)(groups * k * k));
		return 1;
	}
	const int64_t eh = (int64_t)floor((double)h * scale), ew = (int64_t)floor((double)w * scale);
	if (ho != eh || wo != ew) {
		snprintf(msg, msg_len,
		         "masks size %lldx%lld must equal features size %lldx%lld times attribute scale_factor=%g (%lldx%lld)",
		         (long long)ho, (long long)wo, (long long)h, (long long)w, (double)scale, (long long)eh, (long long)ew);
		return 1;
	}
	d->n = n, d->c = c, d->h = h, d->w = w, d->ho = ho, d->wo = wo;
	d->groups = groups, d->k = k, d->scale = scale;
	d->int_scale = (scale == floorf(scale) && scale <= 64.0f) ? (int)scale : 0;
	return 0;
}

#if defined(__x86_64__)
static int cpu_has_avx2_fma(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

const carafe_variant *carafe_find_variant(const char *name)
{
	if (strcmp(name, "best") == 0)
		return carafe_best_variant();
	if (strcmp(name, "reference") == 0)
		return &carafe_variant_reference;
	if (strcmp(name, "generic") == 0)
		return &carafe_variant_generic;
#if defined(__x86_64__)
	if (strcmp(name, "avx2") == 0)
		return cpu_has_avx2_fma() ? &carafe_variant_avx2 : NULL;
#endif
#if defined(__aarch64__)
	if (strcmp(name, "neon") == 0)
		return &carafe_variant_neon; /* Advanced SIMD is mandatory on AArch64 */
#endif
	return NULL;
}

const carafe_variant *carafe_best_variant(void)
{
#if defined(__x86_64__)
	if (cpu_has_avx2_fma())
		return &carafe_variant_avx2;
#endif
#if defined(__aarch64__)
	return &carafe_variant_neon;
#endif
	return &carafe_variant_generic;
}

const char *stardetr_carafe_version(void) { return STARDETR_CARAFE_VERSION; }

const char *stardetr_carafe_variants(void)
{
#if defined(__x86_64__)
	return cpu_has_avx2_fma() ? "reference,generic,avx2" : "reference,generic";
#elif defined(__aarch64__)
	return "reference,generic,neon";
#else
	return "reference,generic";
#endif
}

int stardetr_carafe_run(const char *variant, const float *feat, const float *mask, float *out, int64_t n,
                        int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k, float scale, int64_t ho,
                        int64_t wo, char *err, size_t err_len)
{
	char buf[256];
	const carafe_variant *v = carafe_find_variant(variant ? variant : "best");
	if (!v) {
		if (err)
			snprintf(err, err_len, "variant %s is not available (have %s)", variant, stardetr_carafe_variants());
		return -1;
	}
	carafe_dims d;
	if (carafe_dims_init(&d, n, c, h, w, groups * k * k, ho, wo, groups, k, scale, buf, sizeof buf)) {
		if (err)
			snprintf(err, err_len, "%s", buf);
		return -2;
	}
	const size_t tasks = v->tasks(&d);
	for (size_t t = 0; t < tasks; t++)
		v->run(&d, feat, mask, out, t);
	return 0;
}
