package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"gocv.io/x/gocv"

	"github.com/stardetr/stardetr/internal/libsearch"
	"github.com/stardetr/stardetr/model"
)

// cmdVersion prints every component's version; a component that is not found is printed
// with where it was looked for, and the exit code is 1.
func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	ortPath := fs.String("onnxruntime", "", "ONNX Runtime library (default: searched)")
	pluginPath := fs.String("plugin", "", "CARAFE plugin library (default: searched)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	code := exitOK
	fmt.Fprintf(stdout, "stardetr     %s\n", Version)
	loc := libsearch.DefaultLocator()
	if lib, err := loc.ONNXRuntime(*ortPath); err != nil {
		fmt.Fprintf(stdout, "onnxruntime  %s\n", notFound(err))
		code = exitFailure
	} else if rt, err := model.LoadRuntime(lib); err != nil {
		fmt.Fprintf(stdout, "onnxruntime  unusable (%v)\n", err)
		code = exitFailure
	} else {
		fmt.Fprintf(stdout, "onnxruntime  %s (%s)\n", rt.Version(), lib)
	}
	fmt.Fprintf(stdout, "opencv       %s\n", gocv.OpenCVVersion())
	if lib, err := loc.Plugin(*pluginPath); err != nil {
		fmt.Fprintf(stdout, "carafe       %s\n", notFound(err))
		code = exitFailure
	} else if v, err := model.PluginVersion(lib); err != nil {
		fmt.Fprintf(stdout, "carafe       unusable (%v)\n", err)
		code = exitFailure
	} else {
		fmt.Fprintf(stdout, "carafe       %s (%s)\n", v, lib)
	}
	return code
}

func notFound(err error) string {
	if nf, ok := err.(*libsearch.NotFoundError); ok {
		return fmt.Sprintf("not found (%s)", strings.Join(nf.Looked, ", "))
	}
	return fmt.Sprintf("not found (%v)", err)
}
