// `make trt-check`: a stand-in for TensorRT's libnvinfer.so.<major>, which cannot be had here.
// It defines the only two TensorRT functions the MMCVCARAFE plugin library needs
// (getPluginRegistry, which REGISTER_TENSORRT_PLUGIN calls when the library is loaded, and
// getLogger, where the plugin reports errors), compiled against the same TensorRT headers as the
// plugin: a registry that records what registers, and a logger that records what is logged, so
// that trt_check.cpp can load the plugin library the way ONNX Runtime, trtexec and DeepStream do
// (dlopen) and inspect the result through TensorRT's own interfaces. Not part of any package.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <string>
#include <vector>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#define STUB_EXPORT __attribute__((visibility("default")))

namespace {

using namespace nvinfer1;

struct RecordingLogger final : ILogger {
	std::vector<std::string> lines;
	void log(Severity severity, const AsciiChar *msg) noexcept override
	{
		lines.push_back(std::to_string(static_cast<int>(severity)) + " " + (msg ? msg : ""));
	}
};

struct RecordingRegistry final : IPluginRegistry {
	std::vector<IPluginCreator *> creators;
	std::vector<std::string> namespaces;
	IErrorRecorder *recorder = nullptr;

	bool registerCreator(IPluginCreator &creator, const AsciiChar *const ns) noexcept override
	{
		creators.push_back(&creator);
		namespaces.push_back(ns ? ns : "(null)");
		return true;
	}
	IPluginCreator *const *getPluginCreatorList(int32_t *const n) const noexcept override
	{
		*n = (int32_t)creators.size();
		return creators.data();
	}
	IPluginCreator *getPluginCreator(const AsciiChar *const name, const AsciiChar *const version,
	                                 const AsciiChar *const ns) noexcept override
	{
		for (size_t i = 0; i < creators.size(); i++)
			if (std::string(creators[i]->getPluginName()) == name && std::string(creators[i]->getPluginVersion()) == version &&
			    namespaces[i] == (ns ? ns : ""))
				return creators[i];
		return nullptr;
	}
	void setErrorRecorder(IErrorRecorder *const r) noexcept override { recorder = r; }
	IErrorRecorder *getErrorRecorder() const noexcept override { return recorder; }
	bool deregisterCreator(const IPluginCreator &) noexcept override { return false; }
#if NV_TENSORRT_MAJOR > 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6)
	bool isParentSearchEnabled() const override { return false; }
	void setParentSearchEnabled(const bool) override {}
	PluginLibraryHandle loadLibrary(const AsciiChar *) noexcept override { return nullptr; }
	void deregisterLibrary(PluginLibraryHandle) noexcept override {}
#endif
#if NV_TENSORRT_MAJOR >= 10
	// TensorRT 10's IPluginV3 registration: the MMCVCARAFE library must not use it (it
	// registers an IPluginCreator, which TensorRT 10 still loads); recorded as a failure.
	int32_t v3_registrations = 0;
	bool registerCreator(IPluginCreatorInterface &, const AsciiChar *const) noexcept override
	{
		v3_registrations++;
		return false;
	}
	IPluginCreatorInterface *const *getAllCreators(int32_t *const n) const noexcept override
	{
		*n = 0;
		return nullptr;
	}
	IPluginCreatorInterface *getCreator(const AsciiChar *const, const AsciiChar *const,
	                                    const AsciiChar *const) noexcept override
	{
		return nullptr;
	}
	bool deregisterCreator(const IPluginCreatorInterface &) noexcept override { return false; }
	IPluginResource *acquirePluginResource(const AsciiChar *, IPluginResource *) noexcept override { return nullptr; }
	int32_t releasePluginResource(const AsciiChar *) noexcept override { return 0; }
#endif
};

RecordingLogger logger;
RecordingRegistry registry;

} // namespace

extern "C" STUB_EXPORT IPluginRegistry *getPluginRegistry() noexcept { return &registry; }
extern "C" STUB_EXPORT ILogger *getLogger() noexcept { return &logger; }

// For trt_check.cpp: what registered, and what was logged.
extern "C" STUB_EXPORT int32_t trt_stub_creators(IPluginCreator *const **list, const char *const **namespaces)
{
	static std::vector<const char *> ns;
	ns.clear();
	for (const std::string &s : registry.namespaces)
		ns.push_back(s.c_str());
	*list = registry.creators.data();
	*namespaces = ns.data();
#if NV_TENSORRT_MAJOR >= 10
	if (registry.v3_registrations)
		return -1;
#endif
	return (int32_t)registry.creators.size();
}
extern "C" STUB_EXPORT size_t trt_stub_log_count() { return logger.lines.size(); }
extern "C" STUB_EXPORT const char *trt_stub_log_line(size_t i) { return i < logger.lines.size() ? logger.lines[i].c_str() : ""; }
