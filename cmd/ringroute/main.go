// Command ringroute is a SIP B2BUA that routes calls to ring groups.
//
//	ringroute run -c FILE [--seed N]    run the daemon
//	ringroute check -c FILE             validate a config file
//	ringroute version                   print the version
//
// main only parses the command line and wires packages together; what a
// call does lives in routing, how it is spoken lives in sip.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/ringroute/ringroute/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `ringroute routes SIP calls to ring groups.

Usage:
  ringroute run -c FILE [--seed N]   run the daemon on the config FILE
  ringroute check -c FILE            validate FILE: every error with its file:line:col,
                                     then warnings; exit 1 on errors
  ringroute explain -c FILE GROUP [--at TIME] [--busy m1,m2] [--calls N] [--seed N]
                                     print the ring timeline a call to GROUP would get
  ringroute version                  print the version
  ringroute help                     print this text

run:
  -c FILE     the config file (required)
  --seed N    seed for the random strategies, to replay a call's ring order;
              default $RINGROUTE_SEED, else random

Signals (run): SIGTERM stops taking calls (503) and waits up to drain_timeout for
calls to end, then exits 0; a second SIGTERM exits at once. SIGHUP reloads the
config file; a file with errors changes nothing.

Every option is documented in docs/config.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "ringroute", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "ringroute: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "ringroute check: -c FILE is required")
		return 2
	}
	if !config.Check(*file, stdout) {
		return 1
	}
	return 0
}

// seedFlag is --seed, defaulting to $RINGROUTE_SEED.
func seedFlag(fs *flag.FlagSet) *uint64 {
	def := uint64(0)
	if v := os.Getenv("RINGROUTE_SEED"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			def = n
		}
	}
	return fs.Uint64("seed", def, "seed for random strategies")
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}
