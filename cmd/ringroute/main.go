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

const usage = `ringroute - a SIP B2BUA that routes calls to ring groups

SYNOPSIS
  ringroute run -c FILE [--seed N]
  ringroute check -c FILE
  ringroute explain -c FILE GROUP [--at TIME] [--busy LIST] [--calls N]
                    [--seed N] [--from URI] [--ringing N]
  ringroute version
  ringroute help | -h | --help

  Flags take one dash or two (-seed or --seed).

COMMANDS
  run       Run the daemon on the config FILE: listen for SIP, ring groups,
            relay media, serve the admin HTTP API. Logs go to standard error.
              -c FILE     the config file (required)
              --seed N    seed for the random strategies, to replay a run's
                          ring orders; default $RINGROUTE_SEED, else random
  check     Validate FILE with the loader run and reload use: every error on
            its own line as FILE:LINE:COL: field.path: message, then the
            warnings (timing that cannot work), then a count.
              -c FILE     the file to check (required)
  explain   Print the ring timeline a call to GROUP (a name, extension or
            number) would get, from the daemon's own routing code, with
            nobody answering: who rings when, pauses, the group timeout,
            which fallback fires and why. "ringroute explain -h" has more.
              -c FILE     the config file (required)
              --at TIME   when the call arrives: RFC 3339, or 2026-12-24T09:00
                          in the group's schedule zone; default now
              --busy LIST members that answer 486 at once: user names, URIs
                          or member keys (user:alice,uri:sip:1002@192.0.2.5)
              --calls N   N calls in a row, sharing round-robin memory
              --seed N    seed for random strategies; default $RINGROUTE_SEED,
                          else 1
              --from URI  the caller's From URI, for permissions
              --ringing N N other calls already ringing in the group
  version   Print the version.
  help      Print this text.

SIGNALS (run)
  SIGHUP    Reload FILE, as POST /api/v1/reload does. A file with any error
            changes nothing: the errors are logged with their positions and
            counted (ringroute_config_reload_failures_total). A good file
            applies to new calls; calls in progress finish under the config
            they started with. listen, advertise, media mode/address/ports,
            admin, log, cdr and registrar.state_file are read at start only:
            the reload logs them as restart_needed.
  SIGTERM, SIGINT
            Drain: new INVITEs get 503 with Retry-After and /healthz answers
            503; calls in progress go on until they end or drain_timeout
            (default 30s) passes, then ringing calls get 503 (their legs are
            CANCELled) and answered calls get BYE on both sides. Exits 0 as
            soon as the last call has ended. A second SIGTERM or SIGINT
            stops at once.

EXIT STATUS
  run       0 stopped by a signal; 1 could not start (a port that cannot be
            bound, the CDR file that cannot be opened); 2 bad command line
            or a config file with errors (printed with positions)
  check     0 no errors (warnings may be printed); 1 errors, or the file
            cannot be read; 2 bad command line
  explain   0 timeline printed; 2 bad command line, a config file with
            errors, no such group, or a bad --at or --busy
  other     0 version and help; 2 no command or an unknown one

FILES
  FILE (-c) The one YAML config file; /etc/ringroute/ringroute.yaml in
            deploy/. It may hold passwords and the admin token: mode 0640.
  Relative paths in FILE are taken from the directory ringroute runs in, not
  from FILE's directory:
  registrar.state_file  registered contacts, kept across restarts (default
            registrations.json; "" keeps them in memory only)
  cdr.path  call detail records, one JSON object per line per call,
            appended (default cdr.jsonl; "" turns them off)
  groups[].record.dir   recordings of answered calls, one stereo WAV file
            each (default recordings; created when needed)
  groups[].music_file, tls.cert, tls.key   read by relative path too

ENVIRONMENT
  RINGROUTE_SEED   default for --seed (run and explain)

ADMIN API (admin.listen, default 127.0.0.1:8080; "" turns it off)
  GET  /healthz           200 ok; 503 while draining
  GET  /metrics           Prometheus text format (ringroute_* and process)
  GET  /api/v1/groups     each group: strategy, calls now, members with their
                          contacts and state (idle, ringing, in call)
  GET  /api/v1/calls      live calls and their legs
  GET  /api/v1/calls/ID   one call by the caller's Call-ID, with its decision
                          log (why each member was or was not rung)
  POST /api/v1/reload     reload FILE: 200 {"ok":true,"restart_needed":[...]}
                          or 400 {"ok":false,"errors":["FILE:LINE:COL: ..."]}
  GET  /debug/live        {"calls":N,"legs":N}
  With admin.token set, every request needs "Authorization: Bearer TOKEN"
  (else 401). Without a token, admin.listen must be a loopback address:
  check, run and reload refuse any other.

SEE ALSO
  docs/config.md     every config option, its default and its errors
  docs/behaviour.md  what a call does, CDR fields, logs, signals and reload
  deploy/README.md   the systemd unit and the container image
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
