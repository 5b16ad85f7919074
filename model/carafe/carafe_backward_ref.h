/* The reference CARAFE backward: the definition in carafe.h written for clarity, with the
 * forward reference's loops (carafe_ref.c). carafe_backward.c includes it once per element
 * type (float, and double for PyTorch's gradcheck), with T, REF(x) (names the functions) and
 * REF_LINKAGE defined. Every optimised backward is tested against the float instance, and
 * gradcheck tests the double one against PyTorch's autograd of the definition. */

/* gfeat: one (n, c) plane per task; the plane gathers from every output pixel and tap that reads
 * it, taps outside the image skipped as in the forward. */
REF_LINKAGE void REF(feat_run)(const carafe_dims *d, const T *mask, const T *gout, T *gfeat, size_t task)
{
	const int64_t n = (int64_t)task / d->c, c = (int64_t)task % d->c;
	const int64_t k = d->k, r = (k - 1) / 2, g = c / (d->c / d->groups);
	T *gf = gfeat + (n * d->c + c) * d->h * d->w;
	for (int64_t i = 0; i < d->h * d->w; i++)
		gf[i] = 0;
	for (int64_t ph = 0; ph < d->ho; ph++) {
		const int64_t sh = carafe_src_index(ph, d);
		for (int64_t pw = 0; pw < d->wo; pw++) {
			const int64_t sw = carafe_src_index(pw, d);
			const T go = gout[((n * d->c + c) * d->ho + ph) * d->wo + pw];
			for (int64_t i = 0; i < k; i++) {
				const int64_t y = sh + i - r;
				if (y < 0 || y >= d->h)
					continue;
				for (int64_t j = 0; j < k; j++) {
					const int64_t x = sw + j - r;
					if (x < 0 || x >= d->w)
						continue;
					const int64_t mc = (g * k + i) * k + j;
					gf[y * d->w + x] += mask[((n * d->groups * k * k + mc) * d->ho + ph) * d->wo + pw] * go;
				}
			}
		}
	}
}

/* gmask: one output row (n, ph) per task; each pixel's tap is the dot product of the upstream
 * gradient and the tap's feature over the group's channels. */
REF_LINKAGE void REF(mask_run)(const carafe_dims *d, const T *feat, const T *gout, T *gmask, size_t task)
{
	const int64_t n = (int64_t)task / d->ho, ph = (int64_t)task % d->ho;
	const int64_t k = d->k, r = (k - 1) / 2, cpg = d->c / d->groups;
	const int64_t sh = carafe_src_index(ph, d);
	for (int64_t g = 0; g < d->groups; g++)
		for (int64_t i = 0; i < k; i++)
			for (int64_t j = 0; j < k; j++) {
				const int64_t mc = (g * k + i) * k + j, y = sh + i - r;
				T *gm = gmask + ((n * d->groups * k * k + mc) * d->ho + ph) * d->wo;
				for (int64_t pw = 0; pw < d->wo; pw++) {
					const int64_t x = carafe_src_index(pw, d) + j - r;
					T acc = 0;
					if (y >= 0 && y < d->h && x >= 0 && x < d->w)
						for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
							acc += gout[((n * d->c + c) * d->ho + ph) * d->wo + pw] *
							       feat[((n * d->c + c) * d->h + y) * d->w + x];
					gm[pw] = acc;
				}
			}
}
