// The TensorRT plugin's logic without TensorRT (carafe_trt_core.h).
#include "carafe_trt_core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

namespace carafe_trt {

const FieldName kFields[kNumFields] = {
	{"kernel_size", FieldType::kInt32},
	{"group_size", FieldType::kInt32},
	{"scale_factor", FieldType::kFloat32},
};

namespace {

bool fail(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool fail(char *err, size_t err_len, const char *fmt, ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return false;
}

const char *type_name(FieldType t)
{
	switch (t) {
	case FieldType::kInt32: return "int32";
	case FieldType::kInt64: return "int64";
	case FieldType::kFloat16: return "float16";
	case FieldType::kFloat32: return "float32";
	case FieldType::kFloat64: return "float64";
	case FieldType::kInt8: return "int8";
	case FieldType::kInt16: return "int16";
	case FieldType::kChar: return "string";
	case FieldType::kOther: break;
	}
	return "an unsupported type";
}

// One integer value of an integer field.
bool int_value(const Field &f, int64_t *v)
{
	switch (f.type) {
	case FieldType::kInt32: { int32_t x; memcpy(&x, f.data, sizeof x); *v = x; return true; }
	case FieldType::kInt64: { int64_t x; memcpy(&x, f.data, sizeof x); *v = x; return true; }
	case FieldType::kInt16: { int16_t x; memcpy(&x, f.data, sizeof x); *v = x; return true; }
	case FieldType::kInt8: { int8_t x; memcpy(&x, f.data, sizeof x); *v = x; return true; }
	default: return false;
	}
}

// scale = m / 2^e with m odd (or e = 0): the exact rational the float is.
void scale_ratio(float s, int64_t *m, int64_t *pow2)
{
	*m = 0, *pow2 = 1;
	for (int e = 0; e <= 40; e++) {
		const double v = ldexp((double)s, e);
		if (v == floor(v)) {
			*m = v <= 9.0e18 ? (int64_t)v : INT64_MAX;
			*pow2 = (int64_t)1 << e;
			return;
		}
	}
	*m = INT64_MAX;
}

constexpr int64_t kMaxScaleNumerator = 65535;

int64_t out_size(int64_t x, float s) { return (int64_t)floor((double)x * (double)s); }

} // namespace

bool check_attrs(const Attrs &a, char *err, size_t err_len)
{
	char msg[256];
	if (carafe_check_attrs(a.group_size, a.kernel_size, a.scale_factor, msg, sizeof msg))
		return fail(err, err_len, "%s", msg);
	int64_t m, pow2;
	scale_ratio(a.scale_factor, &m, &pow2);
	if (m > kMaxScaleNumerator)
		return fail(err, err_len,
		            "attribute scale_factor=%.9g is not m/2^e with m <= %lld: the TensorRT plugin takes integral scale "
		            "factors and binary fractions such as 1.5 or 2.25",
		            (double)a.scale_factor, (long long)kMaxScaleNumerator);
	return true;
}

bool parse_attrs(const Field *fields, int32_t count, Attrs *a, char *err, size_t err_len)
{
	bool seen[kNumFields] = {false, false, false};
	Attrs r = {0, 1, 0.0f}; // group_size defaults to 1, as in mmcv
	if (count < 0 || (count > 0 && !fields))
		return fail(err, err_len, "no attributes given (want kernel_size, group_size, scale_factor)");
	for (int32_t i = 0; i < count; i++) {
		const Field &f = fields[i];
		const char *name = f.name ? f.name : "";
		int idx = -1;
		for (int j = 0; j < kNumFields; j++)
			if (strcmp(name, kFields[j].name) == 0)
				idx = j;
		if (idx < 0)
			return fail(err, err_len, "unknown attribute \"%s\" (MMCVCARAFE takes kernel_size, group_size, scale_factor)",
			            name);
		if (seen[idx])
			return fail(err, err_len, "attribute %s is given twice", name);
		seen[idx] = true;
		if (f.length != 1 || !f.data)
			return fail(err, err_len, "attribute %s has %d values, want exactly 1", name, (int)f.length);
		int64_t iv;
		if (idx == 2) { // scale_factor: float, or an integer
			double v;
			if (f.type == FieldType::kFloat32) {
				float x;
				memcpy(&x, f.data, sizeof x);
				v = x;
			} else if (f.type == FieldType::kFloat64) {
				memcpy(&v, f.data, sizeof v);
			} else if (int_value(f, &iv)) {
				v = (double)iv;
			} else {
				return fail(err, err_len, "attribute scale_factor has type %s, want float32", type_name(f.type));
			}
			if (isfinite(v) && fabs(v) > 3.4e38) // beyond float's range: check_attrs names it as inf
				v = v > 0 ? INFINITY : -INFINITY;
			r.scale_factor = (float)v;
			continue;
		}
		if (!int_value(f, &iv))
			return fail(err, err_len, "attribute %s has type %s, want int32", name, type_name(f.type));
		if (iv < INT32_MIN || iv > INT32_MAX)
			return fail(err, err_len, "attribute %s=%lld is out of range", name, (long long)iv);
		(idx == 0 ? r.kernel_size : r.group_size) = (int32_t)iv;
	}
	if (!seen[0])
		return fail(err, err_len, "attribute kernel_size (int, odd) is missing");
	if (!seen[2])
		return fail(err, err_len, "attribute scale_factor (float, >= 1) is missing");
	if (!check_attrs(r, err, err_len))
		return false;
	*a = r;
	return true;
}

bool output_dims(ExprBuilder &b, const ExprBuilder::Expr *feat, int32_t feat_rank, int32_t mask_rank,
                 const Attrs &a, ExprBuilder::Expr out[4], char *err, size_t err_len)
{
	if (feat_rank != 4 || mask_rank != 4)
		return fail(err, err_len, "features and masks must have rank 4 ([N,C,H,W] and [N,G*k*k,H*s,W*s]), got ranks %d and %d",
		            (int)feat_rank, (int)mask_rank);
	int64_t m, pow2;
	scale_ratio(a.scale_factor, &m, &pow2);
	out[0] = feat[0];
	out[1] = feat[1];
	for (int i = 2; i < 4; i++) {
		if (pow2 == 1)
			out[i] = m == 1 ? feat[i] : b.prod(feat[i], b.constant(m));
		else
			out[i] = b.floor_div(b.prod(feat[i], b.constant(m)), b.constant(pow2));
	}
	return true;
}

bool supports(int32_t pos, const Desc *in_out, int32_t nb_inputs, int32_t nb_outputs)
{
	if (nb_inputs != 2 || nb_outputs != 1 || pos < 0 || pos > 2 || !in_out)
		return false;
	const Desc &d = in_out[pos];
	if (d.format != Format::kLinear)
		return false;
	if (pos < 2)
		return d.type == DType::kFloat || d.type == DType::kHalf;
	return d.type == in_out[0].type;
}

DType output_type(const DType *inputs, int32_t nb_inputs) { return nb_inputs > 0 ? inputs[0] : DType::kOther; }

bool check_shapes(const int64_t feat[4], const int64_t mask[4], const Attrs &a, char *err, size_t err_len)
{
	static const char *const names[4] = {"N", "C", "H", "W"};
	for (int i = 0; i < 4; i++) {
		if (feat[i] < -1)
			return fail(err, err_len, "features dimension %s=%lld is negative", names[i], (long long)feat[i]);
		if (mask[i] < -1)
			return fail(err, err_len, "masks dimension %d=%lld is negative", i, (long long)mask[i]);
	}
	const int64_t g = a.group_size, k = a.kernel_size;
	if (feat[1] >= 0 && feat[1] % g != 0)
		return fail(err, err_len, "features channels C=%lld must be divisible by attribute group_size=%lld (C %% G == 0)",
		            (long long)feat[1], (long long)g);
	if (mask[1] >= 0 && mask[1] != g * k * k)
		return fail(err, err_len, "masks channels=%lld must equal group_size*kernel_size*kernel_size = %lld*%lld*%lld = %lld",
		            (long long)mask[1], (long long)g, (long long)k, (long long)k, (long long)(g * k * k));
	if (feat[0] >= 0 && mask[0] >= 0 && feat[0] != mask[0])
		return fail(err, err_len, "features batch N=%lld and masks batch N=%lld must be equal", (long long)feat[0],
		            (long long)mask[0]);
	for (int i = 2; i < 4; i++)
		if (feat[i] >= 0 && mask[i] >= 0 && mask[i] != out_size(feat[i], a.scale_factor))
			return fail(err, err_len,
			            "masks %s=%lld must equal floor(features %s=%lld * attribute scale_factor=%g) = %lld",
			            i == 2 ? "height" : "width", (long long)mask[i], names[i], (long long)feat[i],
			            (double)a.scale_factor, (long long)out_size(feat[i], a.scale_factor));
	return true;
}

bool make_dims(const int64_t feat[4], const int64_t mask[4], const Attrs &a, carafe_dims *d, char *err,
               size_t err_len)
{
	for (int i = 0; i < 4; i++)
		if (feat[i] < 0 || mask[i] < 0)
			return fail(err, err_len, "shapes are not known at run time (features dimension %d=%lld, masks %lld)", i,
			            (long long)feat[i], (long long)mask[i]);
	if (!check_shapes(feat, mask, a, err, err_len))
		return false;
	char msg[320];
	if (carafe_dims_init(d, feat[0], feat[1], feat[2], feat[3], mask[1], mask[2], mask[3], a.group_size,
	                     a.kernel_size, a.scale_factor, msg, sizeof msg))
		return fail(err, err_len, "%s", msg);
	return true;
}

// ---- serialized layout ----

namespace {
const unsigned char kMagic[4] = {'C', 'R', 'F', 'E'};

void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}
uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}
} // namespace

size_t serialized_size() { return kSerializedSize; }

void serialize(const Attrs &a, void *buffer)
{
	unsigned char *p = static_cast<unsigned char *>(buffer);
	memcpy(p, kMagic, 4);
	put_u16(p + 4, kLayoutVersion);
	put_u16(p + 6, (uint16_t)kHeaderSize);
	put_u32(p + 8, (uint32_t)kPayloadSize);
	uint32_t scale;
	memcpy(&scale, &a.scale_factor, sizeof scale);
	put_u32(p + 12, (uint32_t)a.kernel_size);
	put_u32(p + 16, (uint32_t)a.group_size);
	put_u32(p + 20, scale);
}

bool deserialize(const void *buffer, size_t length, Attrs *a, char *err, size_t err_len)
{
	const unsigned char *p = static_cast<const unsigned char *>(buffer);
	if (!p || length < kHeaderSize)
		return fail(err, err_len, "serialized plugin data is truncated: %zu bytes, its header alone is %zu", length,
		            kHeaderSize);
	if (memcmp(p, kMagic, 4) != 0)
		return fail(err, err_len,
		            "serialized plugin data is not a stardetr MMCVCARAFE plugin's (magic %02x %02x %02x %02x, want "
		            "\"CRFE\"): the engine was built with another MMCVCARAFE plugin; rebuild it with this one",
		            p[0], p[1], p[2], p[3]);
	const uint16_t version = get_u16(p + 4), header = get_u16(p + 6);
	const uint32_t payload = get_u32(p + 8);
	if (version != kLayoutVersion)
		return fail(err, err_len,
		            "serialized plugin data has layout version %u; this library reads version %u: rebuild the engine "
		            "(delete the TensorRT engine cache) with this plugin",
		            (unsigned)version, (unsigned)kLayoutVersion);
	if (header != kHeaderSize || payload != kPayloadSize)
		return fail(err, err_len, "serialized plugin data has header size %u and payload size %u, want %zu and %zu",
		            (unsigned)header, (unsigned)payload, kHeaderSize, kPayloadSize);
	if (length != kHeaderSize + payload)
		return fail(err, err_len, "serialized plugin data is %zu bytes, want %zu (%s)", length, kHeaderSize + payload,
		            length < kHeaderSize + payload ? "truncated" : "trailing bytes");
	Attrs r;
	const uint32_t scale = get_u32(p + 20);
	r.kernel_size = (int32_t)get_u32(p + 12);
	r.group_size = (int32_t)get_u32(p + 16);
	memcpy(&r.scale_factor, &scale, sizeof scale);
	char msg[256];
	if (!check_attrs(r, msg, sizeof msg))
		return fail(err, err_len, "serialized plugin data holds invalid attributes: %s", msg);
	*a = r;
	return true;
}

} // namespace carafe_trt
