// Command stardetr is the detector daemon; everything lives in package daemon.
package main

import (
	"os"

	"github.com/stardetr/stardetr/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr)) }
