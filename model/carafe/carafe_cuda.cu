// CUDA CARAFE (mmcv semantics, see carafe.h): features float32 or float16, masks float32 or
// float16 (independently), output in the features' type, accumulated in float32.
//
// One thread per output pixel (n, ph, pw) and channel chunk: it loads the pixel's in-image mask
// values once into registers (they are shared by every channel of the group), then walks the
// chunk's channels. Taps outside the image are skipped, never read nor multiplied by a zero
// weight: a NaN or Inf in the image (or in a mask value of an outside tap) must not reach outputs
// whose window merely crosses the border, exactly as in carafe_ref.c. Consecutive threads take
// consecutive pw, so mask reads, output writes and (for s=1) feature reads are coalesced.
// Every offset is 64-bit: a plane (H*W or Ho*Wo) may exceed 2^31 elements.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdio.h>

#include "carafe_cuda.h"

namespace {

constexpr int kThreads = 128;
constexpr int kChunkMax = 32; // channels per thread at most: masks are loaded once per chunk
// Enough resident threads per multiprocessor that small shapes still fill the GPU: the chunk
// shrinks until pixels * chunks reaches this many threads per SM (or one channel per thread).
constexpr long long kThreadsPerSM = 1024;

struct Dims {
	long long n, c, h, w, ho, wo, groups, cpg, chunk, nchunks;
	int k, int_scale;
	float scale;
};

__host__ __device__ __forceinline__ float load(const float *p) { return *p; }
__host__ __device__ __forceinline__ float load(const __half *p) { return __half2float(*p); }
__host__ __device__ __forceinline__ void store(float *p, float v) { *p = v; }
__host__ __device__ __forceinline__ void store(__half *p, float v) { *p = __float2half(v); }

__host__ __device__ __forceinline__ long long src_index(long long p, const Dims &d)
{
	if (d.int_scale > 0)
		return p / d.int_scale;
	return (long long)floor((double)p / (double)d.scale);
}

__host__ __device__ __forceinline__ long long lmin(long long a, long long b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ long long lmax(long long a, long long b) { return a > b ? a : b; }

// One thread's work: output pixel p (flattened n, ph, pw) for group and channel chunk gc
// (blockIdx.y). T: features and output, M: masks. KT: the kernel size when known at compile
// time (masks held in registers, loops unrolled), 0 for any other odd k.
template <typename T, typename M, int KT>
__host__ __device__ __forceinline__ void carafe_pixel(const T *__restrict__ feat, const M *__restrict__ mask,
                                                      T *__restrict__ out, const Dims &d, long long p, long long gc)
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
#pragma unroll
		for (int i = 0; i < KT; i++)
#pragma unroll
			for (int j = 0; j < KT; j++)
				m[i * KT + j] = (i >= i0 && i < i1 && j >= j0 && j < j1) ? load(mp + (long long)(i * KT + j) * howo)
				                                                          : 0.0f;
		for (long long c = c0; c < c1; c++, fp += hw, op += howo) {
			float acc = 0.0f;
#pragma unroll
			for (int i = 0; i < KT; i++) {
				if (i < i0 || i >= i1)
					continue;
#pragma unroll
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

template <typename T, typename M, int KT>
__global__ void __launch_bounds__(kThreads) carafe_kernel(const T *__restrict__ feat, const M *__restrict__ mask,
                                                          T *__restrict__ out, Dims d)
{
	const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (p < d.n * d.ho * d.wo)
		carafe_pixel<T, M, KT>(feat, mask, out, d, p, blockIdx.y);
}

template <typename T, typename M>
void launch(cudaStream_t stream, dim3 grid, const void *feat, const void *mask, void *out, const Dims &d)
{
	const T *f = static_cast<const T *>(feat);
	const M *m = static_cast<const M *>(mask);
	T *o = static_cast<T *>(out);
	switch (d.k) {
	case 1: carafe_kernel<T, M, 1><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 3: carafe_kernel<T, M, 3><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 5: carafe_kernel<T, M, 5><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 7: carafe_kernel<T, M, 7><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	default: carafe_kernel<T, M, 0><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	}
}

int fail(char *err, size_t err_len, int rc, const char *fmt, long long a, long long b)
{
	if (err && err_len)
		snprintf(err, err_len, fmt, a, b);
	return rc;
}

} // namespace

extern "C" long long stardetr_carafe_cuda_chunk(const carafe_dims *cd, int sms);

namespace {
Dims make_dims(const carafe_dims *cd, int sms)
{
	Dims d;
	d.n = cd->n, d.c = cd->c, d.h = cd->h, d.w = cd->w, d.ho = cd->ho, d.wo = cd->wo;
	d.groups = cd->groups, d.cpg = cd->c / cd->groups;
	d.chunk = stardetr_carafe_cuda_chunk(cd, sms), d.nchunks = (d.cpg + d.chunk - 1) / d.chunk;
	d.k = (int)cd->k, d.int_scale = cd->int_scale, d.scale = cd->scale;
	return d;
}
} // namespace

extern "C" long long stardetr_carafe_cuda_chunk(const carafe_dims *cd, int sms)
{
	const long long pixels = cd->n * cd->ho * cd->wo, cpg = cd->groups > 0 ? cd->c / cd->groups : 0;
	long long chunk = cpg < kChunkMax ? cpg : kChunkMax;
	const long long want = (long long)(sms > 0 ? sms : 1) * kThreadsPerSM;
	while (chunk > 1 && pixels * cd->groups * ((cpg + chunk - 1) / chunk) < want)
		chunk = (chunk + 1) / 2;
	// blockIdx.y holds group and chunk: at most 65535 of them.
	while (chunk > 0 && chunk < cpg && cd->groups * ((cpg + chunk - 1) / chunk) > 65535)
		chunk *= 2;
	return chunk < 1 ? 1 : chunk;
}

extern "C" int stardetr_carafe_cuda_launch(void *stream, int feat_half, int mask_half, const void *feat,
                                           const void *mask, void *out, const carafe_dims *cd, char *err,
                                           size_t err_len)
{
	if (cd->n * cd->c * cd->ho * cd->wo == 0)
		return 0;
	if (cd->groups > 65535)
		return fail(err, err_len, -1, "group_size=%lld exceeds the CUDA kernel's limit of %lld groups",
		            (long long)cd->groups, 65535LL);
	const long long pixels = cd->n * cd->ho * cd->wo, blocks = (pixels + kThreads - 1) / kThreads;
	if (blocks > 0x7fffffffLL)
		return fail(err, err_len, -1, "N*Ho*Wo=%lld output pixels exceed the CUDA kernel's limit of %lld",
		            pixels, 0x7fffffffLL * kThreads);

	int dev = 0, sms = 0;
	cudaError_t e = cudaGetDevice(&dev);
	if (e == cudaSuccess)
		e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
	if (e != cudaSuccess) {
		if (err && err_len)
			snprintf(err, err_len, "cannot query the current CUDA device: %s", cudaGetErrorString(e));
		return (int)e;
	}

	const Dims d = make_dims(cd, sms);
	const dim3 grid((unsigned)blocks, (unsigned)(d.groups * d.nchunks));

	// A launch error is reported by cudaGetLastError, which also returns (and clears) any earlier
	// error still pending on this thread. Clear that first, so the status after the launch is ours.
	const cudaError_t before = cudaGetLastError();
	cudaStream_t s = static_cast<cudaStream_t>(stream);
	if (feat_half && mask_half)
		launch<__half, __half>(s, grid, feat, mask, out, d);
	else if (feat_half)
		launch<__half, float>(s, grid, feat, mask, out, d);
	else if (mask_half)
		launch<float, __half>(s, grid, feat, mask, out, d);
	else
		launch<float, float>(s, grid, feat, mask, out, d);
	const cudaError_t after = cudaGetLastError();
	if (after == cudaSuccess)
		return 0;
	if (err && err_len) {
		if (before != cudaSuccess)
			snprintf(err, err_len, "kernel launch failed: %s (an earlier CUDA error was pending: %s)",
			         cudaGetErrorString(after), cudaGetErrorString(before));
		else
			snprintf(err, err_len, "kernel launch failed: %s", cudaGetErrorString(after));
	}
	return (int)after;
}
