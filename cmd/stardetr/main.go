// Command stardetr is the detector daemon; everything lives in package daemon.
package main

import (
	"os"
	"syscall"

	"github.com/stardetr/stardetr/daemon"
)

// mallocArenas caps glibc's malloc arenas. By default every thread that allocates gets its own
// arena (up to 8 per core) and a freed buffer stays in its thread's arena: ONNX Runtime's
// per-run buffers, freed by whichever thread ran the model, pile up in several arenas at once
// (about 80 MB with the seed model; README, "Memory"). glibc reads the limit when its
// allocator starts, before main and before libraries' own threads (OpenBLAS's) allocate, so it
// is set by running the program again with MALLOC_ARENA_MAX in its environment. A value the
// user set (MALLOC_ARENA_MAX, or GLIBC_TUNABLES) is kept.
const mallocArenas = "1"

func main() {
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); !set {
		if _, tunables := os.LookupEnv("GLIBC_TUNABLES"); !tunables {
			if exe, err := os.Executable(); err == nil {
				// Exec returns only on failure, and then the program simply runs as it is.
				_ = syscall.Exec(exe, os.Args, append(os.Environ(), "MALLOC_ARENA_MAX="+mallocArenas))
			}
		}
	}
	os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr))
}
