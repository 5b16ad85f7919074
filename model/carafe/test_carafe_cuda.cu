// GPU test of the CUDA CARAFE kernel (carafe_cuda.cu) against the C reference (carafe_ref.c),
// run by `scripts/gpu check` on a machine with an NVIDIA GPU. Usage:
//   test_carafe_cuda            correctness on every shape, then the timings
//   test_carafe_cuda --small    correctness on three small shapes only (for compute-sanitizer)
//
// Correctness: every CPU test shape (carafe_test.h) plus the shapes below, masks softmaxed and
// uniform in (-1,1), each with and without NaN/Inf on the feature borders, in four type pairs
// (features/masks float32/float16). float32 output must be within 1e-5*(1 + sum|m*f|) of the
// reference; float16 output within 1e-4 + 1e-3*|ref| of the float32 reference computed on the
// float16-rounded inputs; NaN and Inf must match exactly. Issue 17's NaN case is checked by value.
//
// Side by side with the host emulation (carafe_cuda_emu.h, what `make test` runs without a GPU):
// for every one of those launches the emulated kernel, with this GPU's multiprocessor count, must
// give the same output bit for bit (NaN as NaN), and the emulation's float16 conversions must be
// CUDA's (__float2half, __half2float) bit for bit. Then every difference between the two is a
// difference between the CPU and the GPU running the same code, not one of the code.
//
// Timings (20 warm-up calls, 200 timed, CUDA events): the model's heaviest node (256 channels,
// 40x40 -> 80x80, k=5, s=2) and its k=3 s=1 node (256 channels, 80x80), float32 and float16, in
// microseconds and GB/s of the unavoidable bytes (features and masks read once, output written
// once), one line each: "bench NAME DTYPE US GBPS" (scripts/gpu joins them with PyTorch's).
// Last line: "N passed, M failed"; exit status 1 if any failed, 2 if CUDA itself failed.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "carafe.h"
#include "carafe_cuda.h"
#include "carafe_cuda_emu.h"
#include "carafe_test.h"


#define CUDA_OK(call)                                                                                            \
	do {                                                                                                         \
		const cudaError_t e_ = (call);                                                                           \
		if (e_ != cudaSuccess) {                                                                                 \
			fprintf(stderr, "test_carafe_cuda: %s: %s\n", #call, cudaGetErrorString(e_));                        \
			exit(2);                                                                                             \
		}                                                                                                        \
	} while (0)


static carafe_dims dims_of(const carafe_shape &s)
{
	carafe_dims d;
	char msg[256];
	const int64_t ho = carafe_out_size(s.h, s.s), wo = carafe_out_size(s.w, s.s);
	if (carafe_dims_init(&d, s.n, s.c, s.h, s.w, s.g * s.k * s.k, ho, wo, s.g, s.k, s.s, msg, sizeof msg)) {
		fprintf(stderr, "test_carafe_cuda: bad test shape: %s\n", msg);
		exit(2);
	}
	return d;
}

static void reference(const carafe_dims &d, const float *feat, const float *mask, float *out)
{
	const size_t tasks = carafe_ref_tasks(&d);
	for (size_t t = 0; t < tasks; t++)
		carafe_ref_run(&d, feat, mask, out, t);
}

static float round_half(float x) { return __half2float(__float2half(x)); }

// Device buffer holding a host float array as float32 or float16.
struct DevBuf {
	void *p = nullptr;
	size_t count = 0;
	bool half = false;
	DevBuf(size_t n, bool h) : count(n), half(h)
	{
		if (n)
			CUDA_OK(cudaMalloc(&p, n * (h ? sizeof(__half) : sizeof(float))));
	}
	~DevBuf() { cudaFree(p); }
	DevBuf(const DevBuf &) = delete;
	DevBuf &operator=(const DevBuf &) = delete;
	void put(const float *v)
	{
		if (!count)
			return;
		if (half) {
			std::vector<__half> h(count);
			for (size_t i = 0; i < count; i++)
				h[i] = __float2half(v[i]);
			CUDA_OK(cudaMemcpy(p, h.data(), count * sizeof(__half), cudaMemcpyHostToDevice));
		} else {
			CUDA_OK(cudaMemcpy(p, v, count * sizeof(float), cudaMemcpyHostToDevice));
		}
	}
	void fill_nan() // every output element must be written
	{
		if (count)
			CUDA_OK(cudaMemset(p, 0xff, count * (half ? sizeof(__half) : sizeof(float))));
	}
	std::vector<float> get() const
	{
		std::vector<float> v(count);
		if (!count)
			return v;
		if (half) {
			std::vector<__half> h(count);
			CUDA_OK(cudaMemcpy(h.data(), p, count * sizeof(__half), cudaMemcpyDeviceToHost));
			for (size_t i = 0; i < count; i++)
				v[i] = __half2float(h[i]);
		} else {
			CUDA_OK(cudaMemcpy(v.data(), p, count * sizeof(float), cudaMemcpyDeviceToHost));
		}
		return v;
	}
};

static int launch(cudaStream_t stream, bool fh, bool mh, const DevBuf &f, const DevBuf &m, DevBuf &o,
                  const carafe_dims &d, char *err, size_t err_len)
{
	return stardetr_carafe_cuda_launch(stream, fh, mh, f.p, m.p, o.p, &d, err, err_len);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

// Masks: uniform in (-1,1), or a softmax over each pixel's k*k taps per group.
static std::vector<float> make_masks(const carafe_dims &d, bool softmax)
{
	const int64_t kk = d.k * d.k, howo = d.ho * d.wo;
	std::vector<float> m((size_t)(d.n * d.groups * kk * howo));
	for (auto &v : m)
		v = carafe_rnd(&rng_state);
	if (!softmax)
		return m;
	for (int64_t ng = 0; ng < d.n * d.groups; ng++)
		for (int64_t p = 0; p < howo; p++) {
			float *b = m.data() + ng * kk * howo + p;
			double sum = 0;
			for (int64_t t = 0; t < kk; t++)
				sum += exp(3.0 * b[t * howo]);
			for (int64_t t = 0; t < kk; t++)
				b[t * howo] = (float)(exp(3.0 * b[t * howo]) / sum);
		}
	return m;
}

static const char *type_name(bool half) { return half ? "f16" : "f32"; }

static int sm_count; // this GPU's multiprocessors: the emulation plans the same launch

// The emulated kernel against the GPU's output: identical bits, a NaN for a NaN.
static void same_as_emulated(const carafe_dims &d, bool fh, bool mh, const std::vector<float> &f,
                             const std::vector<float> &m, const std::vector<float> &gpu, const char *what)
{
	std::vector<float> emu(gpu.size(), NAN);
	char err[320] = "";
	const int rc = carafe_cuda::emulate_floats(&d, sm_count, fh, mh, f.data(), m.data(), emu.data(), err, sizeof err);
	size_t diff = 0, first = 0;
	for (size_t i = 0; i < gpu.size(); i++) {
		const bool same = (isnan(emu[i]) && isnan(gpu[i])) || memcmp(&emu[i], &gpu[i], sizeof(float)) == 0;
		if (!same && diff++ == 0)
			first = i;
	}
	check(rc == 0 && diff == 0, "emulated vs GPU kernel, %s: rc=%d %s, %zu of %zu outputs differ (first at %zu: emulated %a, GPU %a)",
	      what, rc, err, diff, gpu.size(), first, diff ? (double)emu[first] : 0.0, diff ? (double)gpu[first] : 0.0);
}

// The emulation's float16 conversions against CUDA's own, on every half and around every midpoint.
static void f16_matches_cuda()
{
	size_t bad = 0, n = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		__half_raw raw;
		raw.x = (unsigned short)h;
		const float want = __half2float(__half(raw)), got = carafe_cuda::f16_to_float((uint16_t)h);
		bad += !((isnan(want) && isnan(got)) || memcmp(&want, &got, sizeof want) == 0);
		n++;
		if (h >= 0x7c00 || (h & 0x8000))
			continue;
		const float a = got, b = carafe_cuda::f16_to_float((uint16_t)(h + 1)), mid = (a + b) / 2;
		for (float x : {a, mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY), -mid}) {
			const __half_raw w = __half_raw(__float2half(x));
			bad += w.x != carafe_cuda::float_to_f16(x);
			n++;
		}
	}
	check(bad == 0, "emulation's float16 conversions vs CUDA's: %zu of %zu differ", bad, n);
}

// One shape: every mask kind, border poisoning and type pair against the reference.
static void compare(const carafe_shape &s, bool small)
{
	const carafe_dims d = dims_of(s);
	const size_t nf = (size_t)(d.n * d.c * d.h * d.w), no = (size_t)(d.n * d.c * d.ho * d.wo);
	for (int softmax = 0; softmax < 2; softmax++)
		for (int poison = 0; poison < 2; poison++) {
			std::vector<float> feat(nf);
			for (auto &v : feat)
				v = carafe_rnd(&rng_state);
			if (poison && nf)
				carafe_poison_border(feat.data(), d.n, d.c, d.h, d.w);
			const std::vector<float> mask = make_masks(d, softmax);
			for (int types = 0; types < 4; types++) {
				const bool fh = types & 1, mh = types & 2;
				if (small && types != 0 && types != 3)
					continue;
				std::vector<float> f = feat, m = mask;
				if (fh)
					for (auto &v : f)
						v = round_half(v);
				if (mh)
					for (auto &v : m)
						v = round_half(v);
				// The reference on the inputs the GPU sees, and on their magnitudes for the float32 bound.
				std::vector<float> ref(no), mag(no), fa(f), ma(m);
				reference(d, f.data(), m.data(), ref.data());
				for (auto &v : fa)
					v = fabsf(v);
				for (auto &v : ma)
					v = fabsf(v);
				reference(d, fa.data(), ma.data(), mag.data());
				for (auto &v : mag)
					v = 1.0f + v;

				DevBuf df(nf, fh), dm(m.size(), mh), dout(no, fh);
				df.put(f.data());
				dm.put(m.data());
				dout.fill_nan();
				char err[320] = "";
				const int rc = launch(0, fh, mh, df, dm, dout, d, err, sizeof err);
				const cudaError_t sync = cudaDeviceSynchronize();
				const std::vector<float> got = dout.get();
				size_t at = 0;
				const double worst = fh ? carafe_mismatch(got.data(), ref.data(), NULL, no, 1e-4, 1e-3, &at)
				                        : carafe_mismatch(got.data(), ref.data(), mag.data(), no, 0, 1e-5, &at);
				char what[200];
				snprintf(what, sizeof what, "features %s masks %s N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g masks %s%s",
				         type_name(fh), type_name(mh), (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w,
				         (long long)s.g, (long long)s.k, (double)s.s, softmax ? "softmax" : "uniform",
				         poison ? " NaN/Inf border" : "");
				same_as_emulated(d, fh, mh, f, m, got, what);
				check(rc == 0 && sync == cudaSuccess && worst <= 1,
				      "features %s masks %s N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g masks %s%s: rc=%d %s sync=%s "
				      "worst/tolerance=%g at %zu (got %g, want %g)",
				      type_name(fh), type_name(mh), (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w,
				      (long long)s.g, (long long)s.k, (double)s.s, softmax ? "softmax" : "uniform",
				      poison ? " NaN/Inf border" : "", rc, err, cudaGetErrorString(sync), worst, at,
				      no ? (double)got[at] : 0.0, no ? (double)ref[at] : 0.0);
			}
		}
}

// Issue 17's repro by value: fp32, N=C=G=1, 8x8, k=3, s=2, masks 1/9, features 1 except a NaN
// at (0,0): out[0,0,0,8] reads six in-image taps, so 2/3, never NaN.
static void nan_corner()
{
	const carafe_shape s = {1, 1, 8, 8, 1, 3, 2};
	const carafe_dims d = dims_of(s);
	std::vector<float> feat(64, 1.0f), mask(9 * 256, 1.0f / 9.0f);
	feat[0] = NAN;
	DevBuf df(64, false), dm(mask.size(), false), dout(256, false);
	df.put(feat.data());
	dm.put(mask.data());
	dout.fill_nan();
	char err[320] = "";
	const int rc = launch(0, false, false, df, dm, dout, d, err, sizeof err);
	CUDA_OK(cudaDeviceSynchronize());
	const std::vector<float> out = dout.get();
	check(rc == 0 && fabsf(out[8] - 6.0f / 9.0f) <= 1e-6f, "NaN at feat[0,0,0,0]: out[0,0,0,8]=%g, want 0.667 (%s)",
	      (double)out[8], err);
}

// N=0 (and C=0): nothing to do, success, nothing launched.
static void empty()
{
	const carafe_shape shapes[] = {{0, 8, 5, 5, 1, 3, 2}, {1, 0, 5, 5, 1, 3, 2}};
	for (const carafe_shape &s : shapes) {
		const carafe_dims d = dims_of(s);
		char err[320] = "";
		const int rc = stardetr_carafe_cuda_launch(0, 0, 0, NULL, NULL, NULL, &d, err, sizeof err);
		check(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "N=%lld C=%lld: rc=%d %s", (long long)s.n,
		      (long long)s.c, rc, err);
	}
}

// An earlier pending error is not reported as this launch's: provoke one (an invalid launch
// configuration is a non-sticky error), then launch CARAFE, which must succeed.
__global__ void noop() {}
static void stale_error()
{
	noop<<<1, 4096>>>(); // more threads per block than any GPU allows
	const carafe_shape s = {1, 4, 5, 5, 1, 3, 2};
	const carafe_dims d = dims_of(s);
	std::vector<float> feat(100, 0.5f), mask(9 * 100, 0.1f);
	DevBuf df(feat.size(), false), dm(mask.size(), false), dout(400, false);
	df.put(feat.data());
	dm.put(mask.data());
	char err[320] = "";
	const int rc = launch(0, false, false, df, dm, dout, d, err, sizeof err);
	check(rc == 0 && cudaDeviceSynchronize() == cudaSuccess && cudaGetLastError() == cudaSuccess,
	      "launch after an unrelated pending error: rc=%d %s", rc, err);
}

// The model's ten nodes at 640 (FreqFusion, N=1, G=1): every one must launch at least one
// resident block's worth of threads per multiprocessor, or all its channels in parallel.
static void occupancy(int sms)
{
	for (int level = 0; level < 2; level++) {
		const int64_t hr = level ? 80 : 40, lr = hr / 2;
		const carafe_shape nodes[] = {{1, 64, hr, hr, 1, 3, 1},
		                              {1, 25, lr, lr, 1, 5, 2},
		                              {1, 9, lr, lr, 1, 5, 2},
		                              {1, 256, lr, lr, 1, 5, 2},
		                              {1, 256, hr, hr, 1, 3, 1}};
		for (const carafe_shape &s : nodes) {
			const carafe_dims d = dims_of(s);
			const long long chunk = stardetr_carafe_cuda_chunk(&d, sms), px = d.ho * d.wo;
			const long long threads = px * ((d.c + chunk - 1) / chunk);
			const long long want = (long long)sms * 1024 < px * d.c ? (long long)sms * 1024 : px * d.c;
			printf("node C=%lld %lldx%lld k=%lld s=%g: %lld channels per thread, %lld blocks of 128\n",
			       (long long)d.c, (long long)d.h, (long long)d.w, (long long)d.k, (double)d.scale, chunk,
			       (threads + 127) / 128);
			check(threads >= want, "node C=%lld %lldx%lld: %lld threads, want >= %lld", (long long)d.c,
			      (long long)d.h, (long long)d.w, threads, want);
		}
	}
}

static void bench(const char *name, const carafe_shape &s, bool half)
{
	const carafe_dims d = dims_of(s);
	const size_t nf = (size_t)(d.n * d.c * d.h * d.w), nm = (size_t)(d.n * d.groups * d.k * d.k * d.ho * d.wo);
	const size_t no = (size_t)(d.n * d.c * d.ho * d.wo);
	std::vector<float> f(nf), m(nm);
	for (auto &v : f)
		v = carafe_rnd(&rng_state);
	for (auto &v : m)
		v = carafe_rnd(&rng_state);
	DevBuf df(nf, half), dm(nm, half), dout(no, half);
	df.put(f.data());
	dm.put(m.data());
	cudaStream_t stream;
	CUDA_OK(cudaStreamCreate(&stream));
	char err[320] = "";
	for (int i = 0; i < 20; i++)
		if (launch(stream, half, half, df, dm, dout, d, err, sizeof err)) {
			check(false, "bench %s: %s", name, err);
			return;
		}
	cudaEvent_t t0, t1;
	CUDA_OK(cudaEventCreate(&t0));
	CUDA_OK(cudaEventCreate(&t1));
	CUDA_OK(cudaEventRecord(t0, stream));
	const int runs = 200;
	for (int i = 0; i < runs; i++)
		launch(stream, half, half, df, dm, dout, d, err, sizeof err);
	CUDA_OK(cudaEventRecord(t1, stream));
	CUDA_OK(cudaEventSynchronize(t1));
	float ms = 0;
	CUDA_OK(cudaEventElapsedTime(&ms, t0, t1));
	const double us = 1e3 * ms / runs, bytes = (double)(nf + nm + no) * (half ? 2 : 4);
	printf("bench %s %s %.2f %.1f\n", name, half ? "fp16" : "fp32", us, bytes / (us * 1e3));
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
	printf("GPU %s, sm_%d%d, %d multiprocessors\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
	sm_count = prop.multiProcessorCount;
	f16_matches_cuda();

	std::vector<carafe_shape> shapes;
	if (small) {
		shapes = {{1, 5, 3, 4, 1, 3, 2}, {2, 6, 5, 7, 2, 5, 1}, {1, 8, 4, 3, 8, 7, 3}};
	} else {
		carafe_shape cpu[64];
		shapes.assign(cpu, cpu + carafe_test_shapes(cpu, 64));
		carafe_shape extra[32];
		shapes.insert(shapes.end(), extra, extra + carafe_test_shapes_cuda(extra, 32));
	}
	int partial = 0;
	for (const carafe_shape &s : shapes) {
		const carafe_dims d = dims_of(s);
		const long long chunk = stardetr_carafe_cuda_chunk(&d, prop.multiProcessorCount);
		partial += (d.c / d.groups) % chunk != 0;
		compare(s, small);
	}
	nan_corner();
	if (!small) {
		check(partial > 0, "no test shape has a partial channel chunk");
		empty();
		stale_error();
		occupancy(prop.multiProcessorCount);
		const carafe_shape heavy = {1, 256, 40, 40, 1, 5, 2}, k3 = {1, 256, 80, 80, 1, 3, 1};
		for (int half = 0; half < 2; half++) {
			bench("c256_40x40_k5s2", heavy, half);
			bench("c256_80x80_k3s1", k3, half);
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
