/* Included by carafe_opt.h once per tile shape, with TILE_ROWS and TILE_CB defined. */
/* One tile: TILE_CB channels x TILE_ROWS output rows, all output columns. Row i of channel ch's
 * window is at U + ch*ucs + i*us; mrow points at tap 0 of the first row (tap stride mtap, row stride wo); orow at
 * channel c0's first row (channel stride ochan, row stride wo). */
static void OPT_TILE(TILE_ROWS, TILE_CB)(const float *U, int64_t ucs, int64_t us, int k, int s, int i0, int i1, const float *mrow,
                          int64_t mtap, int64_t wo, float *orow, int64_t ochan)
{
	int64_t pw = 0;
	for (; pw + VL <= wo; pw += VL) {
		VEC acc[TILE_ROWS][TILE_CB];
		for (int q = 0; q < TILE_ROWS; q++)
			for (int ch = 0; ch < TILE_CB; ch++)
				acc[q][ch] = V_ZERO();
		for (int i = i0; i < i1; i++) {
			const float *ui = U + i * us + pw;
			const float *mi = mrow + (int64_t)i * k * mtap + pw;
			for (int j = 0; j < k; j++) {
				VEC m[TILE_ROWS];
				for (int q = 0; q < TILE_ROWS; q++)
					m[q] = V_LOAD(mi + j * mtap + q * wo);
				const float *uj = ui + s * j;
				for (int ch = 0; ch < TILE_CB; ch++) {
					VEC u = V_LOAD(uj + ch * ucs);
					V_PIN(u);
					for (int q = 0; q < TILE_ROWS; q++)
						acc[q][ch] = V_FMA(acc[q][ch], m[q], u);
				}
			}
		}
		for (int q = 0; q < TILE_ROWS; q++)
			for (int ch = 0; ch < TILE_CB; ch++)
				V_STORE(orow + ch * ochan + q * wo + pw, acc[q][ch]);
	}
	for (; pw < wo; pw++) {
		for (int q = 0; q < TILE_ROWS; q++)
			for (int ch = 0; ch < TILE_CB; ch++) {
				float acc = 0.0f;
				for (int i = i0; i < i1; i++)
					for (int j = 0; j < k; j++)
						acc += mrow[((int64_t)i * k + j) * mtap + q * wo + pw] *
						       U[ch * ucs + i * us + pw + s * j];
				orow[ch * ochan + q * wo + pw] = acc;
			}
	}
}

#undef TILE_ROWS
#undef TILE_CB
