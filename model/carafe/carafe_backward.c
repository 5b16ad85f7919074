/* CARAFE for training: the reference backward (float and double), backward variant selection,
 * the thread pool of the training entry points, and those entry points (forward and backward
 * spread over threads, called by PyTorch through ctypes: model/reference/carafe_lib.py). */
#include "carafe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T float
#define REF(x) CARAFE_CAT(carafe_bwd_ref32_, x)
#define REF_LINKAGE static
#include "carafe_backward_ref.h"
#undef T
#undef REF
#undef REF_LINKAGE

#define T double
#define REF(x) CARAFE_CAT(carafe_bwd_ref64_, x)
#define REF_LINKAGE static
#include "carafe_backward_ref.h"
#undef T
#undef REF
#undef REF_LINKAGE

size_t carafe_bwd_ref_feat_tasks(const carafe_dims *d) { return (size_t)(d->n * d->c); }
size_t carafe_bwd_ref_mask_tasks(const carafe_dims *d) { return (size_t)(d->n * d->ho); }
size_t carafe_bwd_ref_scratch(const carafe_dims *d)
{
	(void)d;
	return 0;
}

void carafe_bwd_ref_feat_run(const carafe_dims *d, const float *mask, const float *gout, float *gfeat, size_t task,
                             float *scratch)
{
	(void)scratch;
	carafe_bwd_ref32_feat_run(d, mask, gout, gfeat, task);
}

void carafe_bwd_ref_mask_run(const carafe_dims *d, const float *feat, const float *gout, float *gmask, size_t task,
                             float *scratch)
{
	(void)scratch;
	carafe_bwd_ref32_mask_run(d, feat, gout, gmask, task);
}

const carafe_bwd_variant carafe_bwd_variant_reference = {
	"reference",
	carafe_bwd_ref_feat_tasks, carafe_bwd_ref_scratch, carafe_bwd_ref_feat_run,
	carafe_bwd_ref_mask_tasks, carafe_bwd_ref_scratch, carafe_bwd_ref_mask_run,
};

const carafe_bwd_variant *carafe_find_bwd_variant(const char *name)
{
	/* The backward variants are compiled next to the forward ones (carafe_avx2.c, ...): a
	 * forward variant this CPU supports has its backward too. */
	const carafe_variant *v = carafe_find_variant(name);
	if (!v)
		return NULL;
	if (v == &carafe_variant_reference)
		return &carafe_bwd_variant_reference;
	if (v == &carafe_variant_generic)
		return &carafe_bwd_variant_generic;
#if defined(__x86_64__)
	if (v == &carafe_variant_avx2)
		return &carafe_bwd_variant_avx2;
#endif
#if defined(__aarch64__)
	if (v == &carafe_variant_neon)
		return &carafe_bwd_variant_neon;
#endif
	return NULL;
}

/* --- thread pool: one parallel region per call ----------------------------------------------- */

#define CARAFE_MAX_THREADS 256

typedef struct pool {
	size_t tasks;
	atomic_size_t next;
	atomic_int workers;
	void (*fn)(void *arg, size_t task, int worker);
	void *arg;
} pool;

static void *pool_worker(void *p)
{
	pool *q = p;
	const int me = atomic_fetch_add(&q->workers, 1);
	for (size_t t; (t = atomic_fetch_add(&q->next, 1)) < q->tasks;)
		q->fn(q->arg, t, me);
	return NULL;
}

int carafe_parallel(size_t tasks, int threads, void (*fn)(void *arg, size_t task, int worker), void *arg)
{
	if (threads < 1)
		threads = 1;
	if (threads > CARAFE_MAX_THREADS)
		threads = CARAFE_MAX_THREADS;
	if ((size_t)threads > tasks)
		threads = tasks > 0 ? (int)tasks : 1;
	pool q = {.tasks = tasks, .fn = fn, .arg = arg};
	atomic_init(&q.next, 0);
	atomic_init(&q.workers, 0);
	pthread_t tid[CARAFE_MAX_THREADS];
	int started = 0;
	/* A thread that cannot be created leaves its share to the others: still correct, just slower. */
	while (started + 1 < threads && pthread_create(&tid[started], NULL, pool_worker, &q) == 0)
		started++;
	pool_worker(&q);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return started + 1;
}

/* --- exported entry points ---------------------------------------------------------------------- */

/* Fills d from the call's sizes; -2 and the rule in err when they are invalid. */
static int prepare(carafe_dims *d, int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k, float scale,
                   int64_t ho, int64_t wo, char *err, size_t err_len)
{
	char buf[256];
	if (carafe_dims_init(d, n, c, h, w, groups * k * k, ho, wo, groups, k, scale, buf, sizeof buf)) {
		if (err)
			snprintf(err, err_len, "%s", buf);
		return -2;
	}
	return 0;
}

typedef struct fwd_job {
	const carafe_variant *v;
	const carafe_dims *d;
	const float *feat, *mask;
	float *out;
} fwd_job;

static void fwd_task(void *arg, size_t task, int worker)
{
	(void)worker;
	const fwd_job *j = arg;
	j->v->run(j->d, j->feat, j->mask, j->out, task);
}

int stardetr_carafe_forward(const char *variant, const float *feat, const float *mask, float *out, int64_t n,
                            int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k, float scale, int64_t ho,
                            int64_t wo, int threads, char *err, size_t err_len)
{
	const carafe_variant *v = carafe_find_variant(variant ? variant : "best");
	if (!v) {
		if (err)
			snprintf(err, err_len, "variant %s is not available (have %s)", variant, stardetr_carafe_variants());
		return -1;
	}
	carafe_dims d;
	const int rc = prepare(&d, n, c, h, w, groups, k, scale, ho, wo, err, err_len);
	if (rc)
		return rc;
	fwd_job j = {v, &d, feat, mask, out};
	carafe_parallel(v->tasks(&d), threads, fwd_task, &j);
	return 0;
}

/* One backward call: the gmask tasks first (they are the larger ones), then the gfeat tasks. */
typedef struct bwd_job {
	const carafe_bwd_variant *v;
	const carafe_dims *d;
	const float *feat, *mask, *gout;
	float *gfeat, *gmask;
	size_t mask_tasks;
	float *scratch; /* one buffer of scratch_floats per worker */
	size_t scratch_floats;
} bwd_job;

static void bwd_task(void *arg, size_t task, int worker)
{
	const bwd_job *j = arg;
	float *scratch = j->scratch ? j->scratch + (size_t)worker * j->scratch_floats : NULL;
	if (task < j->mask_tasks)
		j->v->mask_run(j->d, j->feat, j->gout, j->gmask, task, scratch);
	else
		j->v->feat_run(j->d, j->mask, j->gout, j->gfeat, task - j->mask_tasks, scratch);
}

int stardetr_carafe_backward(const char *variant, const float *feat, const float *mask, const float *gout,
                             float *gfeat, float *gmask, int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups,
                             int64_t k, float scale, int64_t ho, int64_t wo, int threads, char *err, size_t err_len)
{
	const carafe_bwd_variant *v = carafe_find_bwd_variant(variant ? variant : "best");
	if (!v) {
		if (err)
			snprintf(err, err_len, "variant %s is not available (have %s)", variant, stardetr_carafe_variants());
		return -1;
	}
	carafe_dims d;
	const int rc = prepare(&d, n, c, h, w, groups, k, scale, ho, wo, err, err_len);
	if (rc)
		return rc;
	const size_t mt = gmask ? v->mask_tasks(&d) : 0, ft = gfeat ? v->feat_tasks(&d) : 0;
	size_t sf = 0;
	if (mt)
		sf = v->mask_scratch(&d);
	if (ft && v->feat_scratch(&d) > sf)
		sf = v->feat_scratch(&d);
	if (threads < 1)
		threads = 1;
	if ((size_t)threads > mt + ft)
		threads = mt + ft > 0 ? (int)(mt + ft) : 1;
	float *scratch = NULL;
	if (sf) {
		scratch = malloc(sizeof(float) * sf * (size_t)threads);
		if (!scratch) {
			if (err)
				snprintf(err, err_len, "out of memory: the backward needs %zu MB of scratch for %d threads",
				         (sizeof(float) * sf * (size_t)threads) >> 20, threads);
			return -3;
		}
	}
	bwd_job j = {v, &d, feat, mask, gout, gfeat, gmask, mt, scratch, sf};
	carafe_parallel(mt + ft, threads, bwd_task, &j);
	free(scratch);
	return 0;
}

typedef struct bwd64_job {
	const carafe_dims *d;
	const double *feat, *mask, *gout;
	double *gfeat, *gmask;
	size_t mask_tasks;
} bwd64_job;

static void bwd64_task(void *arg, size_t task, int worker)
{
	(void)worker;
	const bwd64_job *j = arg;
	if (task < j->mask_tasks)
		carafe_bwd_ref64_mask_run(j->d, j->feat, j->gout, j->gmask, task);
	else
		carafe_bwd_ref64_feat_run(j->d, j->mask, j->gout, j->gfeat, task - j->mask_tasks);
}

int stardetr_carafe_backward_f64(const double *feat, const double *mask, const double *gout, double *gfeat,
                                 double *gmask, int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups, int64_t k,
                                 float scale, int64_t ho, int64_t wo, int threads, char *err, size_t err_len)
{
	carafe_dims d;
	const int rc = prepare(&d, n, c, h, w, groups, k, scale, ho, wo, err, err_len);
	if (rc)
		return rc;
	const size_t mt = gmask ? carafe_bwd_ref_mask_tasks(&d) : 0, ft = gfeat ? carafe_bwd_ref_feat_tasks(&d) : 0;
	bwd64_job j = {&d, feat, mask, gout, gfeat, gmask, mt};
	carafe_parallel(mt + ft, threads, bwd64_task, &j);
	return 0;
}
