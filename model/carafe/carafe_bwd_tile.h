/* Included by carafe_bwd_opt.h once per tile shape: with TILE_J defined, the gmask tile of
 * TILE_J taps; with TILE_CB defined, the gfeat tile of TILE_CB channels. */
#ifdef TILE_J
/* gmask[tap j, one output row] += sum over cb channels of gout * U_ch[pw + s*j] for TILE_J taps of
 * one tap row. U: channel 0's widened row (channel stride ucs), shifted to the first tap; go:
 * channel 0's gout row (channel stride gchan); gm: the first tap's gmask row (tap stride mtap). */
static void OPT_BWD_MTILE(TILE_J)(const float *U, int64_t ucs, int s, int64_t cb, const float *go, int64_t gchan,
                                  float *gm, int64_t mtap, int64_t wo)
{
	int64_t pw = 0;
	for (; pw + VL <= wo; pw += VL) {
		VEC acc[TILE_J];
		for (int j = 0; j < TILE_J; j++)
			acc[j] = V_LOAD(gm + j * mtap + pw);
		for (int64_t ch = 0; ch < cb; ch++) {
			const VEC g = V_LOAD(go + ch * gchan + pw);
			const float *u = U + ch * ucs + pw;
			for (int j = 0; j < TILE_J; j++)
				acc[j] = V_FMA(acc[j], g, V_LOAD(u + s * j));
		}
		for (int j = 0; j < TILE_J; j++)
			V_STORE(gm + j * mtap + pw, acc[j]);
	}
	for (; pw < wo; pw++)
		for (int j = 0; j < TILE_J; j++) {
			float acc = gm[j * mtap + pw];
			for (int64_t ch = 0; ch < cb; ch++)
				acc += go[ch * gchan + pw] * U[ch * ucs + pw + s * j];
			gm[j * mtap + pw] = acc;
		}
}
#undef TILE_J
#endif

#ifdef TILE_CB
/* V[ch][T] for T in [0, wr), TILE_CB channels, source row y: the sum over tap rows i0 <= i < i1,
 * sub-rows a < s and taps j < k of mp[tap (i,j)][row][pl + T + s*(r-j)] * gp[ch][row][same], where
 * row = (ybase - i)*s + a. mp and gp: planes of `plane` floats (one per tap, one per channel) of
 * rows of wp floats. */
static void OPT_BWD_FTILE(TILE_CB)(const float *mp, const float *gp, int64_t plane, int64_t wp, int i0, int i1,
                                   int64_t ybase, int k, int s, int64_t pl, int64_t wr, float *v)
{
	const int r = (k - 1) / 2;
	for (int64_t tv = 0; tv < wr; tv += VL) {
		VEC acc[TILE_CB];
		for (int ch = 0; ch < TILE_CB; ch++)
			acc[ch] = V_ZERO();
		for (int i = i0; i < i1; i++)
			for (int a = 0; a < s; a++) {
				const int64_t off = ((ybase - i) * s + a) * wp + pl + tv + (int64_t)s * r;
				const float *m = mp + (int64_t)i * k * plane + off, *g = gp + off;
				for (int j = 0; j < k; j++, m += plane, g -= s) {
					const VEC mv = V_LOAD(m - (int64_t)s * j);
					for (int ch = 0; ch < TILE_CB; ch++)
						acc[ch] = V_FMA(acc[ch], mv, V_LOAD(g + ch * plane));
				}
			}
		for (int ch = 0; ch < TILE_CB; ch++)
			V_STORE(v + ch * wr + tv, acc[ch]);
	}
}
#undef TILE_CB
#endif
