package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/stardetr/stardetr/internal/statelock"
	"github.com/stardetr/stardetr/publish"
)

// minFreeBytes is the free space below which check calls the state folder's disk full: the
// queue, the counters and the engine cache all need room to write.
const minFreeBytes = 1 << 20

// inspectState looks at the state folder and the HTTP port the way `run` will use them,
// changing nothing: notes say what is there, problems what would stop `run`. A lock held by
// the process in $MAINPID (systemd's ExecReload) is the service being reloaded, not a problem.
func inspectState(cfg Config) (notes, problems []string) {
	dir := cfg.StateDir
	ownService := false
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		notes = append(notes, fmt.Sprintf("state_dir %s: absent: created at start", dir))
	case err != nil:
		problems = append(problems, fmt.Sprintf("state_dir %s: %v", dir, err))
	case !st.IsDir():
		problems = append(problems, fmt.Sprintf("state_dir: %s is not a folder", dir))
	default:
		if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
			problems = append(problems, fmt.Sprintf("state_dir %s: not writable (%v): make it writable for the service user", dir, err))
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err == nil {
			free := int64(fs.Bavail) * fs.Bsize
			if free < minFreeBytes {
				problems = append(problems, fmt.Sprintf("state_dir %s: disk full (%d bytes free): free some space", dir, free))
			} else {
				notes = append(notes, fmt.Sprintf("state_dir %s: %d MiB free", dir, free>>20))
			}
		}
		if held, pid, err := statelock.Holder(dir); err != nil {
			problems = append(problems, fmt.Sprintf("state_dir %s: %v", dir, err))
		} else if held && pid > 0 && strconv.Itoa(pid) == os.Getenv("MAINPID") {
			// systemd runs check before a reload (ExecReload) with MAINPID set: the folder and
			// the port belong to the service being reloaded.
			notes = append(notes, fmt.Sprintf("state_dir %s: locked by the running service (pid %d)", dir, pid))
			ownService = true
		} else if held {
			problems = append(problems, (&statelock.InUseError{Dir: dir, PID: pid}).Error())
		}
		n, p := publish.InspectState(dir)
		notes, problems = append(notes, n...), append(problems, p...)
	}
	if cfg.HTTP.Listen != "" && !ownService {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			problems = append(problems, fmt.Sprintf("http.listen %s: %v: stop what uses the port, pick a free one, or set http.listen to \"\"", cfg.HTTP.Listen, err))
		} else {
			_ = ln.Close()
		}
	}
	return notes, problems
}
