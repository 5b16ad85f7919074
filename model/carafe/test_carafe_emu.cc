// The CUDA CARAFE kernel executed on the CPU (carafe_cuda_emu.h: the launch's own grid, blocks and
// channel chunks, each thread running the kernel's body from carafe_cuda_body.h), checked against
// the C reference (carafe_ref.c) with g++ only: no nvcc, no GPU. Part of `make test`.
//
//   - the float16 conversions the emulation uses, against the compiler's _Float16 where it has
//     one (GCC on x86-64 and arm64), else against their definition;
//   - the launch plan: refused sizes, empty outputs, occupancy of the model's ten nodes;
//   - every CPU test shape and the CUDA extras (carafe_test.h) up to 2^20 outputs, for GPUs of 1,
//     16 (Jetson AGX Orin) and 132 (H100) multiprocessors, so that the channel chunk varies from
//     whole groups down to one channel per thread: every output written exactly once (an output
//     type that counts its writes), float32 within 1e-5*(1+sum|m*f|) of the reference, with and
//     without NaN/Inf on the feature borders;
//   - for 16 multiprocessors, the three float16 type pairs: within 1e-4 + 1e-3*|ref| of the float32
//     reference computed on the float16-rounded inputs, NaN and Inf exact;
//   - issue 17's NaN corner by value.
// Last line: "N passed, M failed".
#include "carafe.h"
#include "carafe_cuda_emu.h"
#include "carafe_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace {

uint64_t rng_state = 0x6a09e667f3bcc909ull;

carafe_dims dims_of(const carafe_shape &s)
{
	carafe_dims d;
	char msg[256];
	const int64_t ho = carafe_out_size(s.h, s.s), wo = carafe_out_size(s.w, s.s);
	if (carafe_dims_init(&d, s.n, s.c, s.h, s.w, s.g * s.k * s.k, ho, wo, s.g, s.k, s.s, msg, sizeof msg)) {
		fprintf(stderr, "test_carafe_emu: bad test shape: %s\n", msg);
		exit(2);
	}
	return d;
}

void reference(const carafe_dims &d, const float *feat, const float *mask, float *out)
{
	const size_t tasks = carafe_ref_tasks(&d);
	for (size_t t = 0; t < tasks; t++)
		carafe_ref_run(&d, feat, mask, out, t);
}

float round_half(float x) { return carafe_cuda::f16_to_float(carafe_cuda::float_to_f16(x)); }

// An element that counts how often the kernel writes it (reads as 0).
struct Count {
	int writes;
};
inline float load(const Count *) { return 0.0f; }
inline void store(Count *p, float) { p->writes++; }

// The emulated launch on a NaN-filled output (every element must be written), types as the
// launcher picks them: features/output float16 when fh, masks float16 when mh.
std::vector<float> emulate(const carafe_dims &d, int sms, bool fh, bool mh, const std::vector<float> &feat,
                           const std::vector<float> &mask, int *rc, char *err, size_t err_len)
{
	std::vector<float> out((size_t)(d.n * d.c * d.ho * d.wo), NAN);
	*rc = carafe_cuda::emulate_floats(&d, sms, fh, mh, feat.data(), mask.data(), out.data(), err, err_len);
	return out;
}

const char *shape_str(const carafe_shape &s)
{
	static char buf[128];
	snprintf(buf, sizeof buf, "N=%lld C=%lld %lldx%lld G=%lld k=%lld s=%g", (long long)s.n, (long long)s.c,
	         (long long)s.h, (long long)s.w, (long long)s.g, (long long)s.k, (double)s.s);
	return buf;
}

// ---- float16 conversions ----

void f16_conversions()
{
	// half -> float: every one of the 65536 values against its definition.
	int bad = 0, first = -1;
	for (uint32_t h = 0; h < 65536; h++) {
		const float got = carafe_cuda::f16_to_float((uint16_t)h);
		const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
		const double sign = (h & 0x8000) ? -1 : 1;
		double want;
		if (e == 0x1f)
			want = m ? NAN : sign * INFINITY;
		else if (e == 0)
			want = sign * ldexp(m, -24);
		else
			want = sign * ldexp(1024 + m, e - 25);
		const bool ok = isnan(want) ? isnan(got) : ((double)got == want && signbit(got) == signbit(want));
		if (!ok && bad++ == 0)
			first = (int)h;
	}
	check(bad == 0, "f16_to_float: %d of 65536 values wrong, first 0x%04x", bad, first);

	// float -> half: NaN is CUDA's canonical 0x7fff; the rest rounds to nearest even.
	check(carafe_cuda::float_to_f16(NAN) == 0x7fff && carafe_cuda::float_to_f16(-NAN) == 0x7fff,
	      "float_to_f16(NaN) = 0x%04x, want 0x7fff", carafe_cuda::float_to_f16(NAN));
	std::vector<float> probe;
	for (uint32_t h = 0; h < 0x7c00; h++) { // every finite non-negative half, its neighbours and midpoints
		const float a = carafe_cuda::f16_to_float((uint16_t)h), b = carafe_cuda::f16_to_float((uint16_t)(h + 1));
		const float mid = (a + b) / 2; // exact: halves have 11 significant bits
		probe.insert(probe.end(), {a, mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY)});
	}
	probe.insert(probe.end(), {65504.0f, 65519.99f, 65520.0f, 1e30f, INFINITY, 1e-10f, 2.98023224e-8f, 2.9802325e-8f,
	                           5.96046448e-8f, 1.4e-45f});
	for (int i = 0; i < 1000000; i++) { // random bit patterns over the whole float range
		carafe_rnd(&rng_state);
		const uint32_t x = (uint32_t)(rng_state >> 32);
		float f;
		memcpy(&f, &x, sizeof f);
		if (!isnan(f))
			probe.push_back(f);
	}
	const size_t nprobe = probe.size();
	for (size_t i = 0; i < nprobe; i++)
		probe.push_back(-probe[i]);
	bad = 0;
	float worst = 0;
#ifdef __FLT16_MAX__
	const char *against = "the compiler's _Float16";
	for (float f : probe) {
		const _Float16 w = (_Float16)f;
		uint16_t want;
		memcpy(&want, &w, sizeof want);
		if (carafe_cuda::float_to_f16(f) != want && bad++ == 0)
			worst = f;
	}
#else
	// No _Float16: the nearest half, ties to the even one, by search over the halves.
	const char *against = "the nearest half (ties to even)";
	for (float f : probe) {
		const uint16_t got = carafe_cuda::float_to_f16(f), mag = got & 0x7fff;
		const double x = fabs((double)f), g = fabs((double)carafe_cuda::f16_to_float(mag));
		bool ok = ((got & 0x8000) != 0) == (signbit(f) != 0);
		if (mag == 0x7c00)
			ok = ok && x >= 65520.0;
		else {
			const double lo = mag ? carafe_cuda::f16_to_float(mag - 1) : -1, hi = carafe_cuda::f16_to_float(mag + 1);
			ok = ok && fabs(x - g) <= fabs(x - lo) && fabs(x - g) <= fabs(x - hi) &&
			     (fabs(x - g) < fabs(x - lo) || fabs(x - g) < fabs(x - hi) || (mag & 1) == 0);
		}
		if (!ok && bad++ == 0)
			worst = f;
	}
#endif
	check(bad == 0, "float_to_f16 vs %s: %d of %zu values differ, first %.9g", against, bad, probe.size(),
	      (double)worst);
}

// ---- launch plan ----

void plan_limits()
{
	char err[256] = "";
	carafe_cuda::Plan plan;
	carafe_dims d = dims_of({1, 65536, 1, 1, 1, 1, 1});
	d.groups = 65536; // C=G=65536: one block row per group is over gridDim.y's limit
	int rc = carafe_cuda::plan_launch(&d, 16, &plan, err, sizeof err);
	check(rc == -1 && strstr(err, "group_size=65536 exceeds") != NULL, "65536 groups: rc=%d '%s'", rc, err);

	d = dims_of({1, 1, 1, 1, 1, 1, 1});
	d.ho = d.h = 1LL << 20, d.wo = d.w = 1LL << 18; // 2^38 output pixels: 2^31 blocks of 128
	err[0] = 0;
	rc = carafe_cuda::plan_launch(&d, 16, &plan, err, sizeof err);
	check(rc == -1 && strstr(err, "output pixels exceed") != NULL, "2^38 pixels: rc=%d '%s'", rc, err);

	for (const carafe_shape &s : {carafe_shape{0, 8, 5, 5, 1, 3, 2}, carafe_shape{1, 0, 5, 5, 1, 3, 2}}) {
		d = dims_of(s);
		rc = carafe_cuda::plan_launch(&d, 16, &plan, err, sizeof err);
		check(rc == 0 && plan.empty && plan.grid_x == 0, "%s: want an empty plan, rc=%d", shape_str(s), rc);
	}

	// Many groups with large C/G: the chunk grows until groups * chunks fits gridDim.y.
	d = dims_of({1, 40000 * 64, 1, 1, 40000, 1, 1});
	rc = carafe_cuda::plan_launch(&d, 16, &plan, err, sizeof err);
	check(rc == 0 && plan.grid_y <= 65535 && plan.d.chunk * plan.d.nchunks >= plan.d.cpg,
	      "40000 groups of 64 channels: rc=%d grid_y=%lld chunk=%lld", rc, plan.grid_y, plan.d.chunk);
}

// The model's ten nodes at 640 (FreqFusion, N=1, G=1) on GPUs of 8 (Orin Nano), 16 (AGX Orin)
// and 132 (H100) multiprocessors: at least one resident block's worth of threads per
// multiprocessor, or all channels in parallel.
void occupancy()
{
	for (int sms : {8, 16, 132})
		for (int64_t hr : {40, 80}) {
			const int64_t lr = hr / 2;
			const carafe_shape nodes[] = {{1, 64, hr, hr, 1, 3, 1},
			                              {1, 25, lr, lr, 1, 5, 2},
			                              {1, 9, lr, lr, 1, 5, 2},
			                              {1, 256, lr, lr, 1, 5, 2},
			                              {1, 256, hr, hr, 1, 3, 1}};
			for (const carafe_shape &s : nodes) {
				const carafe_dims d = dims_of(s);
				carafe_cuda::Plan plan;
				carafe_cuda::plan_launch(&d, sms, &plan, NULL, 0);
				const long long threads = plan.grid_x * carafe_cuda::kThreads * plan.grid_y;
				const long long want = (long long)sms * 1024 < d.ho * d.wo * d.c ? (long long)sms * 1024 : d.ho * d.wo * d.c;
				check(threads >= want, "%d SMs, node %s: %lld threads, want >= %lld", sms, shape_str(s), threads, want);
			}
		}
}

// ---- the kernel body over the grid ----

int partial_chunks;

void compare(const carafe_shape &s)
{
	const carafe_dims d = dims_of(s);
	const size_t nf = (size_t)(d.n * d.c * d.h * d.w), nm = (size_t)(d.n * d.groups * d.k * d.k * d.ho * d.wo);
	const size_t no = (size_t)(d.n * d.c * d.ho * d.wo);
	char err[256] = "";
	int rc;
	for (int sms : {1, 16, 132}) {
		carafe_cuda::Plan plan;
		carafe_cuda::plan_launch(&d, sms, &plan, NULL, 0);
		partial_chunks += plan.d.cpg % plan.d.chunk != 0;
		// Coverage: every output element written exactly once (the emulation runs the blocks in
		// order, so a thread writing into another's channels would go unseen by values alone).
		std::vector<Count> cf(nf), co(no);
		const std::vector<float> zeros_m(nm, 0.0f);
		rc = carafe_cuda::emulate<Count, float>(&d, sms, cf.data(), zeros_m.data(), co.data(), err, sizeof err);
		size_t wrong = 0, first = 0;
		for (size_t i = 0; i < no; i++)
			if (co[i].writes != 1 && wrong++ == 0)
				first = i;
		check(rc == 0 && wrong == 0,
		      "%s, %d SMs (chunk %lld): %zu of %zu outputs not written exactly once (first %zu: %d times) rc=%d %s",
		      shape_str(s), sms, plan.d.chunk, wrong, no, first, no ? co[first].writes : 0, rc, err);
	}
	for (int poison = 0; poison < 2; poison++) {
		std::vector<float> feat(nf), mask(nm);
		for (float &v : feat)
			v = carafe_rnd(&rng_state);
		for (float &v : mask)
			v = carafe_rnd(&rng_state);
		if (poison && nf)
			carafe_poison_border(feat.data(), d.n, d.c, d.h, d.w);
		for (int types = 0; types < 4; types++) {
			const bool fh = types & 1, mh = types & 2;
			std::vector<float> f = feat, m = mask;
			if (fh)
				for (float &v : f)
					v = round_half(v);
			if (mh)
				for (float &v : m)
					v = round_half(v);
			// The reference on the inputs the kernel sees, and on their magnitudes for the float32 bound.
			std::vector<float> ref(no), mag(no), fa(f), ma(m);
			reference(d, f.data(), m.data(), ref.data());
			for (float &v : fa)
				v = fabsf(v);
			for (float &v : ma)
				v = fabsf(v);
			reference(d, fa.data(), ma.data(), mag.data());
			for (float &v : mag)
				v = 1.0f + v;
			for (int sms : {1, 16, 132}) {
				if (types != 0 && sms != 16)
					continue; // float16 pairs: one GPU size (the body is the same, the chunking was checked above)
				const std::vector<float> got = emulate(d, sms, fh, mh, f, m, &rc, err, sizeof err);
				size_t at = 0;
				const double worst = fh ? carafe_mismatch(got.data(), ref.data(), NULL, no, 1e-4, 1e-3, &at)
				                        : carafe_mismatch(got.data(), ref.data(), mag.data(), no, 0, 1e-5, &at);
				check(rc == 0 && worst <= 1,
				      "emulated kernel, features %s masks %s, %d SMs, %s%s: rc=%d %s worst/tolerance=%g at %zu "
				      "(got %g, want %g)",
				      fh ? "f16" : "f32", mh ? "f16" : "f32", sms, shape_str(s), poison ? " NaN/Inf border" : "", rc, err,
				      worst, at, no ? (double)got[at] : 0.0, no ? (double)ref[at] : 0.0);
			}
		}
	}
}

// Issue 17's case by value: N=C=G=1, 8x8, k=3, s=2, masks 1/9, features 1 except a NaN at (0,0).
void nan_corner()
{
	const carafe_dims d = dims_of({1, 1, 8, 8, 1, 3, 2});
	std::vector<float> feat(64, 1.0f), mask(9 * 256, 1.0f / 9.0f);
	feat[0] = NAN;
	char err[256] = "";
	int rc;
	const std::vector<float> out = emulate(d, 16, false, false, feat, mask, &rc, err, sizeof err);
	int nan_ok = 1;
	for (int ph = 0; ph < 16; ph++)
		for (int pw = 0; pw < 16; pw++)
			nan_ok &= isnan(out[ph * 16 + pw]) == (ph < 4 && pw < 4);
	check(rc == 0 && fabsf(out[8] - 6.0f / 9.0f) <= 1e-6f && nan_ok,
	      "emulated kernel, NaN at feat[0,0,0,0]: out[0,0,0,8]=%g, want 0.667; NaN exactly where the window covers "
	      "it: %s",
	      (double)out[8], nan_ok ? "yes" : "no");
}

} // namespace

int main()
{
	f16_conversions();
	plan_limits();
	occupancy();
	carafe_shape shapes[96], extra[32];
	size_t n = carafe_test_shapes(shapes, 96);
	const size_t next = carafe_test_shapes_cuda(extra, 32);
	for (size_t i = 0; i < next; i++) // the CUDA extras but the one large grid (15 s here; the GPU runs it)
		if (extra[i].n * extra[i].c * carafe_out_size(extra[i].h, extra[i].s) * carafe_out_size(extra[i].w, extra[i].s) <=
		    (1 << 20))
			shapes[n++] = extra[i];
	for (size_t i = 0; i < n; i++)
		compare(shapes[i]);
	check(partial_chunks > 0, "no test shape has a partial channel chunk");
	nan_corner();
	printf("emulated CUDA kernel: %zu shapes\n", n);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
