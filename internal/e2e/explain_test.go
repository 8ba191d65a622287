//go:build unix

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The README's `ringroute explain` example sits between these markers, as
// one fenced block: the command line ("$ ringroute explain ...", run from
// the repository root), then exactly what it prints.
const (
	explainStart = "<!-- explain-example -->"
	explainEnd   = "<!-- /explain-example -->"
)

// TestExplainREADME runs the README's explain example with the built
// binary and requires the output the README shows, so the documented
// example cannot drift from what the daemon's routing code does. The
// machinery is proven first on testdata/explain/worked_example.txt wrapped
// the way the README wraps it, with a one-line change that must be caught.
func TestExplainREADME(t *testing.T) {
	bin := needDaemon(t)

	t.Run("machinery", func(t *testing.T) {
		golden, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "explain", "worked_example.txt"))
		if err != nil {
			t.Fatal(err)
		}
		readme := "# x\n\ntext\n\n" + explainStart + "\n```console\n" + string(golden) + "```\n" + explainEnd + "\n\nmore\n"
		cmdline, want, found, err := readmeExample(readme)
		if err != nil || !found {
			t.Fatalf("the wrapped golden does not parse: found %v, %v", found, err)
		}
		got, err := runExplainLine(bin, cmdline)
		if err != nil {
			t.Fatal(err)
		}
		if d := firstDiff(got, want); d != "" {
			t.Errorf("worked_example.txt through the README path: %s", d)
		}
		broken := strings.Replace(want, "rang out", "answered", 1)
		if firstDiff(got, broken) == "" {
			t.Error("a changed line of expected output was not caught")
		}
		if _, _, _, err := readmeExample(explainStart + "\n```\n$ ringroute explain -c f g\n```\n"); err == nil {
			t.Error("a start marker without the end marker was accepted")
		}
		if _, _, _, err := readmeExample(explainStart + "\n```\n$ ringroute explain -c f g\n```\n" + explainEnd); err == nil {
			t.Error("an example without --at (its output would depend on the clock) was accepted")
		}
	})

	t.Run("readme", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		cmdline, want, found, err := readmeExample(string(b))
		if err != nil {
			t.Fatalf("README.md: %v", err)
		}
		if !found {
			t.Skipf("README.md has no explain example yet: put one fenced block, \"$ ringroute explain ... --at TIME\" "+
				"and its output, between the lines %s and %s", explainStart, explainEnd)
		}
		got, err := runExplainLine(bin, cmdline)
		if err != nil {
			t.Fatalf("README.md: %v", err)
		}
		if d := firstDiff(got, want); d != "" {
			t.Errorf("README.md's explain example no longer matches what %q prints: %s\n--- prints\n%s--- README shows\n%s", cmdline, d, got, want)
		}
	})
}

// readmeExample finds the block between the markers: found is false when
// there is no start marker; an error means the block is there but malformed.
func readmeExample(readme string) (cmdline, want string, found bool, err error) {
	_, rest, ok := strings.Cut(readme, explainStart)
	if !ok {
		return "", "", false, nil
	}
	if strings.Contains(rest, explainStart) {
		return "", "", true, fmt.Errorf("%s appears more than once", explainStart)
	}
	body, _, ok := strings.Cut(rest, explainEnd)
	if !ok {
		return "", "", true, fmt.Errorf("%s without %s after it", explainStart, explainEnd)
	}
	lines := strings.Split(body, "\n")
	open := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "```") })
	if open < 0 {
		return "", "", true, fmt.Errorf("no ``` fence between %s and %s", explainStart, explainEnd)
	}
	lines = lines[open+1:]
	end := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "```" })
	if end < 0 {
		return "", "", true, errors.New("the explain example's ``` fence is not closed")
	}
	lines = lines[:end]
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "$ ringroute explain ") {
		return "", "", true, errors.New(`the explain example's first line is not "$ ringroute explain ..."`)
	}
	if !slices.Contains(strings.Fields(lines[0]), "--at") {
		return "", "", true, fmt.Errorf("%q has no --at: its output would change with the clock", lines[0])
	}
	out := strings.Join(lines[1:], "\n")
	if out != "" {
		out += "\n"
	}
	return lines[0], out, true, nil
}

// runExplainLine runs "$ ringroute ARGS..." from the repository root (the
// way the README and testdata/explain write paths) and returns its stdout;
// anything on stderr or a non-zero exit is an error.
func runExplainLine(bin, cmdline string) (string, error) {
	args := strings.Fields(strings.TrimPrefix(cmdline, "$ ringroute "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", cmdline, err, stderr.String())
	}
	if stderr.Len() > 0 {
		return "", fmt.Errorf("%s printed on stderr:\n%s", cmdline, stderr.String())
	}
	return stdout.String(), nil
}

// firstDiff describes the first line where got and want differ, "" if
// they are equal.
func firstDiff(got, want string) string {
	if got == want {
		return ""
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		gl, wl := "(nothing)", "(nothing)"
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d prints %q, the example shows %q", i+1, gl, wl)
		}
	}
	return "they differ" // not reached
}
