/* CARAFE (mmcv::MMCVCARAFE) kernels shared by the reference, the optimised CPU variants and
 * the ONNX Runtime glue. Layout is NCHW float32 throughout.
 *
 * Semantics (mmcv's naive kernel is the definition): for output pixel (ph,pw) the source
 * centre is (floor(ph/s), floor(pw/s)); channel c belongs to group g = c / (C/G);
 *   out[n,c,ph,pw] = sum_{i,j<k} mask[n,(g*k+i)*k+j,ph,pw] * feat[n,c,sh+i-r,sw+j-r],  r=(k-1)/2
 * taps outside the image are skipped (zero padding) and the weights are not renormalised. */
#ifndef STARDETR_CARAFE_H
#define STARDETR_CARAFE_H

#include <stddef.h>
#include <stdint.h>

#define STARDETR_CARAFE_VERSION "0.1.0"

#define CARAFE_CAT_(a, b) a##b
#define CARAFE_CAT(a, b) CARAFE_CAT_(a, b)

#ifdef __cplusplus
extern "C" {
#endif

typedef struct carafe_dims {
	int64_t n, c, h, w; /* features [N,C,H,W] */
	int64_t ho, wo;     /* masks and output spatial size: floor(H*s) x floor(W*s) */
	int64_t groups;     /* G: C % G == 0 */
	int64_t k;          /* kernel size, odd */
	float scale;        /* s >= 1 */
	int int_scale;      /* s when s is integral, else 0 */
} carafe_dims;

/* A variant splits one call into independent tasks (they write disjoint output rows), so
 * the caller may run them on any thread pool. run() is thread-safe. */
typedef struct carafe_variant {
	const char *name;
	size_t (*tasks)(const carafe_dims *d);
	void (*run)(const carafe_dims *d, const float *feat, const float *mask, float *out, size_t task);
} carafe_variant;

/* Fills d and checks it; on failure returns nonzero and writes the rule that failed to msg. */
int carafe_dims_init(carafe_dims *d, int64_t n, int64_t c, int64_t h, int64_t w, int64_t mask_c,
                     int64_t ho, int64_t wo, int64_t groups, int64_t k, float scale, char *msg, size_t msg_len);
/* Checks the attributes alone (kernel creation time). */
int carafe_check_attrs(int64_t groups, int64_t k, float scale, char *msg, size_t msg_len);
/* floor(p / s) as the definition computes it. */
int64_t carafe_src_index(int64_t p, const carafe_dims *d);

/* The variant used for ONNX Runtime calls on this CPU: the best one compiled in and supported. */
const carafe_variant *carafe_best_variant(void);
/* Looks a variant up by name ("reference", "generic", "avx2", "neon", "best"); NULL if absent
 * from this build or unsupported by this CPU. */
const carafe_variant *carafe_find_variant(const char *name);

extern const carafe_variant carafe_variant_reference;
extern const carafe_variant carafe_variant_generic;
#if defined(__x86_64__)
extern const carafe_variant carafe_variant_avx2;
#endif
#if defined(__aarch64__)
extern const carafe_variant carafe_variant_neon;
#endif

/* Reference task: one output row (n, ph) over all channels. Optimised variants fall back to it
 * for non-integral scale factors. */
size_t carafe_ref_tasks(const carafe_dims *d);
void carafe_ref_run(const carafe_dims *d, const float *feat, const float *mask, float *out, size_t task);

/* Backward (training). The gradients of out = carafe(feat, mask) for an upstream gradient gout
 * of out's shape [N,C,Ho,Wo]:
 *   gfeat[n,c,y,x]  = sum over the output pixels (ph,pw) and taps (i,j) that read (y,x) of
 *                     mask[n,(g*k+i)*k+j,ph,pw] * gout[n,c,ph,pw]   (the reassembly transposed)
 *   gmask[n,(g*k+i)*k+j,ph,pw] = sum over the group's channels c of gout[n,c,ph,pw] * feat[n,c,y,x]
 *                     for the in-image tap (y,x) = (sh+i-r, sw+j-r); 0 for taps outside the image.
 * Like a forward variant, a backward variant splits each gradient into independent tasks that
 * write disjoint parts of it; run functions are thread-safe. */
typedef struct carafe_bwd_variant {
	const char *name;
	/* scratch: floats of working memory one task needs; the caller passes each running task
	 * its own buffer of that size (NULL when 0). */
	size_t (*feat_tasks)(const carafe_dims *d);
	size_t (*feat_scratch)(const carafe_dims *d);
	void (*feat_run)(const carafe_dims *d, const float *mask, const float *gout, float *gfeat, size_t task,
	                 float *scratch);
	size_t (*mask_tasks)(const carafe_dims *d);
	size_t (*mask_scratch)(const carafe_dims *d);
	void (*mask_run)(const carafe_dims *d, const float *feat, const float *gout, float *gmask, size_t task,
	                 float *scratch);
} carafe_bwd_variant;

/* Backward variants by name, as carafe_find_variant: "reference", "generic", "avx2", "neon", "best". */
const carafe_bwd_variant *carafe_find_bwd_variant(const char *name);
extern const carafe_bwd_variant carafe_bwd_variant_reference;
extern const carafe_bwd_variant carafe_bwd_variant_generic;
#if defined(__x86_64__)
extern const carafe_bwd_variant carafe_bwd_variant_avx2;
#endif
#if defined(__aarch64__)
extern const carafe_bwd_variant carafe_bwd_variant_neon;
#endif

/* Reference backward tasks: gfeat one (n, c) plane each, gmask one output row (n, ph) each.
 * Optimised variants fall back to them for non-integral scale factors. */
size_t carafe_bwd_ref_feat_tasks(const carafe_dims *d);
size_t carafe_bwd_ref_scratch(const carafe_dims *d);
void carafe_bwd_ref_feat_run(const carafe_dims *d, const float *mask, const float *gout, float *gfeat, size_t task,
                             float *scratch);
size_t carafe_bwd_ref_mask_tasks(const carafe_dims *d);
void carafe_bwd_ref_mask_run(const carafe_dims *d, const float *feat, const float *gout, float *gmask, size_t task,
                             float *scratch);

/* Runs fn(arg, t, worker) for t in [0, tasks) on up to `threads` threads (the caller's included),
 * each task exactly once; worker (0 .. threads-1) names the thread, so per-thread buffers can be
 * indexed by it. Returns the number of threads used, after all tasks are done. */
int carafe_parallel(size_t tasks, int threads, void (*fn)(void *arg, size_t task, int worker), void *arg);

/* Exported C entry points (C linkage, default visibility): tests, bench and `stardetr version`. */
#define CARAFE_EXPORT __attribute__((visibility("default")))
CARAFE_EXPORT const char *stardetr_carafe_version(void);
/* Comma-separated names of the variants usable on this CPU, best last. */
CARAFE_EXPORT const char *stardetr_carafe_variants(void);
/* Runs one variant single-threaded. Returns 0, or -1 for an unknown/unsupported variant, -2 for
 * invalid dimensions (err, if not NULL, gets the rule). */
CARAFE_EXPORT int stardetr_carafe_run(const char *variant, const float *feat, const float *mask, float *out,
                                      int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k,
                                      float scale, int64_t ho, int64_t wo, char *err, size_t err_len);

/* Training entry points (PyTorch, model/reference/carafe_lib.py). threads: how many threads to
 * use, the caller's included (torch.get_num_threads()); < 1 means 1. Same return codes as
 * stardetr_carafe_run. */
/* The forward of a variant, its tasks spread over threads. */
CARAFE_EXPORT int stardetr_carafe_forward(const char *variant, const float *feat, const float *mask, float *out,
                                          int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k,
                                          float scale, int64_t ho, int64_t wo, int threads, char *err, size_t err_len);
/* The backward of a variant (float32): gfeat [N,C,H,W] and gmask [N,G*k*k,Ho,Wo] are written
 * whole; either may be NULL when that gradient is not wanted. */
CARAFE_EXPORT int stardetr_carafe_backward(const char *variant, const float *feat, const float *mask,
                                           const float *gout, float *gfeat, float *gmask, int64_t n, int64_t c,
                                           int64_t h, int64_t w, int64_t groups, int64_t k, float scale, int64_t ho,
                                           int64_t wo, int threads, char *err, size_t err_len);
/* The reference backward in float64 (gradcheck): the same loops as the float32 reference. */
CARAFE_EXPORT int stardetr_carafe_backward_f64(const double *feat, const double *mask, const double *gout,
                                               double *gfeat, double *gmask, int64_t n, int64_t c, int64_t h,
                                               int64_t w, int64_t groups, int64_t k, float scale, int64_t ho,
                                               int64_t wo, int threads, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
