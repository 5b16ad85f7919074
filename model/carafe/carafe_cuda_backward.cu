// CUDA CARAFE backward (float32), the gradients of carafe.h's definition, for PyTorch training.
// Tested against the C reference backward (carafe_backward_ref.h) by test_carafe_cuda_backward.cu.
//
// gmask: one thread per output pixel (n, ph, pw) and group: the k*k tap accumulators stay in registers
// (k = 1, 3, 5, 7 compiled in; other k accumulate one tap at a time) while the group's channels stream
// through; taps outside the image are never read and get exactly 0.
// gfeat: the reassembly transposed as a gather, so no atomics: one thread per source pixel (n, y, x)
// and chunk of 8 channels of one group; each mask value the pixel receives from is loaded once for the
// chunk. Consecutive threads take consecutive pw (gmask) or x (gfeat), so the wide reads coalesce.
// Every offset is 64-bit. Non-integral scale factors work too: the output rows and columns of a source
// pixel are found from carafe_src_index's definition.
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>

#include "carafe_cuda.h"
#include "carafe_cuda_backward.h"

namespace {

constexpr int kThreads = 128;
constexpr int kFeatChunk = 8; // gfeat: channels per thread

struct BwdDims {
	long long n, c, h, w, ho, wo, groups, cpg, nchunks;
	int k, int_scale;
	float scale;
};

__device__ __forceinline__ long long src_index(long long p, const BwdDims &d)
{
	if (d.int_scale > 0)
		return p / d.int_scale;
	return (long long)floor((double)p / (double)d.scale);
}

// The output indices [*lo, *hi) in [0, size) whose source index is src.
__device__ __forceinline__ void outputs_of(long long src, long long size, const BwdDims &d, long long *lo, long long *hi)
{
	if (d.int_scale > 0) {
		*lo = src * d.int_scale;
		*hi = *lo + d.int_scale < size ? *lo + d.int_scale : size;
		return;
	}
	long long a = (long long)ceil((double)src * (double)d.scale), b = (long long)ceil((double)(src + 1) * (double)d.scale);
	a = a < 0 ? 0 : a > size ? size : a;
	b = b < 0 ? 0 : b > size ? size : b;
	while (a > 0 && src_index(a - 1, d) >= src)
		a--;
	while (a < size && src_index(a, d) < src)
		a++;
	while (b > 0 && src_index(b - 1, d) > src)
		b--;
	while (b < size && src_index(b, d) <= src)
		b++;
	*lo = a, *hi = b;
}

template <int KT>
__global__ void __launch_bounds__(kThreads) gmask_kernel(const float *__restrict__ feat, const float *__restrict__ gout,
                                                         float *__restrict__ gmask, BwdDims d)
{
	const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (p >= d.n * d.ho * d.wo)
		return;
	const long long howo = d.ho * d.wo, hw = d.h * d.w, g = blockIdx.y;
	const long long pw = p % d.wo, ph = (p / d.wo) % d.ho, n = p / howo;
	const int k = KT ? KT : d.k, r = (k - 1) / 2;
	const long long sh = src_index(ph, d), sw = src_index(pw, d);
	const int i0 = (int)(r - sh > 0 ? r - sh : 0), i1 = (int)(d.h - sh + r < k ? d.h - sh + r : k);
	const int j0 = (int)(r - sw > 0 ? r - sw : 0), j1 = (int)(d.w - sw + r < k ? d.w - sw + r : k);
	const long long base = (sh - r) * d.w + (sw - r); // offset of tap (0,0), may be negative
	const float *gp = gout + (n * d.c + g * d.cpg) * howo + ph * d.wo + pw;
	const float *fp = feat + (n * d.c + g * d.cpg) * hw;
	float *mp = gmask + (n * d.groups + g) * k * k * howo + ph * d.wo + pw;
	if (KT) {
		float acc[KT ? KT * KT : 1];
#pragma unroll
		for (int t = 0; t < KT * KT; t++)
			acc[t] = 0.0f;
		for (long long c = 0; c < d.cpg; c++, gp += howo, fp += hw) {
			const float go = *gp;
#pragma unroll
			for (int i = 0; i < KT; i++)
#pragma unroll
				for (int j = 0; j < KT; j++)
					if (i >= i0 && i < i1 && j >= j0 && j < j1)
						acc[i * KT + j] = fmaf(go, fp[base + (long long)i * d.w + j], acc[i * KT + j]);
		}
#pragma unroll
		for (int t = 0; t < KT * KT; t++)
			mp[t * howo] = acc[t];
	} else {
		for (int i = 0; i < k; i++)
			for (int j = 0; j < k; j++) {
				float acc = 0.0f;
				if (i >= i0 && i < i1 && j >= j0 && j < j1)
					for (long long c = 0; c < d.cpg; c++)
						acc = fmaf(gp[c * howo], fp[c * hw + base + (long long)i * d.w + j], acc);
				mp[(long long)(i * k + j) * howo] = acc;
			}
	}
}

__global__ void __launch_bounds__(kThreads) gfeat_kernel(const float *__restrict__ mask, const float *__restrict__ gout,
                                                         float *__restrict__ gfeat, BwdDims d)
{
	const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (p >= d.n * d.h * d.w)
		return;
	const long long howo = d.ho * d.wo, hw = d.h * d.w;
	const long long x = p % d.w, y = (p / d.w) % d.h, n = p / hw;
	const long long g = blockIdx.y / d.nchunks, chunk = blockIdx.y % d.nchunks;
	const long long c0 = g * d.cpg + chunk * kFeatChunk;
	const int cn = (int)((g + 1) * d.cpg - c0 < kFeatChunk ? (g + 1) * d.cpg - c0 : kFeatChunk);
	const int k = d.k, r = (k - 1) / 2;
	const float *gc = gout + (n * d.c + c0) * howo;
	float acc[kFeatChunk];
#pragma unroll
	for (int cc = 0; cc < kFeatChunk; cc++)
		acc[cc] = 0.0f;
	for (int i = 0; i < k; i++) {
		const long long sh = y - i + r;
		if (sh < 0 || sh >= d.h)
			continue;
		long long ph0, ph1;
		outputs_of(sh, d.ho, d, &ph0, &ph1);
		for (int j = 0; j < k; j++) {
			const long long sw = x - j + r;
			if (sw < 0 || sw >= d.w)
				continue;
			long long pw0, pw1;
			outputs_of(sw, d.wo, d, &pw0, &pw1);
			const float *mp = mask + ((n * d.groups + g) * k * k + i * k + j) * howo;
			for (long long ph = ph0; ph < ph1; ph++)
				for (long long pw = pw0; pw < pw1; pw++) {
					const long long o = ph * d.wo + pw;
					const float m = mp[o];
#pragma unroll
					for (int cc = 0; cc < kFeatChunk; cc++)
						if (cc < cn)
							acc[cc] = fmaf(m, gc[cc * howo + o], acc[cc]);
				}
		}
	}
	float *fp = gfeat + (n * d.c + c0) * hw + y * d.w + x;
#pragma unroll
	for (int cc = 0; cc < kFeatChunk; cc++)
		if (cc < cn)
			fp[cc * hw] = acc[cc];
}

int fail(char *err, size_t err_len, int rc, const char *msg)
{
	if (err && err_len)
		snprintf(err, err_len, "%s", msg);
	return rc;
}

} // namespace

extern "C" int stardetr_carafe_cuda_backward_launch(void *stream, const float *feat, const float *mask,
                                                    const float *gout, float *gfeat, float *gmask, const carafe_dims *cd,
                                                    char *err, size_t err_len)
{
	BwdDims d;
	d.n = cd->n, d.c = cd->c, d.h = cd->h, d.w = cd->w, d.ho = cd->ho, d.wo = cd->wo, d.groups = cd->groups;
	d.cpg = cd->c / cd->groups, d.nchunks = (d.cpg + kFeatChunk - 1) / kFeatChunk;
	d.k = (int)cd->k, d.int_scale = cd->int_scale, d.scale = cd->scale;
	const long long out_px = d.n * d.ho * d.wo, in_px = d.n * d.h * d.w;
	const bool do_mask = gmask && out_px > 0, do_feat = gfeat && in_px > 0 && d.c > 0;
	if (!do_mask && !do_feat)
		return 0;
	if (d.groups > 65535 || d.groups * d.nchunks > 65535)
		return fail(err, err_len, -1, "group_size or C/group_size exceeds the CUDA backward's limit of 65535 "
		                              "groups and 8-channel chunks per group");
	if ((out_px + kThreads - 1) / kThreads > 0x7fffffffLL || (in_px + kThreads - 1) / kThreads > 0x7fffffffLL)
		return fail(err, err_len, -1, "N*H*W or N*Ho*Wo exceeds the CUDA backward's limit of 2^31-1 blocks of 128");

	// Clear an earlier pending error first, so the status after the launches is ours (see carafe_cuda.cu).
	const cudaError_t before = cudaGetLastError();
	cudaStream_t s = static_cast<cudaStream_t>(stream);
	if (do_mask) {
		const dim3 grid((unsigned)((out_px + kThreads - 1) / kThreads), (unsigned)d.groups);
		switch (d.k) {
		case 1: gmask_kernel<1><<<grid, kThreads, 0, s>>>(feat, gout, gmask, d); break;
		case 3: gmask_kernel<3><<<grid, kThreads, 0, s>>>(feat, gout, gmask, d); break;
		case 5: gmask_kernel<5><<<grid, kThreads, 0, s>>>(feat, gout, gmask, d); break;
		case 7: gmask_kernel<7><<<grid, kThreads, 0, s>>>(feat, gout, gmask, d); break;
		default: gmask_kernel<0><<<grid, kThreads, 0, s>>>(feat, gout, gmask, d); break;
		}
	}
	if (do_feat) {
		const dim3 grid((unsigned)((in_px + kThreads - 1) / kThreads), (unsigned)(d.groups * d.nchunks));
		gfeat_kernel<<<grid, kThreads, 0, s>>>(mask, gout, gfeat, d);
	}
	const cudaError_t after = cudaGetLastError();
	if (after == cudaSuccess)
		return 0;
	if (err && err_len) {
		if (before != cudaSuccess)
			snprintf(err, err_len, "backward kernel launch failed: %s (an earlier CUDA error was pending: %s)",
			         cudaGetErrorString(after), cudaGetErrorString(before));
		else
			snprintf(err, err_len, "backward kernel launch failed: %s", cudaGetErrorString(after));
	}
	return (int)after;
}

static int dims_or_fail(carafe_dims *d, int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k,
                        float scale, int64_t ho, int64_t wo, char *err, size_t err_len)
{
	char msg[256];
	if (carafe_dims_init(d, n, c, h, w, groups * k * k, ho, wo, groups, k, scale, msg, sizeof msg)) {
		if (err && err_len)
			snprintf(err, err_len, "%s", msg);
		return -2;
	}
	return 0;
}

extern "C" int stardetr_carafe_cuda_train_forward(void *stream, const float *feat, const float *mask, float *out,
                                                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k,
                                                  float scale, int64_t ho, int64_t wo, char *err, size_t err_len)
{
	carafe_dims d;
	const int rc = dims_or_fail(&d, n, c, h, w, groups, k, scale, ho, wo, err, err_len);
	return rc ? rc : stardetr_carafe_cuda_launch(stream, 0, 0, feat, mask, out, &d, err, err_len);
}

extern "C" int stardetr_carafe_cuda_backward(void *stream, const float *feat, const float *mask, const float *gout,
                                             float *gfeat, float *gmask, int64_t n, int64_t c, int64_t h, int64_t w,
                                             int64_t groups, int64_t k, float scale, int64_t ho, int64_t wo, char *err,
                                             size_t err_len)
{
	carafe_dims d;
	const int rc = dims_or_fail(&d, n, c, h, w, groups, k, scale, ho, wo, err, err_len);
	return rc ? rc : stardetr_carafe_cuda_backward_launch(stream, feat, mask, gout, gfeat, gmask, &d, err, err_len);
}
