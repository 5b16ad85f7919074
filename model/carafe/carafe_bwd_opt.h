/* The optimised CPU CARAFE backward, over the vector vocabulary of carafe_opt.h (VEC, VL,
 * V_ZERO, V_LOAD, V_FMA, V_STORE, OPT, CB_S1): a variant file includes carafe_opt.h first, then
 * this, and reuses the forward's OPT(widen). Integral scale factors only; the others use the
 * reference backward (carafe_backward_ref.h), which every variant here is tested against.
 *
 * gmask: a task is a band of source rows of one image and group. Each feature row the band's
 * windows touch is widened as in the forward (U[pw + s*j] is tap j of output pixel pw), a chunk of
 * channels at a time; for one output row and tap row, the accumulators of up to 7 taps stay in
 * registers while the chunk's channels stream through (one U load per FMA), and the band's rows
 * of gmask (L2-resident) collect the chunks. Taps outside the image read the widened rows' zero
 * padding and are set to exactly 0 afterwards, as the reference skips them.
 *
 * gfeat: the reassembly transposed as a gather, so tasks (a band of source rows, a chunk of one
 * group's channels) write disjoint rows and need no atomics. Source pixel x of row y receives
 * from output pixels pw = s*x + b + s*(r-j) of the rows (y-i+r)*s + a; with the masks and the
 * upstream gradient copied into zero-padded rows, V[T] = sum over i, a, j of
 * mask[tap(i,j), row(i,a), T + s*(r-j)] * gout[c, row(i,a), T + s*(r-j)] is one contiguous load
 * of each per FMA for every column T, and gfeat[y, x] = sum over b < s of V[s*x + b]. A tile keeps
 * CB channels of V in registers, so each mask vector is loaded once per CB channels. */
#include "carafe.h"

#include <string.h>

#define OPT_BWD_BAND 4   /* gmask task: source rows */
#define OPT_BWD_CHUNK 32 /* gmask: channels widened at a time; gfeat: channels per task */
#define OPT_BWD_FBAND 8  /* gfeat task: source rows */
#define OPT_BWD_JMAX 7   /* gmask: taps of one tap row kept in registers at a time */

#define OPT_BWD_MTILE(j) OPT(CARAFE_CAT(bwd_mtile_, j))
#define OPT_BWD_FTILE(c) OPT(CARAFE_CAT(bwd_ftile_, c))

#define TILE_J 1
#include "carafe_bwd_tile.h"
#define TILE_J 2
#include "carafe_bwd_tile.h"
#define TILE_J 3
#include "carafe_bwd_tile.h"
#define TILE_J 4
#include "carafe_bwd_tile.h"
#define TILE_J 5
#include "carafe_bwd_tile.h"
#define TILE_J 6
#include "carafe_bwd_tile.h"
#define TILE_J 7
#include "carafe_bwd_tile.h"

#define TILE_CB 1
#include "carafe_bwd_tile.h"
#define TILE_CB 4
#include "carafe_bwd_tile.h"
#if CB_S1 != 4
#define TILE_CB CB_S1
#include "carafe_bwd_tile.h"
#endif

typedef void (*OPT(bwd_mtile_fn))(const float *U, int64_t ucs, int s, int64_t cb, const float *go, int64_t gchan,
                                  float *gm, int64_t mtap, int64_t wo);

static size_t OPT(bwd_mask_tasks)(const carafe_dims *d)
{
	if (!d->int_scale)
		return carafe_bwd_ref_mask_tasks(d);
	return (size_t)(d->n * d->groups * ((d->h + OPT_BWD_BAND - 1) / OPT_BWD_BAND));
}

static size_t OPT(bwd_mask_scratch)(const carafe_dims *d)
{
	if (!d->int_scale)
		return 0;
	const int64_t r = (d->k - 1) / 2, us = d->wo + 2 * d->int_scale * r;
	return (size_t)(OPT_BWD_CHUNK * ((OPT_BWD_BAND + 2 * r) * us + d->wo));
}

static void OPT(bwd_mask_run)(const carafe_dims *d, const float *feat, const float *gout, float *gmask, size_t task,
                              float *U)
{
	if (!d->int_scale) {
		carafe_bwd_ref_mask_run(d, feat, gout, gmask, task, U);
		return;
	}
	static const OPT(bwd_mtile_fn) tiles[OPT_BWD_JMAX + 1] = {
		NULL,           OPT_BWD_MTILE(1), OPT_BWD_MTILE(2), OPT_BWD_MTILE(3),
		OPT_BWD_MTILE(4), OPT_BWD_MTILE(5), OPT_BWD_MTILE(6), OPT_BWD_MTILE(7),
	};
	const int s = d->int_scale, k = (int)d->k, r = (k - 1) / 2;
	const int64_t h = d->h, w = d->w, ho = d->ho, wo = d->wo, howo = ho * wo, kk = (int64_t)k * k;
	const int64_t pad = (int64_t)s * r, us = wo + 2 * pad, cpg = d->c / d->groups;
	const int64_t nbands = (h + OPT_BWD_BAND - 1) / OPT_BWD_BAND;
	const int64_t band = (int64_t)task % nbands, g = (int64_t)task / nbands % d->groups;
	const int64_t n = (int64_t)task / nbands / d->groups;
	const int64_t y0 = band * OPT_BWD_BAND, y1 = y0 + OPT_BWD_BAND < h ? y0 + OPT_BWD_BAND : h;
	const int64_t ucs = (y1 - y0 + 2 * r) * us;
	/* One output row of the chunk's upstream gradients, packed: in gout they are Ho*Wo apart, often
	 * a multiple of 4 KiB, and 32 such rows would share a set of the L1 cache. */
	float *gb = U + OPT_BWD_CHUNK * ucs;
	const int64_t ylo = y0 - r > 0 ? y0 - r : 0, yhi = y1 + r < h ? y1 + r : h;
	float *gm = gmask + (n * d->groups + g) * kk * howo;

	for (int64_t t = 0; t < kk; t++)
		memset(gm + t * howo + y0 * s * wo, 0, sizeof(float) * (size_t)((y1 - y0) * s * wo));
	for (int64_t c0 = g * cpg; c0 < (g + 1) * cpg; c0 += OPT_BWD_CHUNK) {
		const int64_t cb = (g + 1) * cpg - c0 < OPT_BWD_CHUNK ? (g + 1) * cpg - c0 : OPT_BWD_CHUNK;
		for (int64_t ch = 0; ch < cb; ch++)
			for (int64_t y = ylo; y < yhi; y++)
				OPT(widen)(U + ch * ucs + (y - y0 + r) * us, feat + ((n * d->c + c0 + ch) * h + y) * w, w, s, pad, us);
		for (int64_t sh = y0; sh < y1; sh++) {
			const int i0 = sh < r ? (int)(r - sh) : 0, i1 = h - sh + r < k ? (int)(h - sh + r) : k;
			for (int q = 0; q < s; q++) {
				const int64_t ph = sh * s + q;
				const float *go = gout + ((n * d->c + c0) * ho + ph) * wo;
				for (int64_t ch = 0; ch < cb; ch++)
					memcpy(gb + ch * wo, go + ch * howo, sizeof(float) * (size_t)wo);
				for (int i = i0; i < i1; i++) {
					const float *ui = U + (sh - y0 + i) * us;
					for (int j0 = 0; j0 < k; j0 += OPT_BWD_JMAX) {
						const int jn = k - j0 < OPT_BWD_JMAX ? k - j0 : OPT_BWD_JMAX;
						tiles[jn](ui + (int64_t)s * j0, ucs, s, cb, gb, wo, gm + (i * k + j0) * howo + ph * wo,
						          howo, wo);
					}
				}
			}
		}
	}
	/* Taps left or right of the image read the zero padding; the reference skips them, so they
	 * are exactly 0 (a non-finite upstream gradient must not leave NaN there). Tap column j of
	 * output pixel pw reads x = pw/s + j - r. */
	for (int64_t ph = y0 * s; ph < y1 * s; ph++)
		for (int64_t t = 0; t < kk; t++) {
			const int64_t j = t % k;
			float *row = gm + t * howo + ph * wo;
			const int64_t left = j < r ? (r - j) * s : 0, right = (w + r - j) * s;
			for (int64_t pw = 0; pw < left && pw < wo; pw++)
				row[pw] = 0.0f;
			for (int64_t pw = right > 0 ? right : 0; pw < wo; pw++)
				row[pw] = 0.0f;
		}
}

static size_t OPT(bwd_feat_tasks)(const carafe_dims *d)
{
	if (!d->int_scale)
		return carafe_bwd_ref_feat_tasks(d);
	const int64_t cpg = d->c / d->groups;
	return (size_t)(d->n * ((d->h + OPT_BWD_FBAND - 1) / OPT_BWD_FBAND) * d->groups *
	                ((cpg + OPT_BWD_CHUNK - 1) / OPT_BWD_CHUNK));
}

/* Padded row width and the rows of a gfeat task's buffers. */
static inline int64_t OPT(bwd_feat_wr)(const carafe_dims *d) { return (d->wo + VL - 1) / VL * VL; }

static size_t OPT(bwd_feat_scratch)(const carafe_dims *d)
{
	if (!d->int_scale)
		return 0;
	const int64_t r = (d->k - 1) / 2, s = d->int_scale, wr = OPT(bwd_feat_wr)(d), wp = wr + 2 * s * r;
	const int64_t rows = (OPT_BWD_FBAND + 2 * r) * s;
	return (size_t)((d->k * d->k + CB_S1) * rows * wp + CB_S1 * wr);
}

static void OPT(bwd_feat_run)(const carafe_dims *d, const float *mask, const float *gout, float *gfeat, size_t task,
                              float *scratch)
{
	if (!d->int_scale) {
		carafe_bwd_ref_feat_run(d, mask, gout, gfeat, task, scratch);
		return;
	}
	const int s = d->int_scale, k = (int)d->k, r = (k - 1) / 2;
	const int64_t h = d->h, w = d->w, ho = d->ho, wo = d->wo, howo = ho * wo, kk = (int64_t)k * k;
	const int64_t pl = (int64_t)s * r, wr = OPT(bwd_feat_wr)(d), wp = wr + 2 * pl;
	const int64_t cpg = d->c / d->groups, nchunks = (cpg + OPT_BWD_CHUNK - 1) / OPT_BWD_CHUNK;
	const int64_t nbands = (h + OPT_BWD_FBAND - 1) / OPT_BWD_FBAND;
	int64_t t = (int64_t)task;
	const int64_t chunk = t % nchunks;
	t /= nchunks;
	const int64_t g = t % d->groups;
	t /= d->groups;
	const int64_t band = t % nbands, n = t / nbands;
	const int64_t y0 = band * OPT_BWD_FBAND, y1 = y0 + OPT_BWD_FBAND < h ? y0 + OPT_BWD_FBAND : h;
	const int64_t c_begin = g * cpg + chunk * OPT_BWD_CHUNK;
	const int64_t c_end = c_begin + OPT_BWD_CHUNK < (g + 1) * cpg ? c_begin + OPT_BWD_CHUNK : (g + 1) * cpg;
	/* Output rows whose windows reach the band: those of source rows slo .. shi-1. */
	const int64_t slo = y0 - r > 0 ? y0 - r : 0, shi = y1 + r < h ? y1 + r : h;
	const int64_t rows = (shi - slo) * s, plane = rows * wp;
	float *mp = scratch, *gp = mp + kk * plane, *v = gp + CB_S1 * plane;

	/* mp[t][row][pl + pw] = mask[tap t, output row slo*s + row, pw], zero outside 0 <= pw < wo. */
	const float *mg = mask + (n * d->groups + g) * kk * howo + slo * s * wo;
	for (int64_t tp = 0; tp < kk; tp++)
		for (int64_t ro = 0; ro < rows; ro++) {
			float *dst = mp + tp * plane + ro * wp;
			memset(dst, 0, sizeof(float) * (size_t)pl);
			memcpy(dst + pl, mg + tp * howo + ro * wo, sizeof(float) * (size_t)wo);
			memset(dst + pl + wo, 0, sizeof(float) * (size_t)(wp - pl - wo));
		}
	for (int64_t c0 = c_begin; c0 < c_end;) {
		const int64_t left = c_end - c0;
		const int cb = left >= CB_S1 ? CB_S1 : left >= 4 ? 4 : 1;
		for (int ch = 0; ch < cb; ch++)
			for (int64_t ro = 0; ro < rows; ro++) {
				float *dst = gp + ch * plane + ro * wp;
				memset(dst, 0, sizeof(float) * (size_t)pl);
				memcpy(dst + pl, gout + ((n * d->c + c0 + ch) * ho + slo * s + ro) * wo, sizeof(float) * (size_t)wo);
				memset(dst + pl + wo, 0, sizeof(float) * (size_t)(wp - pl - wo));
			}
		for (int64_t y = y0; y < y1; y++) {
			/* Tap row i reaches y from source row sh = y - i + r, which must be in the image. */
			const int i0 = y + r - h + 1 > 0 ? (int)(y + r - h + 1) : 0, i1 = y + r + 1 < k ? (int)(y + r + 1) : k;
			const int64_t ybase = y + r - slo;
			if (cb == CB_S1)
				OPT_BWD_FTILE(CB_S1)(mp, gp, plane, wp, i0, i1, ybase, k, s, pl, wr, v);
			else if (cb == 4)
				OPT_BWD_FTILE(4)(mp, gp, plane, wp, i0, i1, ybase, k, s, pl, wr, v);
			else
				OPT_BWD_FTILE(1)(mp, gp, plane, wp, i0, i1, ybase, k, s, pl, wr, v);
			for (int ch = 0; ch < cb; ch++) {
				float *dst = gfeat + ((n * d->c + c0 + ch) * h + y) * w;
				const float *vc = v + ch * wr;
				if (s == 1) {
					memcpy(dst, vc, sizeof(float) * (size_t)w);
				} else {
					for (int64_t x = 0; x < w; x++) {
						float acc = vc[x * s];
						for (int b = 1; b < s; b++)
							acc += vc[x * s + b];
						dst[x] = acc;
					}
				}
			}
		}
		c0 += cb;
	}
}
