package daemon

import (
	"strings"
	"testing"
)

func TestInt8Dot(t *testing.T) {
	for _, c := range []struct {
		name, info, arch string
		has              bool
		found            string
	}{
		{"zen 1: avx2 only", "flags\t\t: fpu sse2 avx avx2 fma\n", "amd64", false, ""},
		{"avx-512 vnni", "flags\t\t: fpu avx2 avx512f avx512_vnni\n", "amd64", true, "avx512_vnni"},
		{"avx-vnni (alder lake)", "flags\t\t: fpu avx2 avx_vnni\n", "amd64", true, "avx_vnni"},
		{"arm64 with dot product", "Features\t: fp asimd evtstrm crc32 asimddp\n", "arm64", true, "asimddp"},
		{"cortex-a53: no dot product", "Features\t: fp asimd evtstrm crc32 cpuid\n", "arm64", false, ""},
		{"x86 flag on arm64 means nothing", "Features\t: fp asimd avx512_vnni\n", "arm64", false, ""},
	} {
		d := int8Dot(c.info, c.arch)
		if d.Has != c.has || strings.Join(d.Found, ",") != c.found {
			t.Errorf("%s: %+v, want has %v found %q", c.name, d, c.has, c.found)
		}
		s := d.String()
		if c.has && !strings.HasPrefix(s, "yes ("+c.found+")") {
			t.Errorf("%s: %q", c.name, s)
		}
		if !c.has && (!strings.HasPrefix(s, "no (none of") || !strings.Contains(s, "an INT8 model gains nothing")) {
			t.Errorf("%s: %q", c.name, s)
		}
	}
}
