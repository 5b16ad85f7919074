// `make trt-check`: loads the MMCVCARAFE TensorRT plugin library the way ONNX Runtime
// (trt_extra_plugin_lib_paths), trtexec (--staticPlugins) and DeepStream (custom-lib-path) do,
// with dlopen, and checks what it registered through TensorRT's own interfaces, compiled against
// the same TensorRT headers. TensorRT itself is replaced by trt_check_stub.cpp (a registry and a
// logger that record), so this checks the library's registration, the creator's name, version,
// namespace and fields, and the adapter's mapping onto the core (attributes, errors naming the
// attribute, output dimension expressions, formats, serialization, clone, enqueue's shape checks)
// on TensorRT's vtable layout of that version. It cannot build an engine nor run the kernel:
// that needs TensorRT's libraries and a GPU (a Jetson).
//
// Usage: trt_check PLUGIN.so. Last line: "N passed, M failed".
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <deque>
#include <string>
#include <vector>

#include "carafe_test.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

using namespace nvinfer1;

extern "C" int32_t trt_stub_creators(IPluginCreator *const **list, const char *const **namespaces);
extern "C" size_t trt_stub_log_count();
extern "C" const char *trt_stub_log_line(size_t i);

namespace {

#if NV_TENSORRT_MAJOR >= 10
using DimValue = int64_t;
#else
using DimValue = int32_t;
#endif

// ---- a fake IExprBuilder: folds constants, prints the rest ----

struct FakeDimImpl final : apiv::VDimensionExpr {
	bool c = false;
	int64_t v = 0;
	std::string s;
	bool isConstant() const override { return c; }
	DimValue getConstantValue() const override { return (DimValue)v; }
#if NV_TENSORRT_MAJOR >= 10
	bool isSizeTensor() const override { return false; }
#endif
};

struct FakeDim final : IDimensionExpr {
	FakeDimImpl impl;
	FakeDim() { mImpl = &impl; }
	~FakeDim() noexcept override = default;
};

struct FakeBuilderImpl final : apiv::VExprBuilder {
	std::deque<FakeDim> arena;
	const IDimensionExpr *make(bool c, int64_t v, const std::string &s)
	{
		arena.emplace_back();
		arena.back().impl.c = c, arena.back().impl.v = v, arena.back().impl.s = s;
		return &arena.back();
	}
	const IDimensionExpr *constant(DimValue v) override { return make(true, v, std::to_string(v)); }
	const IDimensionExpr *operation(DimensionOperation op, const IDimensionExpr &a, const IDimensionExpr &b) override
	{
		const FakeDimImpl &x = static_cast<const FakeDim &>(a).impl, &y = static_cast<const FakeDim &>(b).impl;
		const char *name = op == DimensionOperation::kPROD ? "*" : op == DimensionOperation::kFLOOR_DIV ? "/" : "?";
		if (x.c && y.c && op == DimensionOperation::kPROD)
			return make(true, x.v * y.v, std::to_string(x.v * y.v));
		if (x.c && y.c && op == DimensionOperation::kFLOOR_DIV && y.v > 0 && x.v >= 0)
			return make(true, x.v / y.v, std::to_string(x.v / y.v));
		return make(false, 0, "(" + x.s + name + y.s + ")");
	}
#if NV_TENSORRT_MAJOR >= 10
	const IDimensionExpr *declareSizeTensor(int32_t, const IDimensionExpr &, const IDimensionExpr &) override
	{
		return nullptr;
	}
#endif
};

struct FakeBuilder final : IExprBuilder {
	FakeBuilderImpl impl;
	FakeBuilder() { mImpl = &impl; }
	~FakeBuilder() noexcept override = default;
	const IDimensionExpr *sym(const char *name) { return impl.make(false, 0, name); }
	static const FakeDimImpl &of(const IDimensionExpr *e) { return static_cast<const FakeDim *>(e)->impl; }
};

// ---- the logger's lines ----

size_t log_mark;
void mark_log() { log_mark = trt_stub_log_count(); }
// One line logged since mark_log, at kERROR, containing every needle.
bool logged(const std::vector<const char *> &needles, std::string *all)
{
	all->clear();
	bool found = false;
	for (size_t i = log_mark; i < trt_stub_log_count(); i++) {
		const std::string line = trt_stub_log_line(i);
		*all += line + " | ";
		bool has = line.rfind("1 ", 0) == 0; // Severity::kERROR
		for (const char *n : needles)
			has = has && line.find(n) != std::string::npos;
		found = found || has;
	}
	return found;
}

PluginFieldCollection fields(std::vector<PluginField> &v)
{
	PluginFieldCollection fc;
	fc.nbFields = (int32_t)v.size();
	fc.fields = v.data();
	return fc;
}

PluginTensorDesc tdesc(DataType t, std::vector<int64_t> dims, TensorFormat f = TensorFormat::kLINEAR)
{
	PluginTensorDesc d{};
	d.type = t;
	d.format = f;
	d.scale = 1.0f;
	d.dims.nbDims = (int32_t)dims.size();
	for (size_t i = 0; i < dims.size(); i++)
		d.dims.d[i] = (DimValue)dims[i];
	return d;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: trt_check PLUGIN.so\n");
		return 2;
	}
	printf("TensorRT headers %d.%d.%d, plugin %s\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, argv[1]);
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		printf("FAIL: dlopen %s: %s\n0 passed, 1 failed\n", argv[1], dlerror());
		return 1;
	}
	typedef const char *(*info_fn)(void);
	info_fn info = (info_fn)dlsym(lib, "stardetr_carafe_trt_info");
	char want_info[64];
	snprintf(want_info, sizeof want_info, "TensorRT %d.%d.%d", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH);
	check(info && strstr(info(), "MMCVCARAFE 1") && strstr(info(), want_info), "stardetr_carafe_trt_info: %s",
	      info ? info() : dlerror());

	// Registration at load time: one IPluginCreator, namespace "".
	IPluginCreator *const *creators;
	const char *const *namespaces;
	const int32_t n = trt_stub_creators(&creators, &namespaces);
	check(n == 1, "loading the library registered %d creators (want 1; -1: an IPluginV3 creator)", n);
	if (n != 1) {
		printf("%d passed, %d failed\n", passed, failed);
		return 1;
	}
	IPluginCreator *cr = creators[0];
	check(strcmp(cr->getPluginName(), "MMCVCARAFE") == 0 && strcmp(cr->getPluginVersion(), "1") == 0 &&
	          strcmp(namespaces[0], "") == 0 && strcmp(cr->getPluginNamespace(), "") == 0,
	      "creator %s version %s registered in namespace \"%s\" (its own \"%s\"): want MMCVCARAFE 1 \"\"",
	      cr->getPluginName(), cr->getPluginVersion(), namespaces[0], cr->getPluginNamespace());
#if NV_TENSORRT_MAJOR >= 10
	check(strcmp(cr->getInterfaceInfo().kind, "PLUGIN CREATOR_V1") == 0, "creator interface %s",
	      cr->getInterfaceInfo().kind);
#else
	check(cr->getTensorRTVersion() == NV_TENSORRT_VERSION, "creator compiled for TensorRT %d", cr->getTensorRTVersion());
#endif
	const PluginFieldCollection *fn = cr->getFieldNames();
	check(fn && fn->nbFields == 3 && strcmp(fn->fields[0].name, "kernel_size") == 0 &&
	          fn->fields[0].type == PluginFieldType::kINT32 && strcmp(fn->fields[1].name, "group_size") == 0 &&
	          fn->fields[1].type == PluginFieldType::kINT32 && strcmp(fn->fields[2].name, "scale_factor") == 0 &&
	          fn->fields[2].type == PluginFieldType::kFLOAT32,
	      "fields: kernel_size int32, group_size int32, scale_factor float32");

	// createPlugin with mmcv's attributes as onnx-tensorrt passes them.
	const int32_t k5 = 5, g1 = 1, k4 = 4;
	const float s2 = 2.0f, s15 = 1.5f;
	std::vector<PluginField> good = {PluginField("kernel_size", &k5, PluginFieldType::kINT32, 1),
	                                 PluginField("group_size", &g1, PluginFieldType::kINT32, 1),
	                                 PluginField("scale_factor", &s2, PluginFieldType::kFLOAT32, 1)};
	PluginFieldCollection fc = fields(good);
	IPluginV2 *p2 = cr->createPlugin("up_lr", &fc);
	check(p2 != nullptr, "createPlugin(kernel_size=5, group_size=1, scale_factor=2) returned NULL");
	if (!p2) {
		printf("%d passed, %d failed\n", passed, failed);
		return 1;
	}
	check((p2->getTensorRTVersion() >> 24) == (int32_t)PluginVersion::kV2_DYNAMICEXT,
	      "plugin is not an IPluginV2DynamicExt (version word 0x%08x)", (unsigned)p2->getTensorRTVersion());
	IPluginV2DynamicExt *p = static_cast<IPluginV2DynamicExt *>(p2);
	check(strcmp(p->getPluginType(), "MMCVCARAFE") == 0 && strcmp(p->getPluginVersion(), "1") == 0 &&
	          p->getNbOutputs() == 1 && p->initialize() == 0 && p->getWorkspaceSize(nullptr, 2, nullptr, 1) == 0,
	      "plugin type %s version %s, %d outputs", p->getPluginType(), p->getPluginVersion(), p->getNbOutputs());
	const DataType th[2] = {DataType::kHALF, DataType::kFLOAT}, tf[2] = {DataType::kFLOAT, DataType::kHALF};
	check(p->getOutputDataType(0, th, 2) == DataType::kHALF && p->getOutputDataType(0, tf, 2) == DataType::kFLOAT,
	      "output type follows the features");

	// Output dimensions through IExprBuilder: fixed and symbolic.
	{
		FakeBuilder b;
		DimsExprs in[2];
		in[0].nbDims = in[1].nbDims = 4;
		const int64_t fd[4] = {1, 256, 20, 20}, md[4] = {1, 25, 40, 40};
		for (int i = 0; i < 4; i++)
			in[0].d[i] = b.impl.constant((DimValue)fd[i]), in[1].d[i] = b.impl.constant((DimValue)md[i]);
		DimsExprs o = p->getOutputDimensions(0, in, 2, b);
		check(o.nbDims == 4 && FakeBuilder::of(o.d[0]).v == 1 && FakeBuilder::of(o.d[1]).v == 256 &&
		          FakeBuilder::of(o.d[2]).c && FakeBuilder::of(o.d[2]).v == 40 && FakeBuilder::of(o.d[3]).v == 40,
		      "fixed [1,256,20,20] s=2: output rank %d [%s, %s, %s, %s], want [1, 256, 40, 40]", o.nbDims,
		      o.nbDims == 4 ? FakeBuilder::of(o.d[0]).s.c_str() : "", o.nbDims == 4 ? FakeBuilder::of(o.d[1]).s.c_str() : "",
		      o.nbDims == 4 ? FakeBuilder::of(o.d[2]).s.c_str() : "", o.nbDims == 4 ? FakeBuilder::of(o.d[3]).s.c_str() : "");
		in[0].d[0] = b.sym("N"), in[0].d[2] = b.sym("H"), in[0].d[3] = b.sym("W");
		o = p->getOutputDimensions(0, in, 2, b);
		check(o.nbDims == 4 && FakeBuilder::of(o.d[0]).s == "N" && FakeBuilder::of(o.d[1]).v == 256 &&
		          FakeBuilder::of(o.d[2]).s == "(H*2)" && FakeBuilder::of(o.d[3]).s == "(W*2)",
		      "symbolic [N,256,H,W] s=2: [%s, %s, %s, %s], want [N, 256, (H*2), (W*2)]",
		      o.nbDims == 4 ? FakeBuilder::of(o.d[0]).s.c_str() : "", o.nbDims == 4 ? FakeBuilder::of(o.d[1]).s.c_str() : "",
		      o.nbDims == 4 ? FakeBuilder::of(o.d[2]).s.c_str() : "", o.nbDims == 4 ? FakeBuilder::of(o.d[3]).s.c_str() : "");

		std::vector<PluginField> f15 = {PluginField("kernel_size", &k5, PluginFieldType::kINT32, 1),
		                                PluginField("scale_factor", &s15, PluginFieldType::kFLOAT32, 1)};
		PluginFieldCollection fc15 = fields(f15);
		IPluginV2DynamicExt *q = static_cast<IPluginV2DynamicExt *>(cr->createPlugin("s15", &fc15));
		o = q ? q->getOutputDimensions(0, in, 2, b) : DimsExprs{};
		check(q && o.nbDims == 4 && FakeBuilder::of(o.d[2]).s == "((H*3)/2)",
		      "symbolic H, s=1.5: %s, want ((H*3)/2)", q && o.nbDims == 4 ? FakeBuilder::of(o.d[2]).s.c_str() : "(none)");
		if (q)
			q->destroy();
	}

	// Formats: float32/float16 features and masks, output in the features' type, linear only.
	{
		const DataType types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kINT32};
		int accepted = 0, bad = 0;
		for (DataType a : types)
			for (DataType m : types)
				for (DataType o : types)
					for (int lin = 0; lin < 2; lin++) {
						PluginTensorDesc io[3] = {tdesc(a, {1, 8, 4, 4}), tdesc(m, {1, 9, 8, 8}),
						                          tdesc(o, {1, 8, 8, 8}, lin ? TensorFormat::kLINEAR : TensorFormat::kCHW32)};
						const bool got = p->supportsFormatCombination(0, io, 2, 1) &&
						                 p->supportsFormatCombination(1, io, 2, 1) &&
						                 p->supportsFormatCombination(2, io, 2, 1);
						const bool want = lin && (a == DataType::kFLOAT || a == DataType::kHALF) &&
						                  (m == DataType::kFLOAT || m == DataType::kHALF) && o == a;
						accepted += got, bad += got != want;
					}
		check(bad == 0 && accepted == 4, "supportsFormatCombination: %d wrong, %d accepted (want 4)", bad, accepted);
	}

	// Serialize, deserialize through the creator, clone.
	{
		const size_t len = p->getSerializationSize();
		std::vector<char> buf(len + 8, 0x55), again(len + 8, 0x55);
		p->serialize(buf.data());
		IPluginV2 *d2 = cr->deserializePlugin("up_lr", buf.data(), len);
		check(d2 && len == 24 && d2->getSerializationSize() == len, "deserializePlugin round trip (%zu bytes)", len);
		if (d2) {
			d2->serialize(again.data());
			check(memcmp(buf.data(), again.data(), len + 8) == 0, "deserialized plugin serializes to the same bytes");
			d2->destroy();
		}
		mark_log();
		std::string all;
		IPluginV2 *t = cr->deserializePlugin("trunc", buf.data(), len - 1);
		check(!t && logged({"node \"trunc\"", "deserialize", "truncated"}, &all), "truncated engine data: %p, log: %s",
		      (void *)t, all.c_str());
		buf[0] = 'X';
		mark_log();
		t = cr->deserializePlugin("foreign", buf.data(), len);
		check(!t && logged({"node \"foreign\"", "not a stardetr MMCVCARAFE plugin"}, &all),
		      "foreign engine data: %p, log: %s", (void *)t, all.c_str());
		IPluginV2DynamicExt *c = p->clone();
		if (c) {
			c->serialize(again.data());
			p->serialize(buf.data());
			check(memcmp(buf.data(), again.data(), len) == 0 && strcmp(c->getPluginType(), "MMCVCARAFE") == 0,
			      "clone serializes to the same bytes");
			c->destroy();
		} else
			check(false, "clone returned NULL");
	}

	// Bad attributes: createPlugin returns NULL (the parser then fails the node) and the log names
	// the node and the attribute.
	{
		struct Bad {
			const char *what;
			std::vector<PluginField> f;
			std::vector<const char *> needles;
		};
		const char str[] = "five";
		std::vector<Bad> bads = {
			{"even kernel_size",
			 {PluginField("kernel_size", &k4, PluginFieldType::kINT32, 1),
			  PluginField("scale_factor", &s2, PluginFieldType::kFLOAT32, 1)},
			 {"node \"bad\"", "attribute kernel_size=4 must be odd"}},
			{"kernel_size missing",
			 {PluginField("group_size", &g1, PluginFieldType::kINT32, 1),
			  PluginField("scale_factor", &s2, PluginFieldType::kFLOAT32, 1)},
			 {"node \"bad\"", "attribute kernel_size (int, odd) is missing"}},
			{"scale_factor missing",
			 {PluginField("kernel_size", &k5, PluginFieldType::kINT32, 1)},
			 {"attribute scale_factor (float, >= 1) is missing"}},
			{"string kernel_size",
			 {PluginField("kernel_size", str, PluginFieldType::kCHAR, 4),
			  PluginField("scale_factor", &s2, PluginFieldType::kFLOAT32, 1)},
			 {"attribute kernel_size has 4 values"}},
		};
		for (Bad &b : bads) {
			PluginFieldCollection bf = fields(b.f);
			mark_log();
			std::string all;
			IPluginV2 *q = cr->createPlugin("bad", &bf);
			check(!q && logged(b.needles, &all), "%s: createPlugin returned %p, log: %s", b.what, (void *)q, all.c_str());
			if (q)
				q->destroy();
		}
		mark_log();
		std::string all;
		IPluginV2 *q = cr->createPlugin("null", nullptr);
		check(!q && logged({"attribute kernel_size (int, odd) is missing"}, &all), "NULL fields: %p, log: %s", (void *)q,
		      all.c_str());
	}

	// configurePlugin names a shape the attributes do not fit (build time); enqueue refuses it and
	// runs an empty batch without touching the GPU (N=0: nothing to launch).
	{
		DynamicPluginTensorDesc in[2] = {}, out[1] = {};
		in[0].desc = tdesc(DataType::kFLOAT, {1, 256, 20, 20});
		in[1].desc = tdesc(DataType::kFLOAT, {1, 24, 40, 40});
		out[0].desc = tdesc(DataType::kFLOAT, {1, 256, 40, 40});
		mark_log();
		std::string all;
		p->configurePlugin(in, 2, out, 1);
		check(logged({"node \"up_lr\"", "configure", "masks channels=24 must equal group_size*kernel_size*kernel_size"},
		             &all),
		      "configurePlugin with 24 mask channels for k=5: log: %s", all.c_str());
		in[1].desc = tdesc(DataType::kFLOAT, {-1, 25, -1, -1});
		in[0].desc = tdesc(DataType::kFLOAT, {-1, 256, -1, -1});
		mark_log();
		p->configurePlugin(in, 2, out, 1);
		check(trt_stub_log_count() == log_mark, "configurePlugin with dynamic N, H, W logged: %s",
		      trt_stub_log_count() > log_mark ? trt_stub_log_line(log_mark) : "");

		PluginTensorDesc id[2] = {tdesc(DataType::kFLOAT, {2, 256, 20, 20}), tdesc(DataType::kFLOAT, {2, 25, 41, 40})};
		PluginTensorDesc od[1] = {tdesc(DataType::kFLOAT, {2, 256, 40, 40})};
		const void *ins[2] = {nullptr, nullptr};
		void *outs[1] = {nullptr};
		mark_log();
		int32_t rc = p->enqueue(id, od, ins, outs, nullptr, nullptr);
		check(rc != 0 && logged({"enqueue", "masks height=41 must equal"}, &all), "enqueue with a bad mask height: rc=%d log: %s",
		      rc, all.c_str());
		PluginTensorDesc ie[2] = {tdesc(DataType::kHALF, {0, 256, 20, 20}), tdesc(DataType::kFLOAT, {0, 25, 40, 40})};
		PluginTensorDesc oe[1] = {tdesc(DataType::kHALF, {0, 256, 40, 40})};
		mark_log();
		rc = p->enqueue(ie, oe, ins, outs, nullptr, nullptr);
		check(rc == 0 && trt_stub_log_count() == log_mark, "enqueue of an empty batch: rc=%d", rc);
	}
	p->terminate();
	p->destroy();

	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
