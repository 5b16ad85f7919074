// CUDA CARAFE (mmcv semantics, see carafe.h), float32 and float16 (accumulated in float32).
//
// One thread per output pixel (n, ph, pw) and channel chunk: it loads the pixel's k*k mask
// values once into registers (they are shared by every channel of the group, and zeroed for
// taps outside the image, whose source coordinates are clamped so the loop has no branches),
// then walks the chunk's channels. Consecutive threads take consecutive pw, so mask reads,
// output writes and (for s=1) feature reads are coalesced.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "carafe_cuda.h"

namespace {

constexpr int kThreads = 128;
constexpr int kChunk = 32; // channels per thread

struct Dims {
	long long n, c, h, w, ho, wo, groups, cpg, nchunks;
	int k, int_scale;
	float scale;
};

__device__ __forceinline__ float load(const float *p) { return *p; }
__device__ __forceinline__ float load(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__half *p, float v) { *p = __float2half(v); }

__device__ __forceinline__ long long src_index(long long p, const Dims &d)
{
	if (d.int_scale > 0)
		return p / d.int_scale;
	return (long long)floor((double)p / (double)d.scale);
}

// KT: the kernel size when known at compile time (masks held in registers), 0 for any odd k.
template <typename T, int KT>
__global__ void __launch_bounds__(kThreads) carafe_kernel(const T *__restrict__ feat, const T *__restrict__ mask,
                                                          T *__restrict__ out, Dims d)
{
	const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	const long long howo = d.ho * d.wo;
	if (p >= d.n * howo)
		return;
	const long long pw = p % d.wo, ph = (p / d.wo) % d.ho, n = p / howo;
	const long long g = blockIdx.y / d.nchunks, chunk = blockIdx.y % d.nchunks;
	const long long c0 = g * d.cpg + chunk * kChunk;
	const long long c1 = min(c0 + kChunk, (g + 1) * d.cpg);
	const int k = KT ? KT : d.k, r = (k - 1) / 2;
	const long long sh = src_index(ph, d), sw = src_index(pw, d);
	const T *mp = mask + (n * d.groups + g) * k * k * howo + ph * d.wo + pw;
	const long long hw = d.h * d.w;

	if (KT) {
		float m[KT ? KT * KT : 1];
		int off[KT ? KT * KT : 1];
#pragma unroll
		for (int i = 0; i < KT; i++)
#pragma unroll
			for (int j = 0; j < KT; j++) {
				const long long y = sh + i - r, x = sw + j - r;
				const bool in = y >= 0 && y < d.h && x >= 0 && x < d.w;
				m[i * KT + j] = in ? load(mp + (i * KT + j) * howo) : 0.0f;
				off[i * KT + j] = in ? (int)(y * d.w + x) : 0;
			}
		for (long long c = c0; c < c1; c++) {
			const T *f = feat + (n * d.c + c) * hw;
			float acc = 0.0f;
#pragma unroll
			for (int t = 0; t < KT * KT; t++)
				acc = fmaf(m[t], load(f + off[t]), acc);
			store(out + (n * d.c + c) * howo + ph * d.wo + pw, acc);
		}
	} else {
		for (long long c = c0; c < c1; c++) {
			const T *f = feat + (n * d.c + c) * hw;
			float acc = 0.0f;
			for (int i = 0; i < k; i++) {
				const long long y = sh + i - r;
				if (y < 0 || y >= d.h)
					continue;
				for (int j = 0; j < k; j++) {
					const long long x = sw + j - r;
					if (x < 0 || x >= d.w)
						continue;
					acc = fmaf(load(mp + (i * k + j) * howo), load(f + y * d.w + x), acc);
				}
			}
			store(out + (n * d.c + c) * howo + ph * d.wo + pw, acc);
		}
	}
}

template <typename T>
cudaError_t launch(cudaStream_t stream, const T *feat, const T *mask, T *out, const Dims &d)
{
	const long long pixels = d.n * d.ho * d.wo;
	const dim3 grid((unsigned)((pixels + kThreads - 1) / kThreads), (unsigned)(d.groups * d.nchunks));
	switch (d.k) {
	case 1: carafe_kernel<T, 1><<<grid, kThreads, 0, stream>>>(feat, mask, out, d); break;
	case 3: carafe_kernel<T, 3><<<grid, kThreads, 0, stream>>>(feat, mask, out, d); break;
	case 5: carafe_kernel<T, 5><<<grid, kThreads, 0, stream>>>(feat, mask, out, d); break;
	case 7: carafe_kernel<T, 7><<<grid, kThreads, 0, stream>>>(feat, mask, out, d); break;
	default: carafe_kernel<T, 0><<<grid, kThreads, 0, stream>>>(feat, mask, out, d); break;
	}
	return cudaGetLastError();
}

} // namespace

extern "C" int stardetr_carafe_cuda_launch(void *stream, int half, const void *feat, const void *mask, void *out,
                                           const carafe_dims *cd)
{
	Dims d;
	d.n = cd->n, d.c = cd->c, d.h = cd->h, d.w = cd->w, d.ho = cd->ho, d.wo = cd->wo;
	d.groups = cd->groups, d.cpg = cd->c / cd->groups, d.nchunks = (d.cpg + kChunk - 1) / kChunk;
	d.k = (int)cd->k, d.int_scale = cd->int_scale, d.scale = cd->scale;
	if (d.n * d.ho * d.wo == 0 || d.c == 0)
		return 0;
	if ((d.n * d.ho * d.wo + kThreads - 1) / kThreads > 0x7fffffffLL || d.groups * d.nchunks > 65535)
		return (int)cudaErrorInvalidConfiguration;
	cudaStream_t s = static_cast<cudaStream_t>(stream);
	if (half)
		return (int)launch(s, static_cast<const __half *>(feat), static_cast<const __half *>(mask),
		                   static_cast<__half *>(out), d);
	return (int)launch(s, static_cast<const float *>(feat), static_cast<const float *>(mask), static_cast<float *>(out),
	                   d);
}

extern "C" const char *stardetr_carafe_cuda_error_string(int rc)
{
	return cudaGetErrorString(static_cast<cudaError_t>(rc));
}
