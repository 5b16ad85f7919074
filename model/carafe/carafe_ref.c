/* The reference CARAFE: the definition, written for clarity. Every other variant is tested
 * against it, and it is tested against an independent numpy implementation. */
#include "carafe.h"

#include <math.h>

int64_t carafe_src_index(int64_t p, const carafe_dims *d)
{
	if (d->int_scale > 0)
		return p / d->int_scale;
	return (int64_t)floor((double)p / (double)d->scale);
}

size_t carafe_ref_tasks(const carafe_dims *d) { return (size_t)(d->n * d->ho); }

void carafe_ref_run(const carafe_dims *d, const float *feat, const float *mask, float *out, size_t task)
{
	const int64_t n = (int64_t)task / d->ho, ph = (int64_t)task % d->ho;
	const int64_t k = d->k, r = (k - 1) / 2, cpg = d->c / d->groups;
	const int64_t sh = carafe_src_index(ph, d);
	for (int64_t c = 0; c < d->c; c++) {
		const int64_t g = c / cpg;
		for (int64_t pw = 0; pw < d->wo; pw++) {
			const int64_t sw = carafe_src_index(pw, d);
			float acc = 0.0f;
			for (int64_t i = 0; i < k; i++) {
				const int64_t y = sh + i - r;
				if (y < 0 || y >= d->h)
					continue;
				for (int64_t j = 0; j < k; j++) {
					const int64_t x = sw + j - r;
					if (x < 0 || x >= d->w)
						continue;
					const int64_t mc = (g * k + i) * k + j;
					const float m = mask[((n * d->groups * k * k + mc) * d->ho + ph) * d->wo + pw];
					acc += m * feat[((n * d->c + c) * d->h + y) * d->w + x];
				}
			}
			out[((n * d->c + c) * d->ho + ph) * d->wo + pw] = acc;
		}
	}
}

const carafe_variant carafe_variant_reference = {"reference", carafe_ref_tasks, carafe_ref_run};
