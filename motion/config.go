// Package motion finds where a camera's picture changes: a running background average of a
// small colour copy of each frame, a threshold on each channel's difference, a dilation and
// the connected regions' boxes. It knows frames (gocv Mats and their capture times), not
// cameras, models or MQTT: the pipeline asks it whether a frame is worth running the detector
// on.
//
// The work happens on a copy 160 pixels wide (1/8 of 720p): averaging 8×8 pixels into one
// removes most sensor noise, and everything after the resize touches 14,400 pixels, so a
// 1280×720 frame costs less than the 2 ms the pipeline can spare per frame on one core
// (BenchmarkDetect1280x720). A change over most of the frame at once (lights switched, the
// camera's auto-exposure or an IR cut filter) is not motion: the background is reset to the
// new picture instead.
package motion

import (
	"fmt"
	"math"

	"github.com/stardetr/stardetr/internal/confcheck"
)

// Limits of the `motion` section's values: they bound the work of rasterising the masks.
const (
	MaxMasks       = 32
	MaxMaskCorners = 100
)

// Config is the `cameras[].motion` section.
type Config struct {
	// Masks are polygons whose pixels the detector ignores (a clock overlay, a tree in the
	// wind, a road outside the property): each lists its corners as [x, y] fractions of the
	// frame's width and height (0..1, origin top left), like zones.
	Masks [][][]float64 `mapstructure:"masks"`
	// Threshold is the least difference in one colour channel (0..255 levels) between a pixel
	// and the background for the pixel to count as changed.
	Threshold int `mapstructure:"threshold"`
	// MinArea is the least size of a changed region, as a fraction of the frame, for it to be
	// motion: smaller ones are noise.
	MinArea float64 `mapstructure:"min_area"`
}

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config { return Config{Threshold: 25, MinArea: 0.0005} }

// Validate reports every invalid value, each naming its key relative to the section
// ("masks[1][2]: ...").
func (c *Config) Validate() error {
	var l confcheck.List
	if len(c.Masks) > MaxMasks {
		l.Add("masks", "has %d polygons: at most %d (merge neighbouring ones)", len(c.Masks), MaxMasks)
	}
	for i, poly := range c.Masks {
		key := fmt.Sprintf("masks[%d]", i)
		switch {
		case len(poly) < 3:
			l.Add(key, "has %d points: a mask needs at least 3 [x, y] corners", len(poly))
			continue
		case len(poly) > MaxMaskCorners:
			l.Add(key, "has %d points: at most %d corners", len(poly), MaxMaskCorners)
			continue
		}
		for j, p := range poly {
			if len(p) != 2 {
				l.Add(fmt.Sprintf("%s[%d]", key, j), "has %d numbers: write each corner as [x, y]", len(p))
				continue
			}
			for k, v := range p {
				if math.IsNaN(v) || v < 0 || v > 1 {
					l.Add(fmt.Sprintf("%s[%d][%d]", key, j, k), "%v is out of range: 0 to 1 (corners are fractions of the frame's width and height)", v)
				}
			}
		}
	}
	if c.Threshold < 1 || c.Threshold > 255 {
		l.Add("threshold", "%d is out of range: 1 to 255 levels", c.Threshold)
	}
	if math.IsNaN(c.MinArea) || c.MinArea < 0 || c.MinArea > 1 {
		l.Add("min_area", "%v is out of range: 0 to 1 (a fraction of the frame)", c.MinArea)
	}
	return l.Err()
}
