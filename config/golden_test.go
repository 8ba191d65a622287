package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/config/*.golden from what Check prints")

// TestGolden runs Check on every testdata/config/*.yaml and compares the
// output with NAME.golden beside it. The test runs from the repository
// root so that positions read testdata/config/NAME.yaml, exactly as
// `ringroute check -c testdata/config/NAME.yaml` prints them there, and so
// that relative paths inside the files (music_file, tls.cert) resolve the
// same way.
func TestGolden(t *testing.T) {
	t.Chdir("..")
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/config/*.yaml")
	}
	for _, file := range files {
		file = filepath.ToSlash(file)
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			ok := Check(file, &out)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run TestGolden -update)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("Check(%s) printed:\n%s\nwant (%s):\n%s", file, got, golden, want)
			}
			// The count line and the verdict must agree.
			if errs := !strings.Contains(out.String(), "no errors"); errs == ok {
				t.Errorf("Check(%s) = %v, but printed %q", file, ok, lastLine(out.String()))
			}
			// Load must agree with Check: same loader, same verdict.
			c, err := Load(file)
			if (err == nil) != ok || (c != nil) != ok {
				t.Errorf("Load(%s) = %v, %v; Check said ok=%v", file, c != nil, err, ok)
			}
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
