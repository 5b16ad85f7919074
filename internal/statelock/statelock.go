// Package statelock makes one process the owner of a state folder. Two daemons on one folder
// would share the disk queue and the message counters, hand out the same numbers twice and
// take each other's broker session, so the second one must stop before touching anything.
//
// The lock is flock(2) on a file in the folder: the kernel releases it when the owner exits,
// even by kill -9, so a stale lock file never blocks a restart. The file holds the owner's
// process id for the error message; its content is advisory, the flock is the lock.
package statelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file inside the state folder.
const FileName = "stardetr.lock"

// InUseError is Acquire's error when another process holds the lock.
type InUseError struct {
	Dir string
	PID int // 0 when the lock file does not say
}

func (e *InUseError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("state folder %s is in use by %s: stop it, or give this instance its own state_dir", e.Dir, who)
}

// Lock is a held lock; Release gives it back.
type Lock struct {
	f *os.File
}

// Acquire takes the exclusive lock on dir, which must exist. It does not wait: a folder held
// by another process is an error naming that process.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("state_dir: lock %s: %w: make state_dir writable for the service user", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, PID: readPID(path)}
		}
		return nil, fmt.Errorf("state_dir: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			// The pid only improves the message a second instance prints; the flock holds.
			_ = f.Truncate(0)
		}
	}
	return &Lock{f: f}, nil
}

// Release unlocks and closes the lock file. The file stays: removing it would let a process
// that opened the old file and one that creates a new file both "hold" the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// Holder reports, without changing anything in dir, whether another process holds its lock
// and, when the lock file says, which one (pid 0 when unknown).
func Holder(dir string) (held bool, pid int, err error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	// A shared lock conflicts only with the owner's exclusive one, and is dropped at once.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, readPID(path), nil
		}
		return false, 0, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0, nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
