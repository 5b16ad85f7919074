/* ONNX Runtime glue: registers mmcv::MMCVCARAFE through the pure C API.
 *
 * Any ONNX Runtime >= 1.25 (C API 25, the version onnxruntime_go v1.30.0 speaks) can load this
 * library with RegisterCustomOpsLibrary; a newer runtime accepts our older OrtCustomOp version.
 *
 * Lifetime: ONNX Runtime needs the custom-op domain to outlive every session options object and
 * session that uses it, and it never frees it. The library keeps ONE domain (created on first
 * registration) and adds that same domain to every OrtSessionOptions, so registering into any
 * number of sessions allocates nothing more. The domain is released when the library itself is
 * unloaded, which ONNX Runtime does only after the last options/session holding it is gone.
 *
 * Built twice: libstardetr_carafe.so (CPU op only, no CUDA dependency) and, with
 * -DSTARDETR_CARAFE_CUDA, libstardetr_carafe_cuda.so, which also registers CUDA-provider ops
 * that launch on the provider's compute stream. Type constraint: on the CPU everything is
 * float32; on CUDA features are float32 or float16, masks float32 or float16 independently of
 * the features (a model may keep its softmaxed masks in float32), and the output has the
 * features' type. ONNX Runtime merges the ops of one name into one schema and picks the kernel
 * whose types match the node. */
#include "carafe.h"
#include "onnxruntime_c_api.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef STARDETR_CARAFE_CUDA
#include "carafe_cuda.h"
#endif

#define OP_NAME "MMCVCARAFE"

typedef struct carafe_op {
	OrtCustomOp base; /* first member: ONNX Runtime hands back &base */
	const char *ep;
	ONNXTensorElementDataType feat_type, mask_type; /* the output has feat_type */
} carafe_op;

typedef struct carafe_kernel {
	const OrtApi *api;
	int64_t k, groups;
	float scale;
	int cuda;                      /* CUDA op (else CPU) */
	int feat_half, mask_half;      /* CUDA: float16 features (and output), float16 masks */
	const carafe_variant *variant; /* CPU only */
	char node[160];
} carafe_kernel;

static OrtStatus *carafe_error(const OrtApi *api, OrtErrorCode code, const char *node, const char *fmt, ...)
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, OP_NAME " node \"%s\": ", node && *node ? node : "(unnamed)");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
	va_end(ap);
	return api->CreateStatus(code, msg);
}

static const char *ORT_API_CALL op_name(const OrtCustomOp *op) { (void)op; return OP_NAME; }
static const char *ORT_API_CALL op_ep(const OrtCustomOp *op) { return ((const carafe_op *)op)->ep; }
static ONNXTensorElementDataType ORT_API_CALL op_in_type(const OrtCustomOp *op, size_t i)
{
	const carafe_op *o = (const carafe_op *)op;
	return i == 1 ? o->mask_type : o->feat_type;
}
static ONNXTensorElementDataType ORT_API_CALL op_out_type(const OrtCustomOp *op, size_t i)
{
	(void)i;
	return ((const carafe_op *)op)->feat_type;
}
static size_t ORT_API_CALL op_in_count(const OrtCustomOp *op) { (void)op; return 2; }
static size_t ORT_API_CALL op_out_count(const OrtCustomOp *op) { (void)op; return 1; }
static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_required(const OrtCustomOp *op, size_t i)
{
	(void)op, (void)i;
	return INPUT_OUTPUT_REQUIRED;
}
static OrtMemType ORT_API_CALL op_mem(const OrtCustomOp *op, size_t i) { (void)op, (void)i; return OrtMemTypeDefault; }
static int ORT_API_CALL op_min_arity(const OrtCustomOp *op) { (void)op; return 1; }
static int ORT_API_CALL op_homogeneous(const OrtCustomOp *op) { (void)op; return 0; }
static int ORT_API_CALL op_start_version(const OrtCustomOp *op) { (void)op; return 1; }
static int ORT_API_CALL op_end_version(const OrtCustomOp *op) { (void)op; return 2147483647; }

static void ORT_API_CALL kernel_destroy(void *k) { free(k); }

static OrtStatus *ORT_API_CALL kernel_create(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                             void **out)
{
	const carafe_op *cop = (const carafe_op *)op;
	carafe_kernel *kr = calloc(1, sizeof *kr);
	if (!kr)
		return api->CreateStatus(ORT_FAIL, OP_NAME ": out of memory creating the kernel");
	kr->api = api;

	size_t size = 0;
	OrtStatus *st = api->KernelInfo_GetNodeName(info, NULL, &size);
	if (st) {
		api->ReleaseStatus(st);
	} else if (size > 0) {
		char *name = malloc(size);
		if (name && !(st = api->KernelInfo_GetNodeName(info, name, &size)))
			snprintf(kr->node, sizeof kr->node, "%s", name);
		if (st)
			api->ReleaseStatus(st);
		free(name);
	}

	if ((st = api->KernelInfoGetAttribute_int64(info, "kernel_size", &kr->k))) {
		api->ReleaseStatus(st);
		OrtStatus *e = carafe_error(api, ORT_INVALID_ARGUMENT, kr->node,
		                            "attribute kernel_size (int, odd) is missing");
		free(kr);
		return e;
	}
	if ((st = api->KernelInfoGetAttribute_int64(info, "group_size", &kr->groups))) {
		api->ReleaseStatus(st);
		kr->groups = 1; /* mmcv's default */
	}
	if ((st = api->KernelInfoGetAttribute_float(info, "scale_factor", &kr->scale))) {
		api->ReleaseStatus(st);
		int64_t si;
		if ((st = api->KernelInfoGetAttribute_int64(info, "scale_factor", &si))) {
			api->ReleaseStatus(st);
			OrtStatus *e = carafe_error(api, ORT_INVALID_ARGUMENT, kr->node,
			                            "attribute scale_factor (float, >= 1) is missing");
			free(kr);
			return e;
		}
		kr->scale = (float)si;
	}
	char msg[256];
	if (carafe_check_attrs(kr->groups, kr->k, kr->scale, msg, sizeof msg)) {
		OrtStatus *e = carafe_error(api, ORT_INVALID_ARGUMENT, kr->node, "%s", msg);
		free(kr);
		return e;
	}
	if (cop->ep && strcmp(cop->ep, "CPUExecutionProvider") != 0) {
		kr->cuda = 1;
		kr->feat_half = cop->feat_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
		kr->mask_half = cop->mask_type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
	} else
		kr->variant = carafe_best_variant();
	*out = kr;
	return NULL;
}

/* Reads both inputs, checks them against the attributes and allocates the output. */
static OrtStatus *kernel_prepare(carafe_kernel *kr, OrtKernelContext *ctx, carafe_dims *d, const void **feat,
                                 const void **mask, void **out)
{
	const OrtApi *api = kr->api;
	const OrtValue *in[2];
	int64_t dims[2][4];
	static const char *const names[2] = {"features", "masks"};
	for (size_t i = 0; i < 2; i++) {
		OrtStatus *st = api->KernelContext_GetInput(ctx, i, &in[i]);
		if (st)
			return st;
		if (!in[i])
			return carafe_error(api, ORT_INVALID_ARGUMENT, kr->node, "input %s is missing", names[i]);
		OrtTensorTypeAndShapeInfo *ti;
		if ((st = api->GetTensorTypeAndShape(in[i], &ti)))
			return st;
		size_t rank = 0;
		st = api->GetDimensionsCount(ti, &rank);
		if (!st && rank == 4)
			st = api->GetDimensions(ti, dims[i], 4);
		api->ReleaseTensorTypeAndShapeInfo(ti);
		if (st)
			return st;
		if (rank != 4)
			return carafe_error(api, ORT_INVALID_ARGUMENT, kr->node, "input %s must have rank 4 (%s), got rank %zu",
			                    names[i], i == 0 ? "[N,C,H,W]" : "[N,G*k*k,H*s,W*s]", rank);
	}
	if (dims[0][0] != dims[1][0])
		return carafe_error(api, ORT_INVALID_ARGUMENT, kr->node,
		                    "features batch N=%lld and masks batch N=%lld must be equal", (long long)dims[0][0],
		                    (long long)dims[1][0]);
	char msg[320];
	if (carafe_dims_init(d, dims[0][0], dims[0][1], dims[0][2], dims[0][3], dims[1][1], dims[1][2], dims[1][3],
	                     kr->groups, kr->k, kr->scale, msg, sizeof msg))
		return carafe_error(api, ORT_INVALID_ARGUMENT, kr->node, "%s", msg);

	const int64_t od[4] = {d->n, d->c, d->ho, d->wo};
	OrtValue *ov;
	OrtStatus *st = api->KernelContext_GetOutput(ctx, 0, od, 4, &ov);
	if (st)
		return st;
	if ((st = api->GetTensorMutableData((OrtValue *)in[0], (void **)feat)))
		return st;
	if ((st = api->GetTensorMutableData((OrtValue *)in[1], (void **)mask)))
		return st;
	return api->GetTensorMutableData(ov, out);
}

typedef struct cpu_job {
	const carafe_variant *v;
	const carafe_dims *d;
	const float *feat, *mask;
	float *out;
} cpu_job;

static void cpu_job_run(void *p, size_t task)
{
	const cpu_job *j = p;
	j->v->run(j->d, j->feat, j->mask, j->out, task);
}

static OrtStatus *ORT_API_CALL kernel_compute_cpu(void *k, OrtKernelContext *ctx)
{
	carafe_kernel *kr = k;
	carafe_dims d;
	const void *feat, *mask;
	void *out;
	OrtStatus *st = kernel_prepare(kr, ctx, &d, &feat, &mask, &out);
	if (st)
		return st;
	if (d.n == 0 || d.c == 0 || d.ho == 0 || d.wo == 0)
		return NULL;
	cpu_job job = {kr->variant, &d, feat, mask, out};
	const size_t tasks = kr->variant->tasks(&d);
	if (tasks == 1) {
		cpu_job_run(&job, 0);
		return NULL;
	}
	/* ONNX Runtime's intra-op pool, so the session's thread settings hold; without a pool
	 * (one thread) it runs the tasks inline. */
	return kr->api->KernelContext_ParallelFor(ctx, cpu_job_run, tasks, 0, &job);
}

#ifdef STARDETR_CARAFE_CUDA
static OrtStatus *ORT_API_CALL kernel_compute_cuda(void *k, OrtKernelContext *ctx)
{
	carafe_kernel *kr = k;
	carafe_dims d;
	const void *feat, *mask;
	void *out;
	OrtStatus *st = kernel_prepare(kr, ctx, &d, &feat, &mask, &out);
	if (st)
		return st;
	if (d.n == 0 || d.c == 0 || d.ho == 0 || d.wo == 0)
		return NULL;
	void *stream = NULL;
	if ((st = kr->api->KernelContext_GetGPUComputeStream(ctx, &stream)))
		return st;
	char msg[320] = "";
	if (stardetr_carafe_cuda_launch(stream, kr->feat_half, kr->mask_half, feat, mask, out, &d, msg, sizeof msg))
		return carafe_error(kr->api, ORT_RUNTIME_EXCEPTION, kr->node, "CUDA: %s", msg);
	return NULL;
}
#endif

/* Process-wide registration state, set once under carafe_lock and read-only afterwards. */
static pthread_mutex_t carafe_lock = PTHREAD_MUTEX_INITIALIZER;
static OrtCustomOpDomain *carafe_domain;
static const OrtApi *carafe_registered_api;
static carafe_op carafe_ops[5];

/* Output shape [N, C, Ho, Wo]: N and C from features, Ho and Wo from masks, symbolic names
 * kept, so graphs whose later shapes depend on this node still get static shapes. */
static OrtStatus *ORT_API_CALL op_infer_shape(const OrtCustomOp *op, OrtShapeInferContext *ctx)
{
	(void)op;
	/* Shape inference only helps; ONNX Runtime ignores a failure here, and Compute checks shapes. */
	const OrtApi *api = carafe_registered_api;
	if (!api)
		return NULL;
	OrtTensorTypeAndShapeInfo *ti[2] = {NULL, NULL}, *oi = NULL;
	OrtStatus *st = NULL;
	size_t rank[2] = {0, 0};
	int64_t dims[2][4];
	const char *sym[2][4];
	ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
	for (size_t i = 0; i < 2 && !st; i++) {
		if ((st = api->ShapeInferContext_GetInputTypeShape(ctx, i, &ti[i])))
			break;
		if ((st = api->GetDimensionsCount(ti[i], &rank[i])))
			break;
		if (rank[i] != 4)
			goto done;
		if ((st = api->GetDimensions(ti[i], dims[i], 4)))
			break;
		if ((st = api->GetSymbolicDimensions(ti[i], sym[i], 4)))
			break;
	}
	if (st || (st = api->GetTensorElementType(ti[0], &et)))
		goto done;
	const int64_t od[4] = {dims[0][0], dims[0][1], dims[1][2], dims[1][3]};
	const char *os[4] = {sym[0][0], sym[0][1], sym[1][2], sym[1][3]};
	/* An unknown dimension without a symbolic name reads as -1, which SetDimensions would
	 * take as a real size and so break the shapes of later nodes: infer nothing then. */
	for (int i = 0; i < 4; i++)
		if (od[i] <= 0 && (!os[i] || !*os[i]))
			goto done;
	if ((st = api->CreateTensorTypeAndShapeInfo(&oi)) || (st = api->SetTensorElementType(oi, et)) ||
	    (st = api->SetDimensions(oi, od, 4)) || (st = api->SetSymbolicDimensions(oi, os, 4)))
		goto done;
	st = api->ShapeInferContext_SetOutputTypeShape(ctx, 0, oi);
done:
	if (oi)
		api->ReleaseTensorTypeAndShapeInfo(oi);
	/* ti[] belong to the context (ONNX Runtime frees them), oi is ours. */
	return st;
}

static void op_init(carafe_op *o, const char *ep, ONNXTensorElementDataType feat_type,
                    ONNXTensorElementDataType mask_type, OrtStatus *(ORT_API_CALL *compute)(void *, OrtKernelContext *))
{
	memset(o, 0, sizeof *o);
	o->ep = ep;
	o->feat_type = feat_type;
	o->mask_type = mask_type;
	OrtCustomOp *b = &o->base;
	b->version = ORT_API_VERSION;
	b->GetName = op_name;
	b->GetExecutionProviderType = op_ep;
	b->GetInputType = op_in_type;
	b->GetInputTypeCount = op_in_count;
	b->GetOutputType = op_out_type;
	b->GetOutputTypeCount = op_out_count;
	b->KernelDestroy = kernel_destroy;
	b->GetInputCharacteristic = op_required;
	b->GetOutputCharacteristic = op_required;
	b->GetInputMemoryType = op_mem;
	b->GetVariadicInputMinArity = op_min_arity;
	b->GetVariadicInputHomogeneity = op_homogeneous;
	b->GetVariadicOutputMinArity = op_min_arity;
	b->GetVariadicOutputHomogeneity = op_homogeneous;
	b->CreateKernelV2 = kernel_create;
	b->KernelComputeV2 = compute;
	b->InferOutputShapeFn = op_infer_shape;
	b->GetStartVersion = op_start_version;
	b->GetEndVersion = op_end_version;
}

static OrtStatus *domain_create(const OrtApi *api)
{
	size_t nops = 0;
	const ONNXTensorElementDataType f32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
	op_init(&carafe_ops[nops++], "CPUExecutionProvider", f32, f32, kernel_compute_cpu);
#ifdef STARDETR_CARAFE_CUDA
	const ONNXTensorElementDataType f16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
	op_init(&carafe_ops[nops++], "CUDAExecutionProvider", f32, f32, kernel_compute_cuda);
	op_init(&carafe_ops[nops++], "CUDAExecutionProvider", f16, f16, kernel_compute_cuda);
	op_init(&carafe_ops[nops++], "CUDAExecutionProvider", f16, f32, kernel_compute_cuda);
	op_init(&carafe_ops[nops++], "CUDAExecutionProvider", f32, f16, kernel_compute_cuda);
#endif
	OrtCustomOpDomain *dom;
	OrtStatus *st = api->CreateCustomOpDomain("mmcv", &dom);
	if (st)
		return st;
	for (size_t i = 0; i < nops; i++)
		if ((st = api->CustomOpDomain_Add(dom, &carafe_ops[i].base))) {
			api->ReleaseCustomOpDomain(dom);
			return st;
		}
	carafe_registered_api = api;
	carafe_domain = dom;
	return NULL;
}

CARAFE_EXPORT OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base)
{
	const OrtApi *api = api_base->GetApi(ORT_API_VERSION);
	if (!api) {
		/* Older runtime: find any API table it has, just to report the problem. */
		for (uint32_t v = ORT_API_VERSION - 1; v >= 1; v--) {
			const OrtApi *old = api_base->GetApi(v);
			if (old) {
				char msg[256];
				snprintf(msg, sizeof msg,
				         "libstardetr_carafe %s needs ONNX Runtime with C API version >= %d (1.%d or newer); "
				         "this runtime is %s",
				         STARDETR_CARAFE_VERSION, ORT_API_VERSION, ORT_API_VERSION, api_base->GetVersionString());
				return old->CreateStatus(ORT_FAIL, msg);
			}
		}
		return NULL; /* cannot even report: nothing registered */
	}
	pthread_mutex_lock(&carafe_lock);
	OrtStatus *st = carafe_domain ? NULL : domain_create(api);
	pthread_mutex_unlock(&carafe_lock);
	if (st)
		return st;
	return api->AddCustomOpDomain(options, carafe_domain);
}

__attribute__((destructor)) static void carafe_unload(void)
{
	if (carafe_domain && carafe_registered_api)
		carafe_registered_api->ReleaseCustomOpDomain(carafe_domain);
	carafe_domain = NULL;
}
