/* CUDA CARAFE launcher, implemented in carafe_cuda.cu and called by the ORT glue when the
 * library is built with -DSTARDETR_CARAFE_CUDA (libstardetr_carafe_cuda.so). */
#ifndef STARDETR_CARAFE_CUDA_H
#define STARDETR_CARAFE_CUDA_H

#include "carafe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues CARAFE on stream (a cudaStream_t; NULL = default stream). feat, mask and out are
 * device pointers to float32 (half == 0) or float16 (half != 0) NCHW tensors of the sizes in d.
 * Returns 0 or a cudaError_t value; does not synchronise. */
int stardetr_carafe_cuda_launch(void *stream, int half, const void *feat, const void *mask, void *out,
                                const carafe_dims *d);
const char *stardetr_carafe_cuda_error_string(int rc);

#ifdef __cplusplus
}
#endif

#endif
