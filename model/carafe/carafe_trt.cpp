// TensorRT plugin MMCVCARAFE, version 1, empty namespace: the thin adapter between TensorRT's
// IPluginV2DynamicExt / IPluginCreator and the TensorRT-free core (carafe_trt_core.h), whose
// enqueue runs the CUDA kernel the ONNX Runtime op runs (stardetr_carafe_cuda_launch).
//
// TensorRT's ONNX parser maps a node it has no importer for to a registered plugin of the node's
// op_type (onnx-tensorrt's fallback plugin importer; the node's domain is not consulted), so with
// this library loaded the whole ultralytics export, mmcv::MMCVCARAFE nodes included, becomes one
// TensorRT network. The library registers its creator when it is loaded
// (REGISTER_TENSORRT_PLUGIN): ONNX Runtime's trt_extra_plugin_lib_paths, trtexec --staticPlugins
// (--plugins before 8.6) and DeepStream's custom-lib-path all dlopen it.
//
// Builds against TensorRT 8.5 (JetPack 5), 8.6 (JetPack 6.0) and 10.x (JetPack 6.1+): the
// interfaces are the same; TensorRT 10 widens dimensions to int64 and deprecates the
// IPluginV2 family in favour of IPluginV3, which it still loads (the deprecation warnings are
// silenced below). Errors go to TensorRT's logger (getLogger) as one line naming the node, the
// attribute or dimension and the rule.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <stdio.h>
#include <string.h>

#include <string>

#include "carafe_cuda.h"
#include "carafe_trt_core.h"

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "the MMCVCARAFE TensorRT plugin needs TensorRT >= 8.5 headers"
#endif

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace {

using namespace nvinfer1;
namespace core = carafe_trt;

// A dimension's integer: int32 before TensorRT 10, int64 since (Dims, IExprBuilder::constant).
#if NV_TENSORRT_MAJOR >= 10
using DimValue = int64_t;
#else
using DimValue = int32_t;
#endif

void log_error(const std::string &node, const char *what, const char *msg) noexcept
{
	char line[640];
	snprintf(line, sizeof line, "MMCVCARAFE plugin, node \"%s\": %s: %s", node.empty() ? "(unnamed)" : node.c_str(),
	         what, msg);
	ILogger *l = getLogger();
	if (l)
		l->log(ILogger::Severity::kERROR, line);
	else
		fprintf(stderr, "%s\n", line);
}

core::DType dtype(DataType t)
{
	switch (t) {
	case DataType::kFLOAT: return core::DType::kFloat;
	case DataType::kHALF: return core::DType::kHalf;
	default: return core::DType::kOther;
	}
}

// Assigns a C string (NULL: empty); keeps the old value when memory runs out (noexcept callers).
void set_string(std::string &dst, const char *src) noexcept
{
	try {
		dst = src ? src : "";
	} catch (...) {
	}
}

DataType trt_type(core::DType t) { return t == core::DType::kHalf ? DataType::kHALF : DataType::kFLOAT; }

core::Desc desc(const PluginTensorDesc &d)
{
	return core::Desc{dtype(d.type), d.format == TensorFormat::kLINEAR ? core::Format::kLinear : core::Format::kOther};
}

core::FieldType field_type(PluginFieldType t)
{
	switch (t) {
	case PluginFieldType::kINT32: return core::FieldType::kInt32;
	case PluginFieldType::kFLOAT32: return core::FieldType::kFloat32;
	case PluginFieldType::kFLOAT64: return core::FieldType::kFloat64;
	case PluginFieldType::kFLOAT16: return core::FieldType::kFloat16;
	case PluginFieldType::kINT8: return core::FieldType::kInt8;
	case PluginFieldType::kINT16: return core::FieldType::kInt16;
	case PluginFieldType::kCHAR: return core::FieldType::kChar;
#if NV_TENSORRT_MAJOR >= 10
	case PluginFieldType::kINT64: return core::FieldType::kInt64;
#endif
	default: return core::FieldType::kOther;
	}
}

PluginFieldType plugin_field_type(core::FieldType t)
{
	return t == core::FieldType::kFloat32 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32;
}

// A rank-4 shape with unknown (-1) dimensions as the core expects it.
void shape4(const Dims &d, int64_t out[4])
{
	for (int i = 0; i < 4; i++)
		out[i] = i < d.nbDims ? (int64_t)d.d[i] : -1;
}

// The core's expression builder on TensorRT's: its handles are IDimensionExpr pointers.
class TrtExprBuilder : public core::ExprBuilder {
public:
	explicit TrtExprBuilder(IExprBuilder &b) : b_(b) {}
	Expr constant(int64_t v) override { return b_.constant(static_cast<DimValue>(v)); }
	Expr prod(Expr a, Expr b) override { return b_.operation(DimensionOperation::kPROD, dim(a), dim(b)); }
	Expr floor_div(Expr a, Expr b) override { return b_.operation(DimensionOperation::kFLOOR_DIV, dim(a), dim(b)); }

private:
	static const IDimensionExpr &dim(Expr e) { return *static_cast<const IDimensionExpr *>(e); }
	IExprBuilder &b_;
};

class CarafePlugin final : public IPluginV2DynamicExt {
public:
	CarafePlugin(const std::string &node, const core::Attrs &a) : node_(node), attrs_(a) {}

	// IPluginV2
	const AsciiChar *getPluginType() const noexcept override { return core::kPluginName; }
	const AsciiChar *getPluginVersion() const noexcept override { return core::kPluginVersion; }
	int32_t getNbOutputs() const noexcept override { return 1; }
	int32_t initialize() noexcept override { return 0; }
	void terminate() noexcept override {}
	size_t getSerializationSize() const noexcept override { return core::serialized_size(); }
	void serialize(void *buffer) const noexcept override { core::serialize(attrs_, buffer); }
	void destroy() noexcept override { delete this; }
	void setPluginNamespace(const AsciiChar *ns) noexcept override { set_string(ns_, ns); }
	const AsciiChar *getPluginNamespace() const noexcept override { return ns_.c_str(); }

	// IPluginV2Ext
	DataType getOutputDataType(int32_t index, const DataType *inputTypes, int32_t nbInputs) const noexcept override
	{
		(void)index;
		core::DType in[2] = {core::DType::kOther, core::DType::kOther};
		for (int32_t i = 0; i < nbInputs && i < 2; i++)
			in[i] = dtype(inputTypes[i]);
		return trt_type(core::output_type(in, nbInputs < 2 ? nbInputs : 2));
	}

	// IPluginV2DynamicExt
	IPluginV2DynamicExt *clone() const noexcept override
	{
		try {
			CarafePlugin *p = new CarafePlugin(node_, attrs_);
			p->ns_ = ns_;
			return p;
		} catch (...) { // out of memory: TensorRT reports the NULL
			return nullptr;
		}
	}

	DimsExprs getOutputDimensions(int32_t outputIndex, const DimsExprs *inputs, int32_t nbInputs,
	                              IExprBuilder &exprBuilder) noexcept override
	{
		DimsExprs out{};
		if (outputIndex != 0 || nbInputs != 2 || !inputs) {
			log_error(node_, "output dimensions", "MMCVCARAFE takes two inputs (features, masks) and has one output");
			return out;
		}
		TrtExprBuilder b(exprBuilder);
		core::ExprBuilder::Expr in[4] = {}, o[4];
		for (int i = 0; i < 4 && i < inputs[0].nbDims; i++)
			in[i] = inputs[0].d[i];
		char err[320];
		if (!core::output_dims(b, in, inputs[0].nbDims, inputs[1].nbDims, attrs_, o, err, sizeof err)) {
			log_error(node_, "output dimensions", err);
			return out;
		}
		out.nbDims = 4;
		for (int i = 0; i < 4; i++)
			out.d[i] = static_cast<const IDimensionExpr *>(o[i]);
		return out;
	}

	bool supportsFormatCombination(int32_t pos, const PluginTensorDesc *inOut, int32_t nbInputs,
	                               int32_t nbOutputs) noexcept override
	{
		if (!inOut || nbInputs != 2 || nbOutputs != 1 || pos < 0 || pos > 2)
			return false;
		core::Desc d[3];
		for (int32_t i = 0; i <= pos; i++)
			d[i] = desc(inOut[i]);
		return core::supports(pos, d, nbInputs, nbOutputs);
	}

	void configurePlugin(const DynamicPluginTensorDesc *in, int32_t nbInputs, const DynamicPluginTensorDesc *out,
	                     int32_t nbOutputs) noexcept override
	{
		(void)out, (void)nbOutputs;
		// Checked as far as the shapes are known (dynamic dimensions are -1); a failure here is
		// reported once at build time and enqueue refuses to run the same shapes.
		if (nbInputs != 2 || !in || in[0].desc.dims.nbDims != 4 || in[1].desc.dims.nbDims != 4) {
			log_error(node_, "configure", "features and masks must be two rank-4 tensors");
			return;
		}
		int64_t f[4], m[4];
		shape4(in[0].desc.dims, f);
		shape4(in[1].desc.dims, m);
		char err[320];
		if (!core::check_shapes(f, m, attrs_, err, sizeof err))
			log_error(node_, "configure", err);
	}

	size_t getWorkspaceSize(const PluginTensorDesc *, int32_t, const PluginTensorDesc *, int32_t) const noexcept override
	{
		return 0;
	}

	int32_t enqueue(const PluginTensorDesc *inputDesc, const PluginTensorDesc *outputDesc, const void *const *inputs,
	                void *const *outputs, void *workspace, cudaStream_t stream) noexcept override
	{
		(void)outputDesc, (void)workspace;
		int64_t f[4], m[4];
		shape4(inputDesc[0].dims, f);
		shape4(inputDesc[1].dims, m);
		carafe_dims d;
		char err[320];
		if (inputDesc[0].dims.nbDims != 4 || inputDesc[1].dims.nbDims != 4 ||
		    !core::make_dims(f, m, attrs_, &d, err, sizeof err)) {
			log_error(node_, "enqueue", inputDesc[0].dims.nbDims != 4 ? "features must have rank 4" : err);
			return 1;
		}
		const int feat_half = inputDesc[0].type == DataType::kHALF, mask_half = inputDesc[1].type == DataType::kHALF;
		const int rc = stardetr_carafe_cuda_launch(stream, feat_half, mask_half, inputs[0], inputs[1], outputs[0], &d,
		                                           err, sizeof err);
		if (rc != 0) {
			log_error(node_, "CUDA", err);
			return 1;
		}
		return 0;
	}

private:
	std::string node_;
	core::Attrs attrs_;
	std::string ns_;
};

class CarafePluginCreator final : public IPluginCreator {
public:
	CarafePluginCreator()
	{
		for (int i = 0; i < core::kNumFields; i++)
			fields_[i] = PluginField(core::kFields[i].name, nullptr, plugin_field_type(core::kFields[i].type), 1);
		collection_.nbFields = core::kNumFields;
		collection_.fields = fields_;
	}

	const AsciiChar *getPluginName() const noexcept override { return core::kPluginName; }
	const AsciiChar *getPluginVersion() const noexcept override { return core::kPluginVersion; }
	const PluginFieldCollection *getFieldNames() noexcept override { return &collection_; }

	IPluginV2 *createPlugin(const AsciiChar *name, const PluginFieldCollection *fc) noexcept override
	{
		try {
			return create(name ? name : "", fc);
		} catch (...) { // out of memory
			return nullptr;
		}
	}

	IPluginV2 *deserializePlugin(const AsciiChar *name, const void *serialData, size_t serialLength) noexcept override
	{
		try {
			return load(name ? name : "", serialData, serialLength);
		} catch (...) {
			return nullptr;
		}
	}

	void setPluginNamespace(const AsciiChar *ns) noexcept override { set_string(ns_, ns); }
	const AsciiChar *getPluginNamespace() const noexcept override { return ns_.c_str(); }

private:
	IPluginV2 *create(const std::string &node, const PluginFieldCollection *fc)
	{
		core::Field fields[16];
		const int32_t n = fc ? fc->nbFields : 0;
		if (n < 0 || n > 16 || (n > 0 && !fc->fields)) {
			log_error(node, "attributes", "expected kernel_size, group_size and scale_factor");
			return nullptr;
		}
		for (int32_t i = 0; i < n; i++) {
			const PluginField &f = fc->fields[i];
			fields[i] = core::Field{f.name, field_type(f.type), f.data, f.length};
		}
		core::Attrs a;
		char err[320];
		if (!core::parse_attrs(fields, n, &a, err, sizeof err)) {
			log_error(node, "attributes", err);
			return nullptr;
		}
		CarafePlugin *p = new CarafePlugin(node, a);
		p->setPluginNamespace(ns_.c_str());
		return p;
	}

	IPluginV2 *load(const std::string &node, const void *serialData, size_t serialLength)
	{
		core::Attrs a;
		char err[320];
		if (!core::deserialize(serialData, serialLength, &a, err, sizeof err)) {
			log_error(node, "deserialize", err);
			return nullptr;
		}
		CarafePlugin *p = new CarafePlugin(node, a);
		p->setPluginNamespace(ns_.c_str());
		return p;
	}

	PluginField fields_[core::kNumFields];
	PluginFieldCollection collection_{};
	std::string ns_ = core::kPluginNamespace;
};

} // namespace

REGISTER_TENSORRT_PLUGIN(CarafePluginCreator);

// Identifies the library (trt-check and `nm -D`): the plugin it registers and the TensorRT
// headers it was compiled against.
extern "C" __attribute__((visibility("default"))) const char *stardetr_carafe_trt_info(void)
{
#define CARAFE_STR_(x) #x
#define CARAFE_STR(x) CARAFE_STR_(x)
	return "MMCVCARAFE 1 stardetr-carafe " STARDETR_CARAFE_VERSION " TensorRT " CARAFE_STR(NV_TENSORRT_MAJOR) "." CARAFE_STR(
		NV_TENSORRT_MINOR) "." CARAFE_STR(NV_TENSORRT_PATCH);
}
