package daemon

// The exit codes of every stardetr subcommand. One policy for all of them, so that systemd
// (ExecStartPre=stardetr check), scripts and people read the same thing from each:
//
//   - exitOK (0): the command did what was asked: the service stopped cleanly, the config has
//     no problem, the image was read, -h/--help printed the flags.
//   - exitFailure (1): the command ran and something failed or was found wrong: a problem
//     `check` lists, a model that does not load, a camera or broker error that stopped the
//     service, an interruption by SIGINT/SIGTERM before the result.
//   - exitUsage (2): the command cannot start as asked: an unknown command or flag, a missing
//     required flag, a stray positional argument, or a config file that cannot be read,
//     parsed or (for `run`) validated. Nothing was started; the message names the argument,
//     flag or key and the fix.
//
// `check` is the one command whose job is to judge a config: the problems it lists (values out
// of range, a model that does not load) are its result and exit 1; a file it cannot read or
// parse at all is a usage error and exits 2, as for `run`.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)
