package daemon

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Int8Dot is whether a CPU has int8 dot-product instructions, the ones ONNX Runtime's INT8
// kernels need to beat float32: x86's VNNI (AVX-512 VNNI or AVX-VNNI) and arm64's dot product
// (asimddp). Measured on an AVX2-only AMD EPYC: the seed's INT8 model ran at 1047 ms against
// 988 ms for float32 (README, "Performance").
type Int8Dot struct {
	Has   bool
	Found []string // the flags that say so
	Want  []string // the flags looked for
}

// int8Dot reads /proc/cpuinfo's text for goarch's int8 dot-product flags.
func int8Dot(cpuinfo, goarch string) Int8Dot {
	d := Int8Dot{Want: []string{"avx512_vnni", "avx_vnni"}}
	if goarch == "arm64" {
		d.Want = []string{"asimddp"}
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if k = strings.TrimSpace(k); k == "flags" || k == "Features" {
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
		}
	}
	for _, f := range d.Want {
		if flags[f] {
			d.Found = append(d.Found, f)
		}
	}
	d.Has = len(d.Found) > 0
	return d
}

// hostInt8Dot reads this machine's CPU flags.
func hostInt8Dot() Int8Dot {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return Int8Dot{Want: int8Dot("", runtime.GOARCH).Want}
	}
	return int8Dot(string(info), runtime.GOARCH)
}

func (d Int8Dot) String() string {
	if d.Has {
		return fmt.Sprintf("yes (%s): an INT8 model can run faster than float32 here; measure it with `stardetr bench`", strings.Join(d.Found, ", "))
	}
	return fmt.Sprintf("no (none of %s in /proc/cpuinfo): an INT8 model gains nothing on this CPU; use the float32 model, and motion mode (cameras[].detect.mode: motion) to spend less",
		strings.Join(d.Want, ", "))
}
