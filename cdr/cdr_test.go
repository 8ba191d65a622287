package cdr

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ringroute/ringroute/routing"
)

// Concurrent calls must produce whole lines, one per call.
func TestWriteConcurrentLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.jsonl")
	w, err := Open(path, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w.Write(routing.Record{CallID: "c" + string(rune('a'+i%26)), Group: "sales", Outcome: routing.OutcomeAnswered,
				Start: time.Unix(0, 0).UTC(), End: time.Unix(1, 0).UTC(), Code: 200})
		}(i)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		var r routing.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d is not a record: %v: %s", lines+1, err, sc.Text())
		}
		if r.Group != "sales" || r.Outcome != "answered" || r.Code != 200 {
			t.Fatalf("line %d: %+v", lines+1, r)
		}
		lines++
	}
	if lines != n {
		t.Fatalf("got %d lines, want %d", lines, n)
	}
	// After Close, writes are dropped, not a panic.
	w.Write(routing.Record{CallID: "late"})
}

func TestOpenReportsBadPath(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "cdr.jsonl"), nil); err == nil {
		t.Fatal("Open of a path in a missing directory succeeded")
	}
}

// A full disk is reported once, not once per call, and again only after a
// write has succeeded in between.
func TestWriteFailureReportedOnce(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	var errs []error
	w, err := Open("/dev/full", func(err error) { errs = append(errs, err) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for range 3 {
		w.Write(routing.Record{CallID: "c"})
	}
	if len(errs) != 1 {
		t.Fatalf("3 failed writes reported %d times, want once: %v", len(errs), errs)
	}
}
