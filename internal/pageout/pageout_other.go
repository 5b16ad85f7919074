//go:build !linux

package pageout

import "errors"

// Release does nothing outside Linux.
func Release() (Result, error) { return Result{}, errors.ErrUnsupported }
