/* CUDA CARAFE backward (carafe_cuda_backward.cu): the gradients of carafe.h's definition, float32,
 * for PyTorch training (model/reference/carafe_lib.py) and its GPU test (test_carafe_cuda_backward.cu). */
#ifndef STARDETR_CARAFE_CUDA_BACKWARD_H
#define STARDETR_CARAFE_CUDA_BACKWARD_H

#include "carafe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues the backward on stream (a cudaStream_t; NULL = default stream): gfeat [N,C,H,W] and
 * gmask [N,G*k*k,Ho,Wo] (device pointers, float32, either NULL when not wanted) from feat, mask
 * and the upstream gradient gout [N,C,Ho,Wo]. Does not synchronise. Returns 0; a cudaError_t value
 * for a CUDA failure; or -1 for sizes the kernels refuse (more than 65535 groups or channel
 * chunks, more than 2^31-1 blocks). On failure err (if not NULL) gets one line. */
int stardetr_carafe_cuda_backward_launch(void *stream, const float *feat, const float *mask, const float *gout,
                                         float *gfeat, float *gmask, const carafe_dims *d, char *err, size_t err_len);

/* PyTorch's entry points (exported): the sizes as in stardetr_carafe_run, checked first (-2 and the
 * rule in err when invalid). The forward is the plugin's CUDA kernel in float32. */
CARAFE_EXPORT int stardetr_carafe_cuda_train_forward(void *stream, const float *feat, const float *mask, float *out,
                                                     int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups,
                                                     int64_t k, float scale, int64_t ho, int64_t wo, char *err,
                                                     size_t err_len);
CARAFE_EXPORT int stardetr_carafe_cuda_backward(void *stream, const float *feat, const float *mask, const float *gout,
                                                float *gfeat, float *gmask, int64_t n, int64_t c, int64_t h, int64_t w,
                                                int64_t groups, int64_t k, float scale, int64_t ho, int64_t wo,
                                                char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
