package motion_test

import (
	"strings"
	"testing"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/motion"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := motion.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Each bad value gets one error naming its key and the accepted range.
func TestConfigRejectsBadValues(t *testing.T) {
	square := [][]float64{{0, 0}, {0.5, 0}, {0.5, 0.5}, {0, 0.5}}
	for _, tc := range []struct {
		name  string
		mod   func(*motion.Config)
		parts []string
	}{
		{"two points", func(c *motion.Config) { c.Masks = [][][]float64{square, {{0, 0}, {1, 1}}} }, []string{"masks[1]:", "2 points", "at least 3"}},
		{"outside 0..1", func(c *motion.Config) { c.Masks = [][][]float64{{{0, 0}, {1.5, 0}, {1, 1}}} }, []string{"masks[0][1][0]:", "1.5", "out of range: 0 to 1"}},
		{"negative", func(c *motion.Config) { c.Masks = [][][]float64{{{0, 0}, {1, 0}, {1, -0.1}}} }, []string{"masks[0][2][1]:", "-0.1", "out of range: 0 to 1"}},
		{"three numbers", func(c *motion.Config) { c.Masks = [][][]float64{{{0, 0}, {1, 0, 1}, {1, 1}}} }, []string{"masks[0][1]:", "3 numbers", "[x, y]"}},
		{"too many masks", func(c *motion.Config) {
			for range motion.MaxMasks + 1 {
				c.Masks = append(c.Masks, square)
			}
		}, []string{"masks:", "33 polygons", "at most 32"}},
		{"too many corners", func(c *motion.Config) {
			var poly [][]float64
			for i := range motion.MaxMaskCorners + 1 {
				poly = append(poly, []float64{float64(i) / 200, float64(i%2) / 2})
			}
			c.Masks = [][][]float64{poly}
		}, []string{"masks[0]:", "101 points", "at most 100"}},
		{"threshold 0", func(c *motion.Config) { c.Threshold = 0 }, []string{"threshold:", "1 to 255"}},
		{"threshold 256", func(c *motion.Config) { c.Threshold = 256 }, []string{"threshold:", "1 to 255"}},
		{"min_area above 1", func(c *motion.Config) { c.MinArea = 2 }, []string{"min_area:", "0 to 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := motion.DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			testenv.WantError(t, err, tc.parts...)
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d errors, want one: %v", n, err)
			}
		})
	}
}
