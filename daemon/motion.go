package daemon

import (
	"errors"
	"fmt"

	"github.com/stardetr/stardetr/internal/confcheck"
)

// checkLabels reports every zone class and object filter of the cameras that names no class
// of the model; it runs once the model is loaded (check, start, reload).
func checkLabels(cams []CameraConfig, labels []string) error {
	var l confcheck.List
	for i := range cams {
		l.Include(fmt.Sprintf("cameras[%d].objects", i), cams[i].Objects.CheckLabels(labels))
	}
	return errors.Join(checkZoneClasses(cams, labels), l.Err())
}
