package daemon

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUPeak is a CPU's float32 peak as cores x SIMD lanes x FMA units x 2 FLOPs x clock, with
// where each factor came from, for `stardetr bench`'s share-of-peak line.
type CPUPeak struct {
	Cores           int
	Lanes           int    // float32 lanes of the widest vector unit the CPU reports
	LanesFrom       string // the flag that gave Lanes
	FMAUnits        int    // FMA pipes per core: not reported by the CPU, so given (--fma-units)
	GHz             float64
	GHzFrom         string
	FMAUnitsAssumed bool
	FLOPs           float64 // per second; 0 when the clock is unknown
	Unknown         string  // why FLOPs is 0
}

// cpuPeak derives the peak from /proc/cpuinfo's text and the cpufreq maximum (kHz, "" when
// absent) for cores cores.
func cpuPeak(cpuinfo, maxKHz string, cores, fmaUnits int, assumed bool) CPUPeak {
	p := CPUPeak{Cores: cores, FMAUnits: fmaUnits, FMAUnitsAssumed: assumed}
	flags := map[string]bool{}
	mhz := 0.0
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "flags", "Features":
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	switch {
	case flags["avx512f"]:
		p.Lanes, p.LanesFrom = 16, "avx512f"
	case flags["avx2"] && flags["fma"]:
		p.Lanes, p.LanesFrom = 8, "avx2+fma"
	case flags["asimd"]:
		p.Lanes, p.LanesFrom = 4, "asimd (NEON)"
	case flags["sse2"]:
		p.Lanes, p.LanesFrom = 4, "sse2 (no FMA: counted as one)"
	default:
		p.Lanes, p.LanesFrom = 1, "no vector flags found"
	}
	if khz, err := strconv.ParseFloat(strings.TrimSpace(maxKHz), 64); err == nil && khz > 0 {
		p.GHz, p.GHzFrom = khz/1e6, "cpufreq cpuinfo_max_freq"
	} else if mhz > 0 {
		p.GHz, p.GHzFrom = mhz/1e3, "/proc/cpuinfo cpu MHz (current clock, not the maximum)"
	}
	if p.GHz == 0 {
		p.Unknown = "no clock frequency in cpufreq or /proc/cpuinfo"
		return p
	}
	p.FLOPs = float64(p.Cores*p.Lanes*p.FMAUnits*2) * p.GHz * 1e9
	return p
}

// hostCPUPeak reads this machine's CPU description.
func hostCPUPeak(cores, fmaUnits int, assumed bool) CPUPeak {
	info, _ := os.ReadFile("/proc/cpuinfo")
	khz, _ := os.ReadFile("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
	return cpuPeak(string(info), string(khz), cores, fmaUnits, assumed)
}

func (p CPUPeak) String() string {
	if p.FLOPs == 0 {
		return "unknown: " + p.Unknown
	}
	fma := fmt.Sprint(p.FMAUnits)
	if p.FMAUnitsAssumed {
		fma += " (assumed; --fma-units)"
	}
	return fmt.Sprintf("%.0f GFLOP/s = %d cores x %d lanes (%s) x %s FMA units x 2 x %.2f GHz (%s)",
		p.FLOPs/1e9, p.Cores, p.Lanes, p.LanesFrom, fma, p.GHz, p.GHzFrom)
}
