/* CARAFE benchmark: for each FreqFusion call shape at 640 input, time per call of
 *   - the reference kernel and the optimised kernel, called directly, one thread;
 *   - ONNX Runtime running one MMCVCARAFE node from this plugin, 1 and 2 intra-op threads;
 *   - ONNX Runtime running the same CARAFE in standard ONNX ops (carafe_graphs.py's
 *     decomposition: Pad, Slice x k*k, Concat, Gather, Mul, ReduceSum), 1 and 2 threads;
 * with the ratios side by side and the optimised kernel's GB/s (features + masks + output
 * bytes, each touched once) against this machine's memory bandwidth measured here (triad).
 * Times are the minimum over repeated calls: the machine is shared and noisy.
 * Usage: bench_carafe GRAPH_DIR PLUGIN.so */
#include "carafe.h"
#include "onnxruntime_c_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const OrtApi *api;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void ort_check(OrtStatus *st, const char *what)
{
	if (st) {
		fprintf(stderr, "bench_carafe: %s: %s\n", what, api->GetErrorMessage(st));
		exit(1);
	}
}

/* Minimum seconds per call of fn over at least 3 calls and about budget seconds, after a warm-up. */
typedef void (*bench_fn)(void *);
static double time_min(bench_fn fn, void *arg, double budget)
{
	fn(arg);
	double best = INFINITY, start = now();
	for (int reps = 0; reps < 3 || (now() - start < budget && reps < 1000); reps++) {
		double t0 = now();
		fn(arg);
		double dt = now() - t0;
		if (dt < best)
			best = dt;
	}
	return best;
}

typedef struct triad_arg {
	float *a, *b, *c;
	size_t n;
} triad_arg;
static void triad(void *p)
{
	triad_arg *t = p;
	for (size_t i = 0; i < t->n; i++)
		t->a[i] = t->b[i] + 3.0f * t->c[i];
	__asm__ volatile("" ::: "memory");
}
static void copy(void *p)
{
	triad_arg *t = p;
	memcpy(t->a, t->b, t->n * sizeof(float));
	__asm__ volatile("" ::: "memory");
}

typedef struct shape {
	char id[64];
	long c, h, w, g, k, s;
	float *feat, *mask, *out;
	size_t nf, nm, no;
} shape;

typedef struct direct_arg {
	const char *variant;
	shape *sh;
} direct_arg;
static void direct(void *p)
{
	direct_arg *d = p;
	shape *s = d->sh;
	char err[256];
	if (stardetr_carafe_run(d->variant, s->feat, s->mask, s->out, 1, s->c, s->h, s->w, s->g, s->k, (float)s->s,
	                        s->h * s->s, s->w * s->s, err, sizeof err)) {
		fprintf(stderr, "bench_carafe: %s: %s\n", d->variant, err);
		exit(1);
	}
}

typedef struct ort_arg {
	OrtSession *sess;
	OrtValue *in[2], *out;
} ort_arg;
static void ort_run(void *p)
{
	ort_arg *o = p;
	static const char *in_names[2] = {"features", "masks"}, *out_names[1] = {"output"};
	ort_check(api->Run(o->sess, NULL, in_names, (const OrtValue *const *)o->in, 2, out_names, 1, &o->out), "Run");
}

static OrtValue *wrap(OrtMemoryInfo *mi, float *data, size_t n, const int64_t dims[4])
{
	OrtValue *v;
	ort_check(api->CreateTensorWithDataAsOrtValue(mi, data, n * sizeof(float), dims, 4,
	                                              ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &v),
	          "tensor");
	return v;
}

/* Seconds per call of the graph at path with the given intra-op threads; the output lands in out. */
static double time_graph(OrtEnv *env, const char *path, const char *plugin, int threads, shape *s, float *out)
{
	OrtSessionOptions *so;
	ort_check(api->CreateSessionOptions(&so), "options");
	ort_check(api->SetIntraOpNumThreads(so, threads), "threads");
	ort_check(api->SetInterOpNumThreads(so, 1), "threads");
	ort_check(api->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL), "optimisation level");
	ort_check(api->RegisterCustomOpsLibrary_V2(so, plugin), plugin);
	ort_arg o;
	ort_check(api->CreateSession(env, path, so, &o.sess), path);
	OrtMemoryInfo *mi;
	ort_check(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mi), "memory info");
	const int64_t fd[4] = {1, s->c, s->h, s->w}, md[4] = {1, s->g * s->k * s->k, s->h * s->s, s->w * s->s},
	              od[4] = {1, s->c, s->h * s->s, s->w * s->s};
	o.in[0] = wrap(mi, s->feat, s->nf, fd);
	o.in[1] = wrap(mi, s->mask, s->nm, md);
	o.out = wrap(mi, out, s->no, od);
	const double t = time_min(ort_run, &o, 0.4);
	api->ReleaseValue(o.in[0]), api->ReleaseValue(o.in[1]), api->ReleaseValue(o.out);
	api->ReleaseMemoryInfo(mi);
	api->ReleaseSession(o.sess);
	api->ReleaseSessionOptions(so);
	return t;
}

static float rnd(void)
{
	static unsigned long long x = 88172645463325252ull;
	x ^= x << 13, x ^= x >> 7, x ^= x << 17;
	return (float)(x >> 40) / 16777216.0f - 0.5f;
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (!(d <= m))
			m = d;
	}
	return m;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_carafe GRAPH_DIR PLUGIN.so\n");
		return 2;
	}
	const char *dir = argv[1], *plugin = argv[2];
	api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	if (!api) {
		fprintf(stderr, "bench_carafe: ONNX Runtime %s lacks C API %d\n", OrtGetApiBase()->GetVersionString(),
		        ORT_API_VERSION);
		return 1;
	}
	OrtEnv *env;
	ort_check(api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "bench_carafe", &env), "env");

	/* Memory bandwidth: three 64 MiB arrays, far beyond any cache. */
	triad_arg ta = {.n = (size_t)16 << 20};
	ta.a = malloc(ta.n * 4), ta.b = malloc(ta.n * 4), ta.c = malloc(ta.n * 4);
	for (size_t i = 0; i < ta.n; i++)
		ta.a[i] = 0, ta.b[i] = 1, ta.c[i] = 2;
	const double t_triad = time_min(triad, &ta, 1.0), t_copy = time_min(copy, &ta, 1.0);
	const double bw = 3.0 * (double)ta.n * 4 / t_triad / 1e9, bw_copy = 2.0 * (double)ta.n * 4 / t_copy / 1e9;
	free(ta.a), free(ta.b), free(ta.c);
	char best_name[32];
	{
		const char *v = stardetr_carafe_variants(), *last = strrchr(v, ',');
		snprintf(best_name, sizeof best_name, "%s", last ? last + 1 : v);
	}
	printf("libstardetr_carafe %s, ONNX Runtime %s, optimised variant: %s\n", stardetr_carafe_version(),
	       OrtGetApiBase()->GetVersionString(), best_name);
	printf("memory bandwidth, 1 thread: triad %.1f GB/s, memcpy %.1f GB/s (read+write bytes)\n", bw, bw_copy);
	printf("times in ms per call (min of repeated calls); opt = %s kernel called directly, 1 thread; ort1/ort2 = "
	       "plugin in ONNX Runtime, 1/2 threads; std1/std2 = standard-op decomposition in ONNX Runtime\n",
	       best_name);
	printf("%-20s %8s %7s %7s %7s %8s %8s | %7s %8s %8s | %6s %5s | %s\n", "shape (C HxW k s)", "ref", "opt", "ort1",
	       "ort2", "std1", "std2", "ref/opt", "std1/ort1", "std2/ort2", "GB/s", "%bw", "max|plugin-std|");

	char path[1024];
	snprintf(path, sizeof path, "%s/shapes.txt", dir);
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "bench_carafe: %s: run carafe_graphs.py bench %s first\n", path, dir);
		return 1;
	}
	shape s;
	while (fscanf(f, "%63s %ld %ld %ld %ld %ld %ld", s.id, &s.c, &s.h, &s.w, &s.g, &s.k, &s.s) == 7) {
		s.nf = (size_t)(s.c * s.h * s.w);
		s.nm = (size_t)(s.g * s.k * s.k * s.h * s.s * s.w * s.s);
		s.no = (size_t)(s.c * s.h * s.s * s.w * s.s);
		s.feat = malloc(s.nf * 4), s.mask = malloc(s.nm * 4), s.out = malloc(s.no * 4);
		float *out_std = malloc(s.no * 4);
		for (size_t i = 0; i < s.nf; i++)
			s.feat[i] = rnd();
		for (size_t i = 0; i < s.nm; i++)
			s.mask[i] = rnd();
		direct_arg ref = {"reference", &s}, opt = {"best", &s};
		const double t_ref = time_min(direct, &ref, 0.5), t_opt = time_min(direct, &opt, 0.4);
		snprintf(path, sizeof path, "%s/carafe_%s.onnx", dir, s.id);
		const double t_ort1 = time_graph(env, path, plugin, 1, &s, s.out);
		const double t_ort2 = time_graph(env, path, plugin, 2, &s, s.out);
		snprintf(path, sizeof path, "%s/decomp_%s.onnx", dir, s.id);
		const double t_std1 = time_graph(env, path, plugin, 1, &s, out_std);
		const double t_std2 = time_graph(env, path, plugin, 2, &s, out_std);
		const double bytes = 4.0 * (double)(s.nf + s.nm + s.no), gbs = bytes / t_opt / 1e9;
		char label[64];
		snprintf(label, sizeof label, "%ld %ldx%ld k%ld s%ld", s.c, s.h, s.w, s.k, s.s);
		printf("%-20s %8.3f %7.3f %7.3f %7.3f %8.3f %8.3f | %6.1fx %7.1fx %7.1fx | %6.1f %4.0f%% | %.1e  %s\n", label,
		       t_ref * 1e3, t_opt * 1e3, t_ort1 * 1e3, t_ort2 * 1e3, t_std1 * 1e3, t_std2 * 1e3, t_ref / t_opt,
		       t_std1 / t_ort1, t_std2 / t_ort2, gbs, 100 * gbs / bw, max_diff(s.out, out_std, s.no), s.id);
		fflush(stdout);
		free(s.feat), free(s.mask), free(s.out), free(out_std);
	}
	fclose(f);
	api->ReleaseEnv(env);
	return 0;
}
