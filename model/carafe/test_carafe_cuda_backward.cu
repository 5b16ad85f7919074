// GPU test of the CUDA CARAFE backward (carafe_cuda_backward.cu) against the C reference backward
// (carafe_backward_ref.h), run by `scripts/gpu check` on a machine with an NVIDIA GPU. Usage:
//   test_carafe_cuda_backward            correctness on every shape, then the timings
//   test_carafe_cuda_backward --small    correctness on three small shapes only (for compute-sanitizer)
//
// Correctness: every CPU test shape (carafe_test.h, non-integral scales included) plus the shapes below,
// plain and poisoned as in test_carafe_backward.c (NaN/Inf on the feature borders, NaN in the masks of taps
// outside the image, one NaN upstream gradient): both gradients within 1e-5 * (1 + the sum of the terms'
// magnitudes) of the reference, NaN and Inf exactly where the reference has them; each gradient alone.
// Timings (20 warm-up calls, 200 timed, CUDA events): the backward of the model's heaviest node (256
// channels, 40x40 -> 80x80, k=5, s=2) and of its k=3 s=1 node (256 channels, 80x80), "bench_bwd NAME US".
// Last line: "N passed, M failed"; exit status 1 if any failed, 2 if CUDA itself failed.
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "carafe.h"
#include "carafe_cuda_backward.h"
#include "carafe_test.h"

#define CUDA_OK(call)                                                                                            \
	do {                                                                                                         \
		const cudaError_t e_ = (call);                                                                           \
		if (e_ != cudaSuccess) {                                                                                 \
			fprintf(stderr, "test_carafe_cuda_backward: %s: %s\n", #call, cudaGetErrorString(e_));               \
			exit(2);                                                                                             \
		}                                                                                                        \
	} while (0)

static uint64_t rng_state = 0x9b05688c2b3e6c1full;

static carafe_dims dims_of(const carafe_shape &s)
{
	carafe_dims d;
	char msg[256];
	const int64_t ho = carafe_out_size(s.h, s.s), wo = carafe_out_size(s.w, s.s);
	if (carafe_dims_init(&d, s.n, s.c, s.h, s.w, s.g * s.k * s.k, ho, wo, s.g, s.k, s.s, msg, sizeof msg)) {
		fprintf(stderr, "test_carafe_cuda_backward: bad test shape: %s\n", msg);
		exit(2);
	}
	return d;
}

static void reference(const carafe_dims &d, const float *feat, const float *mask, const float *gout, float *gfeat,
                      float *gmask)
{
	for (size_t t = 0; t < carafe_bwd_ref_feat_tasks(&d); t++)
		carafe_bwd_ref_feat_run(&d, mask, gout, gfeat, t, NULL);
	for (size_t t = 0; t < carafe_bwd_ref_mask_tasks(&d); t++)
		carafe_bwd_ref_mask_run(&d, feat, gout, gmask, t, NULL);
}

struct Dev {
	float *p = nullptr;
	size_t count = 0;
	explicit Dev(size_t n) : count(n)
	{
		if (n)
			CUDA_OK(cudaMalloc(&p, n * sizeof(float)));
	}
	~Dev() { cudaFree(p); }
	Dev(const Dev &) = delete;
	Dev &operator=(const Dev &) = delete;
	void put(const std::vector<float> &v)
	{
		if (count)
			CUDA_OK(cudaMemcpy(p, v.data(), count * sizeof(float), cudaMemcpyHostToDevice));
	}
	void fill_nan()
	{
		if (count)
			CUDA_OK(cudaMemset(p, 0xff, count * sizeof(float)));
	}
	std::vector<float> get() const
	{
		std::vector<float> v(count);
		if (count)
			CUDA_OK(cudaMemcpy(v.data(), p, count * sizeof(float), cudaMemcpyDeviceToHost));
		return v;
	}
};

static bool in_image(const carafe_dims &d, int64_t p, int64_t size, int64_t tap)
{
	const int64_t src = carafe_src_index(p, &d) + tap - (d.k - 1) / 2;
	return src >= 0 && src < size;
}

static void compare(const carafe_shape &s)
{
	const carafe_dims d = dims_of(s);
	const int64_t k = d.k, howo = d.ho * d.wo;
	const size_t nf = (size_t)(d.n * d.c * d.h * d.w), nm = (size_t)(d.n * d.groups * k * k * howo);
	const size_t no = (size_t)(d.n * d.c * howo);
	for (int poison = 0; poison < 2; poison++) {
		std::vector<float> feat(nf), mask(nm), gout(no);
		for (auto &v : feat)
			v = carafe_rnd(&rng_state);
		for (auto &v : mask)
			v = carafe_rnd(&rng_state);
		for (auto &v : gout)
			v = carafe_rnd(&rng_state);
		std::vector<float> af(nf), am(nm), ag(no);
		for (size_t i = 0; i < nf; i++)
			af[i] = fabsf(feat[i]);
		for (size_t i = 0; i < nm; i++)
			am[i] = fabsf(mask[i]);
		for (size_t i = 0; i < no; i++)
			ag[i] = fabsf(gout[i]);
		if (poison) {
			if (nf)
				carafe_poison_border(feat.data(), d.n, d.c, d.h, d.w);
			for (int64_t n = 0; n < d.n; n++)
				for (int64_t mc = 0; mc < d.groups * k * k; mc++)
					for (int64_t ph = 0; ph < d.ho; ph++)
						for (int64_t pw = 0; pw < d.wo; pw++)
							if (!in_image(d, ph, d.h, mc / k % k) || !in_image(d, pw, d.w, mc % k))
								mask[(n * d.groups * k * k + mc) * howo + ph * d.wo + pw] = NAN;
			if (howo && d.c)
				for (int64_t n = 0; n < d.n; n++)
					gout[(n * d.c + d.c - 1) * howo + d.wo - 1] = NAN;
		}
		std::vector<float> rf(nf), rm(nm), mf(nf), mm(nm);
		reference(d, feat.data(), mask.data(), gout.data(), rf.data(), rm.data());
		reference(d, af.data(), am.data(), ag.data(), mf.data(), mm.data());
		for (auto &v : mf)
			v = 1.0f + v;
		for (auto &v : mm)
			v = 1.0f + v;

		Dev df(nf), dm(nm), dg(no), dgf(nf), dgm(nm);
		df.put(feat), dm.put(mask), dg.put(gout);
		for (int which = 0; which < 3; which++) { // both, gfeat alone, gmask alone
			dgf.fill_nan(), dgm.fill_nan();
			char err[320] = "";
			const int rc = stardetr_carafe_cuda_backward_launch(0, df.p, dm.p, dg.p, which != 2 ? dgf.p : NULL,
			                                                    which != 1 ? dgm.p : NULL, &d, err, sizeof err);
			const cudaError_t sync = cudaDeviceSynchronize();
			const std::vector<float> gf = dgf.get(), gm = dgm.get();
			size_t atf = 0, atm = 0;
			const double wf = which != 2 ? carafe_mismatch(gf.data(), rf.data(), mf.data(), nf, 0, 1e-5, &atf) : 0;
			const double wm = which != 1 ? carafe_mismatch(gm.data(), rm.data(), mm.data(), nm, 0, 1e-5, &atm) : 0;
			check(rc == 0 && sync == cudaSuccess && wf <= 1 && wm <= 1,
			      "%s N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g%s: rc=%d %s sync=%s gfeat worst/tol=%g at %zu, "
			      "gmask worst/tol=%g at %zu",
			      which == 0 ? "both" : which == 1 ? "gfeat alone" : "gmask alone", (long long)s.n, (long long)s.c,
			      (long long)s.h, (long long)s.w, (long long)s.g, (long long)s.k, (double)s.s,
			      poison ? " poisoned" : "", rc, err, cudaGetErrorString(sync), wf, atf, wm, atm);
		}
	}
}

static void bench(const char *name, const carafe_shape &s)
{
	const carafe_dims d = dims_of(s);
	const size_t nf = (size_t)(d.n * d.c * d.h * d.w), nm = (size_t)(d.n * d.groups * d.k * d.k * d.ho * d.wo);
	const size_t no = (size_t)(d.n * d.c * d.ho * d.wo);
	std::vector<float> f(nf), m(nm), g(no);
	for (auto &v : f)
		v = carafe_rnd(&rng_state);
	for (auto &v : m)
		v = carafe_rnd(&rng_state);
	for (auto &v : g)
		v = carafe_rnd(&rng_state);
	Dev df(nf), dm(nm), dg(no), dgf(nf), dgm(nm);
	df.put(f), dm.put(m), dg.put(g);
	cudaStream_t stream;
	CUDA_OK(cudaStreamCreate(&stream));
	char err[320] = "";
	for (int i = 0; i < 20; i++)
		if (stardetr_carafe_cuda_backward_launch(stream, df.p, dm.p, dg.p, dgf.p, dgm.p, &d, err, sizeof err)) {
			check(false, "bench %s: %s", name, err);
			return;
		}
	cudaEvent_t t0, t1;
	CUDA_OK(cudaEventCreate(&t0));
	CUDA_OK(cudaEventCreate(&t1));
	CUDA_OK(cudaEventRecord(t0, stream));
	const int runs = 200;
	for (int i = 0; i < runs; i++)
		stardetr_carafe_cuda_backward_launch(stream, df.p, dm.p, dg.p, dgf.p, dgm.p, &d, err, sizeof err);
	CUDA_OK(cudaEventRecord(t1, stream));
	CUDA_OK(cudaEventSynchronize(t1));
	float ms = 0;
	CUDA_OK(cudaEventElapsedTime(&ms, t0, t1));
	printf("bench_bwd %s fp32 %.2f\n", name, 1e3 * ms / runs);
	CUDA_OK(cudaEventDestroy(t0));
	CUDA_OK(cudaEventDestroy(t1));
	CUDA_OK(cudaStreamDestroy(stream));
}

int main(int argc, char **argv)
{
	const bool small = argc > 1 && strcmp(argv[1], "--small") == 0;
	int dev = 0;
	cudaDeviceProp prop;
	CUDA_OK(cudaGetDevice(&dev));
	CUDA_OK(cudaGetDeviceProperties(&prop, dev));
	printf("GPU %s, sm_%d%d, %d multiprocessors: CARAFE backward\n", prop.name, prop.major, prop.minor,
	       prop.multiProcessorCount);
	std::vector<carafe_shape> shapes;
	if (small) {
		shapes = {{1, 5, 3, 4, 1, 3, 2}, {2, 6, 5, 7, 2, 5, 1}, {1, 8, 4, 3, 8, 7, 3}};
	} else {
		carafe_shape cpu[64];
		shapes.assign(cpu, cpu + carafe_test_shapes(cpu, 64));
		const carafe_shape extra[] = {
			{1, 6, 13, 11, 2, 9, 2}, {2, 5, 9, 7, 1, 9, 1},   // k=9: the generic-k gmask kernel
			{1, 3, 1, 1, 1, 3, 2},   {1, 20, 17, 9, 1, 3, 2}, // one pixel; channels not a multiple of 8
			{1, 0, 5, 5, 1, 3, 2},   {0, 4, 5, 5, 1, 3, 2},   // C=0 (gmask is all 0), N=0
			{3, 19, 15, 21, 1, 3, 2.5f},
		};
		shapes.insert(shapes.end(), extra, extra + sizeof extra / sizeof extra[0]);
	}
	for (const carafe_shape &s : shapes)
		compare(s);
	if (!small) {
		bench("c256_40x40_k5s2", carafe_shape{1, 256, 40, 40, 1, 5, 2});
		bench("c256_80x80_k3s1", carafe_shape{1, 256, 80, 80, 1, 3, 1});
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
