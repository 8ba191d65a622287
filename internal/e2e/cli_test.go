//go:build unix

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestCheck runs `ringroute check` on a file with two errors: both must be
// reported, each as FILE:LINE:COL: field.path: message, in file order, and
// the exit code must be non-zero. A good file (the suite's own config
// format) must pass with exit 0.
func TestCheck(t *testing.T) {
	bin := needDaemon(t)
	dir := workDir(t)

	t.Run("two_errors", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		// line 8: a duration that is not one; line 9: an unknown key.
		content := strings.Join([]string{
			`listen: [udp://127.0.0.1:5060]`,                // 1
			`realm: test`,                                   // 2
			`trunks: [{name: local, from: [127.0.0.1/32]}]`, // 3
			`groups:`,              // 4
			`  - name: sales`,      // 5
			`    extension: "600"`, // 6
			`    strategy: all`,    // 7
			`    timeout: ten`,     // 8: key at column 5, value at 14
			`    colour: blue`,     // 9: key at column 5
			`    members: [{uri: "sip:m1@127.0.0.1:5071"}]`, // 10
		}, "\n") + "\n"
		if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := run(t, dir, bin, "check", "-c", bad)
		if code == 0 {
			t.Errorf("check on a file with two errors exited 0:\n%s", out)
		}
		// The file may be named as given or by its base name.
		diag := regexp.MustCompile(`(?m)^(?:\S*/)?bad\.yaml:(\d+):(\d+): (\S+): (.+)$`)
		type pos struct {
			line, col int
			path, msg string
		}
		var got []pos
		for _, m := range diag.FindAllStringSubmatch(out, -1) {
			l, _ := strconv.Atoi(m[1])
			c, _ := strconv.Atoi(m[2])
			got = append(got, pos{l, c, m[3], m[4]})
		}
		want := []struct {
			line int
			cols []int
			path string
		}{
			{8, []int{5, 14}, "groups[0].timeout"},
			{9, []int{5}, "groups[0].colour"},
		}
		if len(got) != len(want) {
			t.Fatalf("check printed %d diagnostics, want %d (one per error):\n%s", len(got), len(want), out)
		}
		for i, w := range want {
			g := got[i]
			okCol := false
			for _, c := range w.cols {
				okCol = okCol || g.col == c
			}
			// An unknown key may be reported at its own path or at its
			// parent's with the key in the message.
			okPath := g.path == w.path || (strings.HasSuffix(w.path, ".colour") && g.path == "groups[0]" && strings.Contains(g.msg, "colour"))
			if g.line != w.line || !okCol || !okPath {
				t.Errorf("diagnostic %d = line %d col %d path %s, want line %d col one of %v path %s\n%s",
					i+1, g.line, g.col, g.path, w.line, w.cols, w.path, out)
			}
		}
		if !strings.Contains(out, `"ten"`) && !strings.Contains(out, "ten") {
			t.Errorf("the timeout diagnostic does not quote the bad value:\n%s", out)
		}
	})

	t.Run("good_file", func(t *testing.T) {
		good := filepath.Join(dir, "good.yaml")
		cfg := configYAML(5060, 8080, filepath.Join(dir, "cdr.jsonl"), []group{
			{name: "sales", ext: "600", strategy: "all", timeout: 4e9, memberTimeout: 2e9,
				members:  []string{"sip:m1@127.0.0.1:5071", "sip:m2@127.0.0.1:5072;transport=tcp"},
				fallback: map[string]string{"noanswer": `{uri: "sip:vm@127.0.0.1:5079"}`}},
			{name: "overflow", ext: "601", strategy: "linear", timeout: 4e9, memberTimeout: 1e9,
				members: []string{"sip:m3@127.0.0.1:5073"}},
		})
		if err := os.WriteFile(good, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := run(t, dir, bin, "check", "-c", good); code != 0 {
			t.Errorf("check on the suite's config format exited %d:\n%s\n%s", code, out, cfg)
		}
	})

	t.Run("version", func(t *testing.T) {
		out, code := run(t, dir, bin, "version")
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("version exited %d with %q", code, out)
		}
	})
}

// run runs the binary to completion and returns its combined output and
// exit code.
func run(t *testing.T, dir string, argv ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%v: %v", argv, err)
	}
	return string(out), 0
}
