// The CUDA CARAFE kernel's per-output computation and its launch geometry, shared by the device
// code (carafe_cuda.cu, compiled by nvcc) and the host emulation (carafe_cuda_emu.h, compiled by
// g++ in `make test` and by nvcc in the GPU test): one source for the index math, the channel
// chunking and the border skips, so that they run on every commit, not only on a GPU.
//
// C++ only (templates). Under nvcc CARAFE_HD is __host__ __device__, so the same functions compile
// as device code for the kernel and as host code for the emulation; under any other compiler it
// is empty and this is plain C++. Nothing here calls the CUDA runtime.
#ifndef STARDETR_CARAFE_CUDA_BODY_H
#define STARDETR_CARAFE_CUDA_BODY_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "carafe.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define CARAFE_HD __host__ __device__
#define CARAFE_INLINE __forceinline__
#define CARAFE_UNROLL _Pragma("unroll")
#else
#define CARAFE_HD
#define CARAFE_INLINE inline
#define CARAFE_UNROLL
#endif

namespace carafe_cuda {

constexpr int kThreads = 128;  // threads per block (blockDim.x)
constexpr int kChunkMax = 32;  // channels per thread at most: masks are loaded once per chunk
// Enough resident threads per multiprocessor that small shapes still fill the GPU: the chunk
// shrinks until pixels * chunks reaches this many threads per SM (or one channel per thread).
constexpr long long kThreadsPerSM = 1024;
constexpr long long kMaxGridY = 65535;       // gridDim.y limit: groups * chunks
constexpr long long kMaxGridX = 0x7fffffffLL; // gridDim.x limit: blocks of output pixels

struct Dims {
	long long n, c, h, w, ho, wo, groups, cpg, chunk, nchunks;
	int k, int_scale;
	float scale;
};

// IEEE binary16 as raw bits, with conversions in integer arithmetic: the host emulation's
// float16 (g++ has no __half). Round-to-nearest-even, subnormals, Inf and NaN as CUDA's
// __float2half / __half2float; the GPU test checks that bit for bit.
struct f16 {
	uint16_t bits;
};

CARAFE_HD CARAFE_INLINE float f16_to_float(uint16_t h)
{
	const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13); // Inf or NaN (payload kept)
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else { // subnormal: normalise
		exp = 113;
		while (!(man & 0x400u)) {
			man <<= 1;
			exp--;
		}
		bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

CARAFE_HD CARAFE_INLINE uint16_t float_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	const uint32_t exp = (x >> 23) & 0xffu, man = x & 0x7fffffu;
	if (exp == 0xff) // Inf, or NaN: the canonical quiet NaN as CUDA writes it
		return man ? (uint16_t)0x7fff : (uint16_t)(sign | 0x7c00u);
	const int e = (int)exp - 127 + 15; // biased half exponent
	if (e >= 0x1f)
		return (uint16_t)(sign | 0x7c00u); // overflow: Inf
	uint32_t m, shift;
	if (e <= 0) { // subnormal half (or zero): shift the 24-bit significand right
		if (e < -10)
			return sign; // below half the smallest subnormal: +-0
		m = man | 0x800000u;
		shift = (uint32_t)(14 - e);
	} else {
		m = man;
		shift = 13;
	}
	uint32_t out = e <= 0 ? (m >> shift) : (((uint32_t)e << 10) | (m >> shift));
	const uint32_t rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
	if (rest > half || (rest == half && (out & 1u)))
		out++; // may carry into the exponent: correct, up to Inf
	return (uint16_t)(sign | out);
}

CARAFE_HD CARAFE_INLINE float load(const float *p) { return *p; }
CARAFE_HD CARAFE_INLINE float load(const f16 *p) { return f16_to_float(p->bits); }
CARAFE_HD CARAFE_INLINE void store(float *p, float v) { *p = v; }
CARAFE_HD CARAFE_INLINE void store(f16 *p, float v) { p->bits = float_to_f16(v); }
#ifdef __CUDACC__
CARAFE_HD CARAFE_INLINE float load(const __half *p) { return __half2float(*p); }
CARAFE_HD CARAFE_INLINE void store(__half *p, float v) { *p = __float2half(v); }
#endif

CARAFE_HD CARAFE_INLINE long long src_index(long long p, const Dims &d)
{
	if (d.int_scale > 0)
		return p / d.int_scale;
	return (long long)floor((double)p / (double)d.scale);
}

CARAFE_HD CARAFE_INLINE long long lmin(long long a, long long b) { return a < b ? a : b; }
CARAFE_HD CARAFE_INLINE long long lmax(long long a, long long b) { return a > b ? a : b; }

// One thread's work: output pixel p (flattened n, ph, pw) for group and channel chunk gc
// (blockIdx.y). T: features and output, M: masks. KT: the kernel size when known at compile
// time (masks held in registers, loops unrolled), 0 for any other odd k.
//
// It loads the pixel's in-image mask values once (they are shared by every channel of the group),
// then walks the chunk's channels. Taps outside the image are skipped, never read nor multiplied
// by a zero weight: a NaN or Inf in the image (or in a mask value of an outside tap) must not
// reach outputs whose window merely crosses the border, exactly as in carafe_ref.c. Every offset
// is 64-bit: a plane (H*W or Ho*Wo) may exceed 2^31 elements.
template <typename T, typename M, int KT>
CARAFE_HD CARAFE_INLINE void pixel(const T *__restrict__ feat, const M *__restrict__ mask, T *__restrict__ out,
                                   const Dims &d, long long p, long long gc)
{
	const long long howo = d.ho * d.wo;
	const long long pw = p % d.wo, ph = (p / d.wo) % d.ho, n = p / howo;
	const long long g = gc / d.nchunks, chunk = gc % d.nchunks;
	const long long c0 = g * d.cpg + chunk * d.chunk;
	const long long c1 = lmin(c0 + d.chunk, (g + 1) * d.cpg);
	const int k = KT ? KT : d.k, r = (k - 1) / 2;
	const long long sh = src_index(ph, d), sw = src_index(pw, d);
	const M *mp = mask + (n * d.groups + g) * k * k * howo + ph * d.wo + pw;
	const long long hw = d.h * d.w;
	T *op = out + (n * d.c + c0) * howo + ph * d.wo + pw;
	const T *fp = feat + (n * d.c + c0) * hw;
	// In-image tap rows [i0, i1) and columns [j0, j1): the window clipped to the image.
	const int i0 = (int)lmax(0, r - sh), i1 = (int)lmin(k, d.h - sh + r);
	const int j0 = (int)lmax(0, r - sw), j1 = (int)lmin(k, d.w - sw + r);
	const long long base = (sh - r) * d.w + (sw - r); // offset of tap (0,0), may be negative

	if (KT) {
		float m[KT ? KT * KT : 1];
		CARAFE_UNROLL
		for (int i = 0; i < KT; i++)
			CARAFE_UNROLL
			for (int j = 0; j < KT; j++)
				m[i * KT + j] = (i >= i0 && i < i1 && j >= j0 && j < j1) ? load(mp + (long long)(i * KT + j) * howo)
				                                                          : 0.0f;
		for (long long c = c0; c < c1; c++, fp += hw, op += howo) {
			float acc = 0.0f;
			CARAFE_UNROLL
			for (int i = 0; i < KT; i++) {
				if (i < i0 || i >= i1)
					continue;
				CARAFE_UNROLL
				for (int j = 0; j < KT; j++)
					if (j >= j0 && j < j1)
						acc = fmaf(m[i * KT + j], load(fp + base + (long long)i * d.w + j), acc);
			}
			store(op, acc);
		}
	} else {
		for (long long c = c0; c < c1; c++, fp += hw, op += howo) {
			float acc = 0.0f;
			for (int i = i0; i < i1; i++)
				for (int j = j0; j < j1; j++)
					acc = fmaf(load(mp + (long long)(i * k + j) * howo), load(fp + base + (long long)i * d.w + j), acc);
			store(op, acc);
		}
	}
}

// The kernel sizes with a compiled-in (unrolled) instance; any other odd k runs instance 0.
CARAFE_HD CARAFE_INLINE int kernel_instance(long long k) { return (k == 1 || k == 3 || k == 5 || k == 7) ? (int)k : 0; }

// Channels per thread for d on a GPU with sms multiprocessors: up to kChunkMax, fewer when there
// are too few output pixels to fill the GPU otherwise; more when groups * chunks would exceed
// gridDim.y's limit.
inline long long chunk_for(const carafe_dims *cd, int sms)
{
	const long long pixels = cd->n * cd->ho * cd->wo, cpg = cd->groups > 0 ? cd->c / cd->groups : 0;
	long long chunk = cpg < kChunkMax ? cpg : kChunkMax;
	const long long want = (long long)(sms > 0 ? sms : 1) * kThreadsPerSM;
	while (chunk > 1 && pixels * cd->groups * ((cpg + chunk - 1) / chunk) < want)
		chunk = (chunk + 1) / 2;
	// blockIdx.y holds group and chunk: at most kMaxGridY of them.
	while (chunk > 0 && chunk < cpg && cd->groups * ((cpg + chunk - 1) / chunk) > kMaxGridY)
		chunk *= 2;
	return chunk < 1 ? 1 : chunk;
}

// What a launch runs: the kernel's dimensions and its grid (grid_x blocks of kThreads output
// pixels, grid_y = groups * chunks); empty when there is no output.
struct Plan {
	Dims d;
	long long grid_x, grid_y;
	bool empty;
};

// Fills plan for cd on a GPU with sms multiprocessors. Returns 0, or -1 for sizes the kernel
// refuses (err, if not NULL, gets one line saying which).
inline int plan_launch(const carafe_dims *cd, int sms, Plan *plan, char *err, size_t err_len)
{
	memset(plan, 0, sizeof *plan);
	if (cd->n * cd->c * cd->ho * cd->wo == 0) {
		plan->empty = true;
		return 0;
	}
	if (cd->groups > kMaxGridY) {
		if (err && err_len)
			snprintf(err, err_len, "group_size=%lld exceeds the CUDA kernel's limit of %lld groups",
			         (long long)cd->groups, kMaxGridY);
		return -1;
	}
	const long long pixels = cd->n * cd->ho * cd->wo, blocks = (pixels + kThreads - 1) / kThreads;
	if (blocks > kMaxGridX) {
		if (err && err_len)
			snprintf(err, err_len, "N*Ho*Wo=%lld output pixels exceed the CUDA kernel's limit of %lld", pixels,
			         kMaxGridX * kThreads);
		return -1;
	}
	Dims &d = plan->d;
	d.n = cd->n, d.c = cd->c, d.h = cd->h, d.w = cd->w, d.ho = cd->ho, d.wo = cd->wo;
	d.groups = cd->groups, d.cpg = cd->c / cd->groups;
	d.chunk = chunk_for(cd, sms), d.nchunks = (d.cpg + d.chunk - 1) / d.chunk;
	d.k = (int)cd->k, d.int_scale = cd->int_scale, d.scale = cd->scale;
	plan->grid_x = blocks;
	plan->grid_y = d.groups * d.nchunks;
	return 0;
}

} // namespace carafe_cuda

#endif
