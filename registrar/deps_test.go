package registrar

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoSIPLibrary keeps the package doc's promise: nothing registrar
// depends on is a SIP or media library, so the rules stay testable with
// plain values.
func TestNoSIPLibrary(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list packages with")
	}
	cmd := exec.Command(gobin, "list", "-e", "-deps", ".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/emiago/") || strings.HasPrefix(p, "github.com/pion/") {
			t.Errorf("registrar depends on %s", p)
		}
	}
}
