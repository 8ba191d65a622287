package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringroute/ringroute/config"
)

var update = flag.Bool("update", false, "rewrite testdata/explain/*.txt from what explain prints now")

// TestExplainGolden runs every testdata/explain/*.txt: its first line is a
// command line ("$ ringroute explain ..."), the rest what it prints
// (stdout, then "--- stderr" and "--- exit N" when there are any). The test
// runs from the repository root, as the command lines are written.
// `go test ./cmd/ringroute -run TestExplainGolden -update` rewrites them;
// review the diff.
func TestExplainGolden(t *testing.T) {
	t.Chdir(filepath.Join("..", ".."))
	files, err := filepath.Glob(filepath.Join("testdata", "explain", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/explain/*.txt: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cmdline, want, _ := strings.Cut(string(data), "\n")
			args, ok := strings.CutPrefix(cmdline, "$ ringroute ")
			if !ok {
				t.Fatalf("%s: first line %q is not \"$ ringroute ...\"", file, cmdline)
			}
			got := runExplainLine(strings.Fields(args))
			if *update {
				if err := os.WriteFile(file, []byte(cmdline+"\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s\n--- got\n%s--- want\n%s", cmdline, got, want)
			}
		})
	}
}

func runExplainLine(args []string) string {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	out := stdout.String()
	if stderr.Len() > 0 {
		out += "--- stderr\n" + stderr.String()
	}
	if code != 0 {
		out += fmt.Sprintf("--- exit %d\n", code)
	}
	return out
}

// --at: a local time is read in the group's schedule zone (UTC without
// one); RFC 3339 as written.
func TestParseAt(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "testdata", "explain", "groups.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	office, support := cfg.Group("office"), cfg.Group("support")
	for _, tt := range []struct {
		in   string
		g    *config.Group
		want string
	}{
		{"2026-12-24T09:00", office, "2026-12-24T08:00:00Z"}, // Europe/Paris, UTC+1 in winter
		{"2026-07-01T09:00", office, "2026-07-01T07:00:00Z"}, // UTC+2 in summer
		{"2026-12-24 09:00", office, "2026-12-24T08:00:00Z"},
		{"2026-12-24T09:00", support, "2026-12-24T09:00:00Z"}, // no schedule: UTC
		{"2026-12-24T09:00:00Z", office, "2026-12-24T09:00:00Z"},
		{"2026-12-24T09:00:00-05:00", office, "2026-12-24T14:00:00Z"},
	} {
		got, err := parseAt(tt.in, tt.g)
		if err != nil || got.UTC().Format(time.RFC3339) != tt.want {
			t.Errorf("parseAt(%q, %s) = %v, %v; want %s", tt.in, tt.g.Name, got.UTC(), err, tt.want)
		}
	}
	if _, err := parseAt("tomorrow", office); err == nil {
		t.Error("parseAt(tomorrow) did not fail")
	}
}
