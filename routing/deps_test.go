package routing

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fence around the core (package doc, style-anchors §9.3): routing and
// strategy never touch the network, a SIP or media library, a clock or the
// global random source.
//
// What "no net" can mean: go.uber.org/zap, which the Runner logs with,
// imports net (and net/http) itself, and config uses net/netip for
// addresses; so a ban on net anywhere in the transitive set cannot hold.
// The meaningful checks are:
//   - routing's and strategy's own imports (non-test files) include no net
//     package, no sipgo, no pion;
//   - strategy's whole dependency set has no net at all (it is pure);
//   - in routing's dependency set, every net package also comes with zap or
//     is net/netip (config's value type), so nothing else brings sockets in;
//   - nothing anywhere below routing or strategy is sipgo or pion.

var bannedPrefixes = []string{"github.com/emiago/", "github.com/pion/"}

func isNet(p string) bool { return p == "net" || strings.HasPrefix(p, "net/") }

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list packages with")
	}
	// -e: list what can be listed even while another package of the
	// module is mid-edit and broken; the imports are what matters here.
	cmd := exec.Command(gobin, append([]string{"list", "-e"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", args, err, msg)
	}
	return strings.Fields(string(out))
}

func TestImportFence(t *testing.T) {
	for _, pkg := range []string{"./routing", "./strategy"} {
		direct := goList(t, "-f", `{{join .Imports " "}}`, pkg)
		for _, p := range direct {
			if isNet(p) || hasBannedPrefix(p) {
				t.Errorf("%s imports %s", pkg, p)
			}
		}
		for _, p := range goList(t, "-deps", pkg) {
			if hasBannedPrefix(p) {
				t.Errorf("%s depends on %s", pkg, p)
			}
		}
	}
	for _, p := range goList(t, "-deps", "./strategy") {
		if isNet(p) {
			t.Errorf("strategy depends on %s; it must stay pure", p)
		}
	}
	viaZap := goList(t, "-deps", "go.uber.org/zap")
	for _, p := range goList(t, "-deps", "./routing") {
		if isNet(p) && p != "net/netip" && !slices.Contains(viaZap, p) {
			t.Errorf("routing depends on %s, not through zap", p)
		}
	}
}

func hasBannedPrefix(p string) bool {
	for _, b := range bannedPrefixes {
		if strings.HasPrefix(p, b) {
			return true
		}
	}
	return false
}

// TestNoClockNoGlobalRand: the Call takes now as an argument and the Runner
// takes time from its Clock, so no non-test file of routing or strategy may
// read the clock, sleep, make a timer, or use math/rand's global source.
func TestNoClockNoGlobalRand(t *testing.T) {
	bannedTime := []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick"}
	// Constructors and types only; every other package-level function
	// draws on the global source.
	allowedRand := []string{"New", "NewPCG", "NewChaCha8", "NewZipf", "Rand", "Source", "PCG", "ChaCha8", "Zipf"}
	for _, dir := range []string{".", "../strategy"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]string{} // local name -> import path
			for _, imp := range f.Imports {
				path := strings.Trim(imp.Path.Value, `"`)
				name := filepath.Base(path)
				if path == "math/rand/v2" {
					name = "rand"
				}
				if imp.Name != nil {
					name = imp.Name.Name
				}
				names[name] = path
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				switch names[id.Name] {
				case "time":
					if slices.Contains(bannedTime, sel.Sel.Name) {
						t.Errorf("%s: time.%s: take time from now or the Clock", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				case "math/rand", "math/rand/v2":
					if !slices.Contains(allowedRand, sel.Sel.Name) {
						t.Errorf("%s: rand.%s uses the global source; use Setup.Rand", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
}
