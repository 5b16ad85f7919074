package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exit-code policy (exitcodes.go) holds for every subcommand, through Main as
// cmd/stardetr calls it: -h and --help print the flags and exit 0, stray positional arguments
// are refused with exit 2 and a message naming them, and a config file that cannot be read or
// parsed exits 2 (run and check included) naming the file.
func TestExitCodesOfEveryCommand(t *testing.T) {
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed.yaml")
	if err := os.WriteFile(malformed, []byte("model: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := map[string]string{
		"missing":   filepath.Join(dir, "missing.yaml"),
		"directory": dir,
		"malformed": malformed,
	}
	main := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := Main(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				if code, out, errs := main(c.name, h); code != exitOK || out != "" || !strings.Contains(errs, "-") {
					t.Errorf("%s %s: exit %d, stdout %q, stderr %q: want exit 0 and the flags on stderr", c.name, h, code, out, errs)
				}
			}
			code, out, errs := main(c.name, "stray1", "--x", "stray2")
			if code != exitUsage || out != "" || !strings.Contains(errs, `stardetr `+c.name+`: unexpected arguments "stray1" "--x" "stray2"`) {
				t.Errorf("%s with stray arguments: exit %d, stdout %q, stderr %q: want exit 2 naming them", c.name, code, out, errs)
			}
			if c.name == "version" { // the one command without --config
				return
			}
			for what, path := range unreadable {
				code, out, errs := main(c.name, "--config", path)
				if code != exitUsage || out != "" || !strings.Contains(errs, "config "+path) {
					t.Errorf("%s --config <%s file>: exit %d, stdout %q, stderr %q: want exit 2 naming the file", c.name, what, code, out, errs)
				}
			}
		})
	}
	if code, _, errs := main(); code != exitUsage || !strings.Contains(errs, "usage: stardetr <command>") {
		t.Errorf("no command: exit %d, %q", code, errs)
	}
	if code, _, errs := main("nope"); code != exitUsage || !strings.Contains(errs, `unknown command "nope"`) {
		t.Errorf("unknown command: exit %d, %q", code, errs)
	}
	if code, _, _ := main("help"); code != exitOK {
		t.Errorf("help: exit %d", code)
	}
}
