// The TensorRT plugin's TensorRT-free core (carafe_trt_core.h), with g++ only: attribute parsing
// and every bad attribute named, output dimensions for fixed and symbolic shapes, the type/format
// table, build-time shape checks, and the serialized layout (golden bytes, round trip, truncated,
// foreign and other-version buffers refused). Part of `make test`. Last line: "N passed, M failed".
#include "carafe_trt_core.h"
#include "carafe_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

using namespace carafe_trt;

namespace {

// ---- attributes ----

struct Val {
	FieldType type;
	int32_t i32;
	int64_t i64;
	float f32;
	double f64;
	const void *ptr() const
	{
		switch (type) {
		case FieldType::kInt64: return &i64;
		case FieldType::kFloat32: return &f32;
		case FieldType::kFloat64: return &f64;
		default: return &i32;
		}
	}
};
Val I(int32_t v) { return Val{FieldType::kInt32, v, 0, 0, 0}; }
Val I64(int64_t v) { return Val{FieldType::kInt64, 0, v, 0, 0}; }
Val F(float v) { return Val{FieldType::kFloat32, 0, 0, v, 0}; }
Val F64(double v) { return Val{FieldType::kFloat64, 0, 0, 0, v}; }
Val Str() { return Val{FieldType::kChar, 0x33, 0, 0, 0}; }

struct NamedVal {
	const char *name;
	Val v;
	int32_t length;
};

bool parse(std::vector<NamedVal> vals, Attrs *a, std::string *err)
{
	std::vector<Field> fields;
	for (const NamedVal &nv : vals)
		fields.push_back(Field{nv.name, nv.v.type, nullptr, nv.length});
	for (size_t i = 0; i < vals.size(); i++)
		fields[i].data = vals[i].v.ptr();
	char buf[256] = "";
	const bool ok = parse_attrs(fields.data(), (int32_t)fields.size(), a, buf, sizeof buf);
	*err = buf;
	return ok;
}

void attrs_ok(const char *what, std::vector<NamedVal> vals, int32_t k, int32_t g, float s)
{
	Attrs a{};
	std::string err;
	const bool ok = parse(vals, &a, &err);
	check(ok && a.kernel_size == k && a.group_size == g && a.scale_factor == s,
	      "%s: ok=%d k=%d g=%d s=%g (want %d %d %g) %s", what, ok, a.kernel_size, a.group_size, (double)a.scale_factor, k,
	      g, (double)s, err.c_str());
}

void attrs_bad(const char *what, std::vector<NamedVal> vals, const char *needle)
{
	Attrs a{};
	std::string err;
	const bool ok = parse(vals, &a, &err);
	check(!ok && err.find(needle) != std::string::npos, "%s: want an error containing '%s', got ok=%d '%s'", what,
	      needle, ok, err.c_str());
}

void attributes()
{
	check(kNumFields == 3 && strcmp(kFields[0].name, "kernel_size") == 0 && kFields[0].type == FieldType::kInt32 &&
	          strcmp(kFields[1].name, "group_size") == 0 && kFields[1].type == FieldType::kInt32 &&
	          strcmp(kFields[2].name, "scale_factor") == 0 && kFields[2].type == FieldType::kFloat32,
	      "announced fields: kernel_size int32, group_size int32, scale_factor float32");
	check(strcmp(kPluginName, "MMCVCARAFE") == 0 && strcmp(kPluginVersion, "1") == 0 && kPluginNamespace[0] == 0,
	      "name MMCVCARAFE, version 1, empty namespace");

	// As onnx-tensorrt passes mmcv's export: INT attributes as int32, FLOAT as float32.
	attrs_ok("mmcv export", {{"kernel_size", I(5), 1}, {"group_size", I(1), 1}, {"scale_factor", F(2), 1}}, 5, 1, 2);
	attrs_ok("any order", {{"scale_factor", F(1), 1}, {"kernel_size", I(3), 1}, {"group_size", I(4), 1}}, 3, 4, 1);
	attrs_ok("group_size absent: 1", {{"kernel_size", I(3), 1}, {"scale_factor", F(2), 1}}, 3, 1, 2);
	attrs_ok("int64 kernel_size, int scale", {{"kernel_size", I64(7), 1}, {"scale_factor", I(3), 1}}, 7, 1, 3);
	attrs_ok("float64 scale 1.5", {{"kernel_size", I(5), 1}, {"scale_factor", F64(1.5), 1}}, 5, 1, 1.5f);
	attrs_ok("scale 2.25", {{"kernel_size", I(1), 1}, {"scale_factor", F(2.25f), 1}}, 1, 1, 2.25f);

	attrs_bad("no fields", {}, "attribute kernel_size (int, odd) is missing");
	attrs_bad("kernel_size missing", {{"group_size", I(1), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size (int, odd) is missing");
	attrs_bad("scale_factor missing", {{"kernel_size", I(5), 1}, {"group_size", I(1), 1}},
	          "attribute scale_factor (float, >= 1) is missing");
	attrs_bad("even kernel_size", {{"kernel_size", I(4), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size=4 must be odd");
	attrs_bad("kernel_size 0", {{"kernel_size", I(0), 1}, {"scale_factor", F(2), 1}}, "attribute kernel_size=0");
	attrs_bad("negative kernel_size", {{"kernel_size", I(-3), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size=-3");
	attrs_bad("kernel_size over int32", {{"kernel_size", I64(1LL << 33), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size=8589934592 is out of range");
	attrs_bad("group_size 0", {{"kernel_size", I(3), 1}, {"group_size", I(0), 1}, {"scale_factor", F(2), 1}},
	          "attribute group_size=0 must be >= 1");
	attrs_bad("scale below 1", {{"kernel_size", I(3), 1}, {"scale_factor", F(0.5f), 1}},
	          "attribute scale_factor=0.5 must be");
	attrs_bad("scale NaN", {{"kernel_size", I(3), 1}, {"scale_factor", F(NAN), 1}}, "attribute scale_factor=nan");
	attrs_bad("scale Inf", {{"kernel_size", I(3), 1}, {"scale_factor", F(INFINITY), 1}}, "attribute scale_factor=inf");
	attrs_bad("scale 1e300", {{"kernel_size", I(3), 1}, {"scale_factor", F64(1e300), 1}}, "attribute scale_factor=inf");
	attrs_bad("scale 1.1", {{"kernel_size", I(3), 1}, {"scale_factor", F(1.1f), 1}},
	          "attribute scale_factor=1.10000002 is not m/2^e");
	attrs_bad("string kernel_size", {{"kernel_size", Str(), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size has type string, want int32");
	attrs_bad("float kernel_size", {{"kernel_size", F(3), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size has type float32, want int32");
	attrs_bad("string scale", {{"kernel_size", I(3), 1}, {"scale_factor", Str(), 1}},
	          "attribute scale_factor has type string, want float32");
	attrs_bad("two values", {{"kernel_size", I(3), 2}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size has 2 values, want exactly 1");
	attrs_bad("no value", {{"kernel_size", I(3), 1}, {"scale_factor", F(2), 0}},
	          "attribute scale_factor has 0 values");
	attrs_bad("unknown", {{"kernel_size", I(3), 1}, {"scale_factor", F(2), 1}, {"up_kernel", I(5), 1}},
	          "unknown attribute \"up_kernel\"");
	attrs_bad("twice", {{"kernel_size", I(3), 1}, {"kernel_size", I(5), 1}, {"scale_factor", F(2), 1}},
	          "attribute kernel_size is given twice");
}

// ---- output dimensions ----

// A builder that folds constants and prints the rest: what TensorRT's IExprBuilder does with
// constant and symbolic dimensions.
class TestBuilder : public ExprBuilder {
public:
	struct Node {
		bool is_const;
		int64_t v;
		std::string s;
	};
	std::vector<Node> nodes;
	TestBuilder() { nodes.reserve(256); }
	Expr add(Node n)
	{
		nodes.push_back(n);
		return &nodes.back();
	}
	Expr constant(int64_t v) override { return add(Node{true, v, std::to_string(v)}); }
	Expr sym(const char *name) { return add(Node{false, 0, name}); }
	Expr prod(Expr a, Expr b) override
	{
		const Node &x = *static_cast<const Node *>(a), &y = *static_cast<const Node *>(b);
		if (x.is_const && y.is_const)
			return constant(x.v * y.v);
		return add(Node{false, 0, "(" + x.s + "*" + y.s + ")"});
	}
	Expr floor_div(Expr a, Expr b) override
	{
		const Node &x = *static_cast<const Node *>(a), &y = *static_cast<const Node *>(b);
		if (x.is_const && y.is_const)
			return constant(x.v >= 0 ? x.v / y.v : -((-x.v + y.v - 1) / y.v));
		return add(Node{false, 0, "floordiv(" + x.s + "," + y.s + ")"});
	}
	static const Node &node(Expr e) { return *static_cast<const Node *>(e); }
};

void dims()
{
	// Fixed shapes: every size 0..300 and scale against floor(H*s) as the kernel and ORT compute it.
	int bad = 0;
	for (float s : {1.0f, 2.0f, 3.0f, 4.0f, 1.5f, 2.5f, 1.25f, 2.25f, 3.75f}) {
		const Attrs a{5, 1, s};
		for (int64_t h = 0; h <= 300; h++) {
			TestBuilder b;
			ExprBuilder::Expr in[4] = {b.constant(2), b.constant(64), b.constant(h), b.constant(h + 1)}, out[4];
			char err[128] = "";
			const bool ok = output_dims(b, in, 4, 4, a, out, err, sizeof err);
			const bool right = ok && TestBuilder::node(out[0]).is_const && TestBuilder::node(out[0]).v == 2 &&
			                   TestBuilder::node(out[1]).v == 64 && TestBuilder::node(out[2]).is_const &&
			                   TestBuilder::node(out[2]).v == carafe_out_size(h, s) &&
			                   TestBuilder::node(out[3]).v == carafe_out_size(h + 1, s);
			if (!right && bad++ == 0)
				check(false, "fixed %lldx%lld s=%g: got %s x %s, want %lld x %lld %s", (long long)h, (long long)h + 1,
				      (double)s, TestBuilder::node(out[2]).s.c_str(), TestBuilder::node(out[3]).s.c_str(),
				      (long long)carafe_out_size(h, s), (long long)carafe_out_size(h + 1, s), err);
		}
	}
	check(bad == 0, "fixed shapes: %d wrong output sizes", bad);

	// Symbolic shapes: N, H and W unknown, C fixed.
	const struct {
		float s;
		const char *h;
	} sym[] = {{1, "H"}, {2, "(H*2)"}, {3, "(H*3)"}, {1.5f, "floordiv((H*3),2)"}, {2.25f, "floordiv((H*9),4)"}};
	for (const auto &c : sym) {
		TestBuilder b;
		ExprBuilder::Expr in[4] = {b.sym("N"), b.constant(256), b.sym("H"), b.sym("W")}, out[4];
		char err[128] = "";
		const bool ok = output_dims(b, in, 4, 4, Attrs{3, 1, c.s}, out, err, sizeof err);
		std::string w = c.h;
		for (size_t p; (p = w.find('H')) != std::string::npos;)
			w[p] = 'W';
		check(ok && out[0] == in[0] && TestBuilder::node(out[1]).v == 256 && TestBuilder::node(out[2]).s == c.h &&
		          TestBuilder::node(out[3]).s == w,
		      "symbolic s=%g: [%s, %s, %s, %s], want [N, 256, %s, %s]", (double)c.s, TestBuilder::node(out[0]).s.c_str(),
		      TestBuilder::node(out[1]).s.c_str(), TestBuilder::node(out[2]).s.c_str(),
		      TestBuilder::node(out[3]).s.c_str(), c.h, w.c_str());
	}
	TestBuilder b;
	ExprBuilder::Expr in[4] = {b.sym("N"), b.sym("C"), b.sym("H"), b.sym("W")}, out[4];
	char err[160] = "";
	const bool ok = output_dims(b, in, 3, 4, Attrs{3, 1, 2}, out, err, sizeof err);
	check(!ok && strstr(err, "rank 4") && strstr(err, "got ranks 3 and 4"), "rank 3 features: ok=%d '%s'", ok, err);
}

// ---- types and formats ----

void formats()
{
	const DType types[] = {DType::kFloat, DType::kHalf, DType::kOther};
	const Format fmts[] = {Format::kLinear, Format::kOther};
	int accepted = 0, bad = 0;
	for (DType t0 : types)
		for (Format f0 : fmts)
			for (DType t1 : types)
				for (Format f1 : fmts)
					for (DType t2 : types)
						for (Format f2 : fmts) {
							const Desc io[3] = {{t0, f0}, {t1, f1}, {t2, f2}};
							// TensorRT asks position by position; a combination is taken when all three pass.
							const bool got = supports(0, io, 2, 1) && supports(1, io, 2, 1) && supports(2, io, 2, 1);
							const bool want = f0 == Format::kLinear && f1 == Format::kLinear && f2 == Format::kLinear &&
							                  t0 != DType::kOther && t1 != DType::kOther && t2 == t0;
							accepted += got;
							bad += got != want;
						}
	check(bad == 0 && accepted == 4, "format table: %d wrong, %d combinations accepted (want 4: f32/f16 x f32/f16)",
	      bad, accepted);
	const Desc io[3] = {{DType::kFloat, Format::kLinear}, {DType::kFloat, Format::kLinear}, {DType::kFloat, Format::kLinear}};
	check(!supports(0, io, 1, 1) && !supports(3, io, 2, 1) && !supports(-1, io, 2, 1) && !supports(0, io, 2, 2),
	      "wrong input/output counts or positions are refused");
	const DType in16[2] = {DType::kHalf, DType::kFloat}, in32[2] = {DType::kFloat, DType::kHalf};
	check(output_type(in16, 2) == DType::kHalf && output_type(in32, 2) == DType::kFloat,
	      "output type is the features' type");
}

// ---- shapes ----

void shapes_bad(const char *what, std::vector<int64_t> f, std::vector<int64_t> m, Attrs a, const char *needle)
{
	char err[320] = "";
	const bool ok = check_shapes(f.data(), m.data(), a, err, sizeof err);
	check(!ok && strstr(err, needle), "%s: want an error containing '%s', got ok=%d '%s'", what, needle, ok, err);
}

void shapes()
{
	const Attrs a{5, 2, 2};
	char err[320] = "";
	const int64_t f[4] = {1, 64, 20, 30}, m[4] = {1, 50, 40, 60};
	check(check_shapes(f, m, a, err, sizeof err), "valid shape refused: %s", err);
	const int64_t fu[4] = {-1, 64, -1, -1}, mu[4] = {-1, 50, -1, -1};
	check(check_shapes(fu, mu, a, err, sizeof err), "dynamic N, H, W refused: %s", err);
	shapes_bad("C % G", {1, 63, 20, 30}, {1, 50, 40, 60}, a, "features channels C=63 must be divisible by attribute group_size=2");
	shapes_bad("C % G, dynamic rest", {-1, 63, -1, -1}, {-1, -1, -1, -1}, a, "group_size=2");
	shapes_bad("mask channels", {1, 64, 20, 30}, {1, 49, 40, 60}, a,
	           "masks channels=49 must equal group_size*kernel_size*kernel_size = 2*5*5 = 50");
	shapes_bad("batch", {2, 64, 20, 30}, {1, 50, 40, 60}, a, "features batch N=2 and masks batch N=1 must be equal");
	shapes_bad("height", {1, 64, 20, 30}, {1, 50, 41, 60}, a,
	           "masks height=41 must equal floor(features H=20 * attribute scale_factor=2) = 40");
	shapes_bad("width 1.5", {1, 64, 20, 7}, {1, 50, 30, 11}, Attrs{5, 2, 1.5f},
	           "masks width=11 must equal floor(features W=7 * attribute scale_factor=1.5) = 10");
	shapes_bad("negative", {1, -2, 20, 30}, {1, 50, 40, 60}, a, "features dimension C=-2 is negative");

	carafe_dims d;
	check(make_dims(f, m, a, &d, err, sizeof err) && d.n == 1 && d.c == 64 && d.h == 20 && d.w == 30 && d.ho == 40 &&
	          d.wo == 60 && d.groups == 2 && d.k == 5 && d.int_scale == 2,
	      "make_dims: %s", err);
	check(!make_dims(fu, mu, a, &d, err, sizeof err) && strstr(err, "not known at run time"), "make_dims, unknown: %s",
	      err);
}

// ---- serialized layout ----

void serialization()
{
	check(serialized_size() == 24, "serialized size %zu, want 24", serialized_size());
	unsigned char buf[64];
	memset(buf, 0xee, sizeof buf);
	serialize(Attrs{5, 1, 2.0f}, buf);
	// Golden bytes: engines on disk hold this layout; a change must bump the version.
	const unsigned char golden[24] = {'C', 'R', 'F', 'E', 1, 0, 12, 0, 12, 0, 0, 0,
	                                  5,   0,   0,   0,   1, 0, 0,  0, 0,  0, 0, 0x40};
	check(memcmp(buf, golden, 24) == 0 && buf[24] == 0xee, "serialize(k=5, g=1, s=2) is not the layout's bytes");

	for (const Attrs &a : {Attrs{5, 1, 2.0f}, Attrs{3, 4, 1.0f}, Attrs{7, 2, 1.5f}, Attrs{1, 256, 3.0f}, Attrs{9, 1, 2.25f}}) {
		serialize(a, buf);
		Attrs r{};
		char err[256] = "";
		const bool ok = deserialize(buf, serialized_size(), &r, err, sizeof err);
		check(ok && r.kernel_size == a.kernel_size && r.group_size == a.group_size && r.scale_factor == a.scale_factor,
		      "round trip k=%d g=%d s=%g: ok=%d %s", a.kernel_size, a.group_size, (double)a.scale_factor, ok, err);
	}

	auto refused = [&](const char *what, const unsigned char *p, size_t len, const char *needle) {
		Attrs r{99, 99, 99};
		char err[320] = "";
		const bool ok = deserialize(p, len, &r, err, sizeof err);
		check(!ok && strstr(err, needle) && r.kernel_size == 99, "%s: want refused with '%s', got ok=%d '%s'", what,
		      needle, ok, err);
	};
	serialize(Attrs{5, 1, 2.0f}, buf);
	int truncated_ok = 0;
	for (size_t len = 0; len < 24; len++) {
		Attrs r{};
		char err[256] = "";
		truncated_ok += !deserialize(buf, len, &r, err, sizeof err) && strstr(err, "truncated");
	}
	check(truncated_ok == 24, "every truncation (0..23 bytes) refused as truncated: %d of 24", truncated_ok);
	refused("NULL", nullptr, 24, "truncated");
	refused("trailing byte", buf, 25, "trailing bytes");

	unsigned char bad[24];
	memcpy(bad, buf, 24);
	bad[0] = 'X';
	refused("foreign magic", bad, 24, "not a stardetr MMCVCARAFE plugin's");
	// Another MMCVCARAFE plugin's data (e.g. three int32 attributes, no header): foreign.
	const int32_t other[6] = {5, 1, 2, 0, 0, 0};
	refused("another plugin's fields", reinterpret_cast<const unsigned char *>(other), 24, "not a stardetr");
	memcpy(bad, buf, 24);
	bad[4] = 2;
	refused("layout version 2", bad, 24, "layout version 2; this library reads version 1: rebuild the engine");
	memcpy(bad, buf, 24);
	bad[8] = 16;
	refused("payload size", bad, 24, "payload size 16");
	memcpy(bad, buf, 24);
	bad[6] = 8;
	refused("header size", bad, 24, "header size 8");
	serialize(Attrs{4, 1, 2.0f}, bad); // an even kernel size cannot come from createPlugin: a corrupt buffer
	refused("even kernel_size inside", bad, 24, "invalid attributes: attribute kernel_size=4 must be odd");
	serialize(Attrs{3, 0, 2.0f}, bad);
	refused("group_size 0 inside", bad, 24, "attribute group_size=0");
	serialize(Attrs{3, 1, 0.25f}, bad);
	refused("scale 0.25 inside", bad, 24, "attribute scale_factor=0.25");
}

} // namespace

int main()
{
	attributes();
	dims();
	formats();
	shapes();
	serialization();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
