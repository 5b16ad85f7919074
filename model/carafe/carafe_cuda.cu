// CUDA CARAFE (mmcv semantics, see carafe.h): features float32 or float16, masks float32 or
// float16 (independently), output in the features' type, accumulated in float32.
//
// One thread per output pixel (n, ph, pw) and channel chunk; its body (carafe_cuda::pixel), the
// channel chunking and the grid (carafe_cuda::plan_launch) live in carafe_cuda_body.h, which the
// host emulation (carafe_cuda_emu.h) runs too. Consecutive threads take consecutive pw, so mask
// reads, output writes and (for s=1) feature reads are coalesced.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdio.h>

#include "carafe_cuda.h"
#include "carafe_cuda_body.h"

namespace {

using carafe_cuda::Dims;
using carafe_cuda::kThreads;

template <typename T, typename M, int KT>
__global__ void __launch_bounds__(kThreads) carafe_kernel(const T *__restrict__ feat, const M *__restrict__ mask,
                                                          T *__restrict__ out, Dims d)
{
	const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	if (p < d.n * d.ho * d.wo)
		carafe_cuda::pixel<T, M, KT>(feat, mask, out, d, p, blockIdx.y);
}

template <typename T, typename M>
void launch(cudaStream_t stream, dim3 grid, const void *feat, const void *mask, void *out, const Dims &d)
{
	const T *f = static_cast<const T *>(feat);
	const M *m = static_cast<const M *>(mask);
	T *o = static_cast<T *>(out);
	switch (carafe_cuda::kernel_instance(d.k)) {
	case 1: carafe_kernel<T, M, 1><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 3: carafe_kernel<T, M, 3><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 5: carafe_kernel<T, M, 5><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	case 7: carafe_kernel<T, M, 7><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	default: carafe_kernel<T, M, 0><<<grid, kThreads, 0, stream>>>(f, m, o, d); break;
	}
}

} // namespace

extern "C" long long stardetr_carafe_cuda_chunk(const carafe_dims *cd, int sms)
{
	return carafe_cuda::chunk_for(cd, sms);
}

extern "C" int stardetr_carafe_cuda_launch(void *stream, int feat_half, int mask_half, const void *feat,
                                           const void *mask, void *out, const carafe_dims *cd, char *err,
                                           size_t err_len)
{
	// The limits first (no CUDA call): the plan is made again below with the device's SM count.
	carafe_cuda::Plan plan;
	if (carafe_cuda::plan_launch(cd, 1, &plan, err, err_len))
		return -1;
	if (plan.empty)
		return 0;

	int dev = 0, sms = 0;
	cudaError_t e = cudaGetDevice(&dev);
	if (e == cudaSuccess)
		e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
	if (e != cudaSuccess) {
		if (err && err_len)
			snprintf(err, err_len, "cannot query the current CUDA device: %s", cudaGetErrorString(e));
		return (int)e;
	}

	carafe_cuda::plan_launch(cd, sms, &plan, NULL, 0);
	const Dims &d = plan.d;
	const dim3 grid((unsigned)plan.grid_x, (unsigned)plan.grid_y);

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
