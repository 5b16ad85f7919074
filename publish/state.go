package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// InspectState reads, without changing anything, what the publisher keeps in a state
// folder: the message counters and the queue folder. notes describe what was found; problems
// are states that stop the publisher from starting. `stardetr check` prints both.
func InspectState(dir string) (notes, problems []string) {
	seqPath := filepath.Join(dir, seqFile)
	f, err := readSeqFile(seqPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("%s: absent: message numbers start at 1", seqPath))
	case errors.Is(err, errCorruptSeq):
		notes = append(notes, fmt.Sprintf("%s: corrupt (%v): the service will move it aside and continue numbering at about %d (see README, message counters)",
			seqPath, err, seqFloor(time.Now())))
	case err != nil:
		problems = append(problems, fmt.Sprintf("%s: %v: make it readable by the service user", seqPath, err))
	default:
		cams := make([]string, 0, len(f.Next))
		for c, n := range f.Next {
			cams = append(cams, fmt.Sprintf("%s %d", c, n))
		}
		notes = append(notes, fmt.Sprintf("%s: ok, next numbers: %s", seqPath, strings.Join(cams, ", ")))
	}

	qdir := filepath.Join(dir, queueDir)
	st, err := os.Stat(qdir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("%s: absent: created at start", qdir))
		return notes, problems
	case err != nil:
		problems = append(problems, fmt.Sprintf("%s: %v", qdir, err))
		return notes, problems
	case !st.IsDir():
		problems = append(problems, fmt.Sprintf("%s: a file where the MQTT queue folder belongs: move it away", qdir))
		return notes, problems
	}
	segs, err := filepath.Glob(filepath.Join(qdir, "*.seg"))
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", qdir, err))
		return notes, problems
	}
	var bytes int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			bytes += fi.Size()
		}
	}
	notes = append(notes, fmt.Sprintf("%s: %d segment file(s), %d bytes (acknowledged records included)", qdir, len(segs), bytes))
	return notes, problems
}
