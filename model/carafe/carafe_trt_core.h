// The TensorRT MMCVCARAFE plugin's logic without TensorRT: attribute parsing and validation, the
// output dimensions, the accepted types and formats, and the serialized layout. Plain C++ (no
// TensorRT, no CUDA header), so that `make test` checks it on every machine; the TensorRT adapter
// (carafe_trt.cpp) only maps TensorRT's types onto these and calls them.
#ifndef STARDETR_CARAFE_TRT_CORE_H
#define STARDETR_CARAFE_TRT_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "carafe.h"

namespace carafe_trt {

// The name, version and namespace TensorRT's ONNX parser looks the plugin up by: onnx-tensorrt's
// fallback importer takes the node's op_type as the name, attribute plugin_version (default "1")
// and plugin_namespace (default "").
constexpr const char *kPluginName = "MMCVCARAFE";
constexpr const char *kPluginVersion = "1";
constexpr const char *kPluginNamespace = "";

// A plugin field's element type: TensorRT's PluginFieldType, less what CARAFE never receives.
enum class FieldType { kInt32, kInt64, kFloat16, kFloat32, kFloat64, kInt8, kInt16, kChar, kOther };

// One attribute as TensorRT hands it over (PluginField): name, type, data and element count.
struct Field {
	const char *name;
	FieldType type;
	const void *data;
	int32_t length;
};

// The attributes as mmcv's ONNX export writes them: kernel_size (int), group_size (int, default
// 1), scale_factor (float; an int is accepted too).
struct Attrs {
	int32_t kernel_size;
	int32_t group_size;
	float scale_factor;
};

// The fields the creator announces (getFieldNames): onnx-tensorrt passes exactly these, as
// kInt32 for ONNX INT attributes and kFloat32 for FLOAT ones.
struct FieldName {
	const char *name;
	FieldType type;
};
constexpr int kNumFields = 3;
extern const FieldName kFields[kNumFields];

// Parses the fields into *a and validates them. Returns true, or false with one line in err
// that names the attribute and the rule (missing kernel_size, an even kernel_size, group_size < 1,
// scale_factor < 1 or not representable, a wrong type or length, an unknown field).
bool parse_attrs(const Field *fields, int32_t count, Attrs *a, char *err, size_t err_len);

// Validates attributes (carafe_check_attrs's rules, plus what the output-size expression needs:
// scale_factor = m / 2^e with m <= 65535). Returns true, or false with err naming the attribute.
bool check_attrs(const Attrs &a, char *err, size_t err_len);

// ---- output dimensions ----

// The dimension expressions the output needs, whatever represents them: TensorRT's IExprBuilder
// in the adapter, a constant-folding or printing builder in the tests. Expr is an opaque handle
// owned by the builder.
class ExprBuilder {
public:
	using Expr = const void *;
	virtual Expr constant(int64_t value) = 0;
	virtual Expr prod(Expr a, Expr b) = 0;
	virtual Expr floor_div(Expr a, Expr b) = 0;

protected:
	~ExprBuilder() = default;
};

// Output [N, C, floor(H*s), floor(W*s)] from features [N, C, H, W] (the masks must agree; checked
// by check_shapes): N and C are the features' own expressions; H*s is H*s for an integral s and
// floor((H*m) / 2^e) for s = m / 2^e, which is exactly floor(H*s). Returns false with err when
// the inputs are not two rank-4 tensors.
bool output_dims(ExprBuilder &b, const ExprBuilder::Expr *feat, int32_t feat_rank, int32_t mask_rank,
                 const Attrs &a, ExprBuilder::Expr out[4], char *err, size_t err_len);

// ---- types and formats ----

enum class DType { kFloat, kHalf, kOther };
enum class Format { kLinear, kOther };
struct Desc {
	DType type;
	Format format;
};

// TensorRT's supportsFormatCombination: inOut = features, masks, output; pos is the one asked
// about, those before it already chosen. Features float32 or float16, masks float32 or float16
// independently, output in the features' type; all linear NCHW.
bool supports(int32_t pos, const Desc *in_out, int32_t nb_inputs, int32_t nb_outputs);

// The output's type for the input types (getOutputDataType): the features'.
DType output_type(const DType *inputs, int32_t nb_inputs);

// ---- shapes at build and run time ----

// Checks two rank-4 shapes against the attributes, dimension by dimension as far as they are
// known (-1: not known yet, TensorRT's dynamic dimensions at configure time): C % G, masks
// channels G*k*k, masks batch, masks spatial size floor(H*s) x floor(W*s). Returns true, or
// false with err naming the dimension, the attribute and the rule.
bool check_shapes(const int64_t feat[4], const int64_t mask[4], const Attrs &a, char *err, size_t err_len);

// The kernel's dimensions for concrete shapes (enqueue): check_shapes, then carafe_dims_init.
bool make_dims(const int64_t feat[4], const int64_t mask[4], const Attrs &a, carafe_dims *d, char *err,
               size_t err_len);

// ---- serialized layout ----
//
//   offset  size  field
//   0       4     magic "CRFE"
//   4       2     layout version (1), little-endian
//   6       2     header size (12)
//   8       4     payload size in bytes (12 for version 1)
//   12      4     kernel_size  int32
//   16      4     group_size   int32
//   20      4     scale_factor float32 (IEEE bits)
// All little-endian, written byte by byte. A newer layout gets a new version; an engine holding
// another version is refused with a message to rebuild it.
constexpr uint16_t kLayoutVersion = 1;
constexpr size_t kHeaderSize = 12;
constexpr size_t kPayloadSize = 12;
constexpr size_t kSerializedSize = kHeaderSize + kPayloadSize;

size_t serialized_size();
void serialize(const Attrs &a, void *buffer);
// Reads a buffer written by serialize. Returns true, or false with err saying what is wrong:
// truncated, not a CARAFE plugin (magic), another layout version, a size mismatch, or attributes
// that fail check_attrs.
bool deserialize(const void *buffer, size_t length, Attrs *a, char *err, size_t err_len);

} // namespace carafe_trt

#endif
