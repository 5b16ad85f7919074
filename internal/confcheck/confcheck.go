// Package confcheck holds stardetr's one convention for checking configuration: every
// section has `func (c *Config) Validate() error` that checks every key (it never stops at the
// first problem and never fills in defaults: those come from the section's DefaultConfig) and
// returns errors.Join of one error per problem, each starting with its key relative to the
// section ("threads: ...", "brokers[1]: ...", "zones[0].polygon: ..."). The code that holds
// the section names where it sits with In, so `stardetr check` prints each problem with its
// full key path ("model.threads: ...", "cameras[2].zones[0].polygon: ...").
package confcheck

import (
	"errors"
	"fmt"
)

// List collects the problems of one section.
type List struct{ errs []error }

// Add records a problem of key (relative to the section).
func (l *List) Add(key, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
}

// Include records the problems of a subsection found at path (e.g. "track", "zones[1]").
func (l *List) Include(path string, err error) {
	l.errs = append(l.errs, split(In(path, err))...)
}

// Err is nil without problems, else every problem joined (one per line).
func (l *List) Err() error { return errors.Join(l.errs...) }

// In prefixes each problem of err with path: "threads: x" in "model" is "model.threads: x".
func In(path string, err error) error {
	list := split(err)
	if len(list) == 0 {
		return nil
	}
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = fmt.Errorf("%s.%w", path, e)
	}
	return errors.Join(out...)
}

// split flattens joined errors into their problems.
func split(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, split(e)...)
	}
	return out
}
