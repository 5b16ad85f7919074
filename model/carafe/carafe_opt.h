/* The optimised CPU CARAFE, written once over a small vector vocabulary. Each variant file
 * defines the vocabulary and includes this:
 *   VEC, VL (lanes), V_ZERO(), V_LOAD(p) (unaligned), V_FMA(acc, a, b) = acc + a*b, V_STORE(p, v),
 *   OPT(x) (names this variant's symbols), CB_S1 / CB_S2 (channels per tile for s=1 / s=2).
 *
 * Layout of the work (integral scale s; other scales use the reference):
 * - A task is a band of source rows of one image and a chunk of one group's channels; source
 *   row sh produces output rows sh*s .. sh*s+s-1.
 * - Each feature row a task touches is widened once into U, a zero-padded copy upsampled by
 *   s along x: U[t] = feat[y][(t - s*r) / s]. Tap (i,j) of output pixel pw then reads
 *   U_i[pw + s*j], so every tap is a contiguous vector load whatever s is, and the image
 *   border costs nothing (its taps read zeros; out-of-range rows are skipped).
 * - Mask values are shared by the channels of a group: a tile keeps CB channels (and for
 *   s=2 both output rows) of accumulators in registers, loads each mask vector once and
 *   reuses it across those channels; the U vector loaded for a channel serves both rows. */
#include "carafe.h"

#include <stdlib.h>
#include <string.h>

/* V_PIN(v) may keep a loaded vector in a register: without it GCC folds the one U load into
 * every FMA that uses it, loading it once per output row. */
#ifndef V_PIN
#define V_PIN(v) ((void)0)
#endif

#define OPT_CAT3(a, b, c) a##b##_##c
#define OPT_TILE_NAME(r, c) OPT_CAT3(tile_, r, c)
#define OPT_TILE(r, c) OPT(OPT_TILE_NAME(r, c))

#define TILE_ROWS 1
#define TILE_CB 1
#include "carafe_opt_tile.h"
#define TILE_ROWS 1
#define TILE_CB 4
#include "carafe_opt_tile.h"
#define TILE_ROWS 1
#define TILE_CB CB_S1
#include "carafe_opt_tile.h"
#define TILE_ROWS 2
#define TILE_CB 1
#include "carafe_opt_tile.h"
#define TILE_ROWS 2
#define TILE_CB 4
#include "carafe_opt_tile.h"
#if CB_S2 != 4
#define TILE_ROWS 2
#define TILE_CB CB_S2
#include "carafe_opt_tile.h"
#endif

/* A task covers OPT_BAND source rows of one image and up to OPT_CHUNK channels of one group:
 * the band lets each widened row serve every output row whose window covers it (built once per
 * band, not k times), and the channel chunks give the thread pool enough tasks. */
#define OPT_BAND 8
#define OPT_CHUNK 32

static size_t OPT(tasks)(const carafe_dims *d)
{
	if (!d->int_scale)
		return carafe_ref_tasks(d);
	const int64_t cpg = d->c / d->groups;
	return (size_t)(d->n * ((d->h + OPT_BAND - 1) / OPT_BAND) * d->groups * ((cpg + OPT_CHUNK - 1) / OPT_CHUNK));
}

#define OPT_CB_MAX (CB_S1 > CB_S2 ? CB_S1 : CB_S2)

/* Widens source row src (w values) into dst: pad zeros, each value repeated s times, zeros up to us. */
static inline void OPT(widen)(float *dst, const float *src, int64_t w, int s, int64_t pad, int64_t us)
{
	memset(dst, 0, sizeof(float) * (size_t)pad);
	float *o = dst + pad;
	if (s == 1) {
		memcpy(o, src, sizeof(float) * (size_t)w);
	} else if (s == 2) {
		for (int64_t x = 0; x < w; x++)
			o[2 * x] = o[2 * x + 1] = src[x];
	} else {
		for (int64_t x = 0; x < w; x++)
			for (int q = 0; q < s; q++)
				o[x * s + q] = src[x];
	}
	memset(o + w * s, 0, sizeof(float) * (size_t)(us - pad - w * s));
}

static void OPT(run)(const carafe_dims *d, const float *feat, const float *mask, float *out, size_t task)
{
	if (!d->int_scale) {
		carafe_ref_run(d, feat, mask, out, task);
		return;
	}
	const int s = d->int_scale, k = (int)d->k, r = (k - 1) / 2;
	const int64_t h = d->h, w = d->w, ho = d->ho, wo = d->wo, howo = ho * wo;
	const int64_t pad = (int64_t)s * r, us = wo + 2 * pad;
	const int64_t cpg = d->c / d->groups, nchunks = (cpg + OPT_CHUNK - 1) / OPT_CHUNK;
	const int64_t nbands = (h + OPT_BAND - 1) / OPT_BAND;
	int64_t t = (int64_t)task;
	const int64_t chunk = t % nchunks;
	t /= nchunks;
	const int64_t g = t % d->groups;
	t /= d->groups;
	const int64_t band = t % nbands, n = t / nbands;
	const int64_t y0 = band * OPT_BAND, y1 = y0 + OPT_BAND < h ? y0 + OPT_BAND : h;
	const int64_t c_begin = g * cpg + chunk * OPT_CHUNK;
	const int64_t c_end = c_begin + OPT_CHUNK < (g + 1) * cpg ? c_begin + OPT_CHUNK : (g + 1) * cpg;
	/* Window rows y0-r .. y1+r-1; row u holds source row y0-r+u (rows outside the image are never read). */
	const int64_t urows = y1 - y0 + 2 * r, ucs = urows * us;
	const int64_t ylo = y0 - r > 0 ? y0 - r : 0, yhi = y1 + r < h ? y1 + r : h;

	float *U = malloc(sizeof(float) * (size_t)(OPT_CB_MAX * ucs));
	if (!U) { /* out of memory: still produce the right answer, one output row at a time */
		for (int64_t sh = y0; sh < y1; sh++)
			for (int q = 0; q < s; q++)
				carafe_ref_run(d, feat, mask, out, (size_t)(n * ho + sh * s + q));
		return;
	}
	const float *mg = mask + ((n * d->groups + g) * k * k) * howo;
	for (int64_t c0 = c_begin; c0 < c_end;) {
		const int64_t left = c_end - c0;
		const int cmax = s == 2 ? CB_S2 : CB_S1;
		const int cb = left >= cmax ? cmax : left >= 4 ? 4 : 1;
		for (int ch = 0; ch < cb; ch++)
			for (int64_t y = ylo; y < yhi; y++)
				OPT(widen)(U + ch * ucs + (y - y0 + r) * us, feat + ((n * d->c + c0 + ch) * h + y) * w, w, s, pad,
				           us);
		for (int64_t sh = y0; sh < y1; sh++) {
			const int i0 = sh < r ? (int)(r - sh) : 0;
			const int i1 = (h - sh + r) < k ? (int)(h - sh + r) : k;
			const float *Us = U + (sh - y0) * us; /* window row i of centre sh is u = sh-y0+i */
			const float *ms = mg + sh * s * wo;
			float *ob = out + ((n * d->c + c0) * ho + sh * s) * wo;
			if (s == 2) {
				if (cb == CB_S2)
					OPT_TILE(2, CB_S2)(Us, ucs, us, k, s, i0, i1, ms, howo, wo, ob, howo);
				else if (cb == 4)
					OPT_TILE(2, 4)(Us, ucs, us, k, s, i0, i1, ms, howo, wo, ob, howo);
				else
					OPT_TILE(2, 1)(Us, ucs, us, k, s, i0, i1, ms, howo, wo, ob, howo);
			} else {
				for (int q = 0; q < s; q++) {
					const float *mq = ms + q * wo;
					float *oq = ob + q * wo;
					if (cb == CB_S1)
						OPT_TILE(1, CB_S1)(Us, ucs, us, k, s, i0, i1, mq, howo, wo, oq, howo);
					else if (cb == 4)
						OPT_TILE(1, 4)(Us, ucs, us, k, s, i0, i1, mq, howo, wo, oq, howo);
					else
						OPT_TILE(1, 1)(Us, ucs, us, k, s, i0, i1, mq, howo, wo, oq, howo);
				}
			}
		}
		c0 += cb;
	}
	free(U);
}
