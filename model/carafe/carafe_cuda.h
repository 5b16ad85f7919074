/* CUDA CARAFE launcher, implemented in carafe_cuda.cu and called by the ORT glue when the
 * library is built with -DSTARDETR_CARAFE_CUDA (libstardetr_carafe_cuda.so), and by the GPU
 * test (test_carafe_cuda.cu). */
#ifndef STARDETR_CARAFE_CUDA_H
#define STARDETR_CARAFE_CUDA_H

#include "carafe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues CARAFE on stream (a cudaStream_t; NULL = default stream). feat, mask and out are
 * device pointers to NCHW tensors of the sizes in d: features and output float16 when
 * feat_half != 0 else float32, masks float16 when mask_half != 0 else float32. Does not
 * synchronise. Returns 0; a cudaError_t value for a CUDA failure; or -1 for sizes the kernel
 * refuses (more than 65535 groups, more than 2^31-1 blocks of output pixels). On failure err
 * (if not NULL) gets one line saying what failed. */
int stardetr_carafe_cuda_launch(void *stream, int feat_half, int mask_half, const void *feat, const void *mask,
                                void *out, const carafe_dims *d, char *err, size_t err_len);

/* Channels per thread the launcher uses for d on a GPU with sms multiprocessors: up to 32,
 * fewer when there are too few output pixels to fill the GPU otherwise. For the tests. */
long long stardetr_carafe_cuda_chunk(const carafe_dims *d, int sms);

#ifdef __cplusplus
}
#endif

#endif
