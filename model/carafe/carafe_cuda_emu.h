// The CUDA CARAFE kernel executed on the CPU: a host loop over exactly the grid, blocks and
// channel chunks that stardetr_carafe_cuda_launch computes (carafe_cuda::plan_launch), each
// "thread" running the kernel's own body (carafe_cuda::pixel, carafe_cuda_body.h). Single-threaded
// and slow: for tests only (test_carafe_emu.cc in `make test`, and side by side with the real
// kernel in the GPU test). Host code; C++; compiles with g++ or nvcc.
#ifndef STARDETR_CARAFE_CUDA_EMU_H
#define STARDETR_CARAFE_CUDA_EMU_H

#include <vector>

#include "carafe_cuda_body.h"

namespace carafe_cuda {

// Every block (blockIdx.y = group and chunk, blockIdx.x = block of kThreads pixels) and thread
// of the grid, in launch order, with the kernel's bounds check.
template <typename T, typename M, int KT>
void emulate_grid(const Plan &plan, const T *feat, const M *mask, T *out)
{
	const Dims &d = plan.d;
	const long long pixels = d.n * d.ho * d.wo;
	for (long long by = 0; by < plan.grid_y; by++)
		for (long long bx = 0; bx < plan.grid_x; bx++)
			for (long long tx = 0; tx < kThreads; tx++) {
				const long long p = bx * kThreads + tx; // blockIdx.x * blockDim.x + threadIdx.x
				if (p < pixels)
					pixel<T, M, KT>(feat, mask, out, d, p, by);
			}
}

// What stardetr_carafe_cuda_launch does for cd on a GPU with sms multiprocessors, on host
// buffers: T is float or f16 (features and output), M float or f16 (masks). Returns 0, or -1
// with err set for sizes the launcher refuses.
template <typename T, typename M>
int emulate(const carafe_dims *cd, int sms, const T *feat, const M *mask, T *out, char *err, size_t err_len,
            Plan *used = nullptr)
{
	Plan plan;
	if (plan_launch(cd, sms, &plan, err, err_len))
		return -1;
	if (used)
		*used = plan;
	if (plan.empty)
		return 0;
	switch (kernel_instance(plan.d.k)) {
	case 1: emulate_grid<T, M, 1>(plan, feat, mask, out); break;
	case 3: emulate_grid<T, M, 3>(plan, feat, mask, out); break;
	case 5: emulate_grid<T, M, 5>(plan, feat, mask, out); break;
	case 7: emulate_grid<T, M, 7>(plan, feat, mask, out); break;
	default: emulate_grid<T, M, 0>(plan, feat, mask, out); break;
	}
	return 0;
}

// emulate() on float buffers, with the launcher's run-time type choice: features and output
// float16 when feat_half, masks float16 when mask_half (converted in and out, round to nearest
// even). out's incoming values are what the emulated kernel finds in its output buffer.
inline int emulate_floats(const carafe_dims *cd, int sms, bool feat_half, bool mask_half, const float *feat,
                          const float *mask, float *out, char *err, size_t err_len)
{
	const size_t nf = (size_t)(cd->n * cd->c * cd->h * cd->w), no = (size_t)(cd->n * cd->c * cd->ho * cd->wo);
	const size_t nm = (size_t)(cd->n * cd->groups * cd->k * cd->k * cd->ho * cd->wo);
	std::vector<f16> fh(feat_half ? nf : 0), mh(mask_half ? nm : 0), oh(feat_half ? no : 0);
	for (size_t i = 0; i < fh.size(); i++)
		fh[i].bits = float_to_f16(feat[i]);
	for (size_t i = 0; i < mh.size(); i++)
		mh[i].bits = float_to_f16(mask[i]);
	for (size_t i = 0; i < oh.size(); i++)
		oh[i].bits = float_to_f16(out[i]);
	int rc;
	if (feat_half && mask_half)
		rc = emulate<f16, f16>(cd, sms, fh.data(), mh.data(), oh.data(), err, err_len);
	else if (feat_half)
		rc = emulate<f16, float>(cd, sms, fh.data(), mask, oh.data(), err, err_len);
	else if (mask_half)
		rc = emulate<float, f16>(cd, sms, feat, mh.data(), out, err, err_len);
	else
		rc = emulate<float, float>(cd, sms, feat, mask, out, err, err_len);
	for (size_t i = 0; i < oh.size(); i++)
		out[i] = f16_to_float(oh[i].bits);
	return rc;
}

} // namespace carafe_cuda

#endif
