package registrar

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func persistent(t *testing.T, c *fakeClock, path string) *Registrar {
	t.Helper()
	return New(Options{MinExpires: 60 * time.Second, MaxExpires: time.Hour, StateFile: path, Now: c.Now})
}

func TestPersistRoundTrip(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "registrations.json")
	r1 := persistent(t, c, path)
	if n, err := r1.Load([]string{"alice", "bob"}); n != 0 || err != nil {
		t.Fatalf("Load without a file: %d, %v", n, err)
	}
	a := reg("a-call", 7, 3600, Contact{URI: "sip:alice@192.168.1.10:5060", Expires: -1, Q: 0.7})
	a.Source, a.Transport = src2, "tls"
	r1.Apply("alice", a)
	r1.Apply("bob", reg("b-call", 1, 600, ct("sip:bob@10.0.0.9", -1), ct("sip:bob@10.0.0.8", 120)))
	want := r1.All()
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	c.Advance(100 * time.Second)
	r2 := persistent(t, c, path)
	n, err := r2.Load([]string{"alice", "bob"})
	if err != nil || n != 3 {
		t.Fatalf("Load: %d, %v", n, err)
	}
	got := r2.All()
	if len(got) != len(want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	for i := range want {
		w, g := want[i], got[i]
		w.ExpiresIn -= 100
		if !g.Expires.Equal(w.Expires) || !g.Updated.Equal(w.Updated) {
			t.Errorf("binding %d times: %v %v, want %v %v", i, g.Expires, g.Updated, w.Expires, w.Updated)
		}
		g.Expires, g.Updated, w.Expires, w.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if g != w {
			t.Errorf("binding %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// Call-ID and CSeq survive: the old REGISTER replayed is still out of order.
	if res, _ := r2.Apply("alice", a); res.Status != 500 {
		t.Errorf("replayed REGISTER after restart: %d, want 500", res.Status)
	}
	a.CSeq++
	if res, _ := r2.Apply("alice", a); res.Status != 200 {
		t.Errorf("next REGISTER after restart: %d %s", res.Status, res.Detail)
	}
	r2.Close()
}

func TestLoadDropsExpiredAndUnknown(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "state.json")
	r1 := persistent(t, c, path)
	r1.Apply("alice", reg("a", 1, 3600, ct("sip:a@h", -1)))
	r1.Apply("bob", reg("b", 1, 3600, ct("sip:b@h", -1)))
	r1.Apply("carol", reg("c", 1, 60, ct("sip:c@h", -1)))
	r1.Close()

	c.Advance(2 * time.Minute) // carol's has expired
	r2 := persistent(t, c, path)
	n, err := r2.Load([]string{"alice", "carol"}) // bob was removed from the config
	if err != nil || n != 1 {
		t.Fatalf("Load: %d, %v", n, err)
	}
	if len(r2.Contacts("alice")) != 1 || len(r2.Contacts("bob")) != 0 || len(r2.Contacts("carol")) != 0 {
		t.Errorf("restored %+v", r2.All())
	}
	// What was dropped is also dropped from the file.
	if err := r2.Flush(); err != nil {
		t.Fatal(err)
	}
	st := readState(t, path)
	if len(st.Bindings) != 1 || st.Bindings[0].User != "alice" {
		t.Errorf("file after load: %+v", st.Bindings)
	}
}

func readState(t *testing.T, path string) stateFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("state file: %v\n%s", err, data)
	}
	return st
}

func TestLoadBadFiles(t *testing.T) {
	tests := []struct {
		name, content string
		restored      int
		errHas        string
	}{
		{"corrupt", `{"version":1,"bindings":[{"user":"alice",`, 0, "corrupt"},
		{"not json", "\x00\x01garbage", 0, "corrupt"},
		{"empty", "", 0, "corrupt"},
		{"other version", `{"version":99,"bindings":[]}`, 0, "version 99"},
		{"one bad entry", `{"version":1,"bindings":[
			{"user":"alice","uri":"sip:a@h","expires":"2025-03-01T13:00:00Z","q":-1,"call_id":"x","cseq":1,"source":"203.0.113.5:5060","transport":"udp"},
			{"user":"alice","uri":"sip:a@h2","expires":"2025-03-01T13:00:00Z","q":-1,"call_id":"x","cseq":1,"source":"nowhere","transport":"udp"},
			{"user":"alice","uri":"sip:a@h3","expires":"2025-03-01T13:00:00Z","q":-1,"call_id":"x","cseq":1,"source":"203.0.113.5:5060","transport":"carrier-pigeon"}]}`,
			1, "skipped 2 bad entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			r := persistent(t, c, path)
			n, err := r.Load([]string{"alice"})
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load error %v, want one naming the file and %q", err, tt.errHas)
			}
			if n != tt.restored || r.Count() != tt.restored {
				t.Errorf("restored %d (Count %d), want %d", n, r.Count(), tt.restored)
			}
			// It still works and the next change replaces the bad file.
			if res, err := r.Apply("alice", reg("n", 1, 3600, ct("sip:a@new", -1))); err != nil || res.Status != 200 {
				t.Fatalf("Apply after bad file: %+v %v", res, err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if st := readState(t, path); len(st.Bindings) != tt.restored+1 {
				t.Errorf("file after change: %+v", st.Bindings)
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	r := persistent(t, newClock(), dir) // a directory is not a state file
	if n, err := r.Load(nil); err == nil || n != 0 {
		t.Errorf("Load of a directory: %d, %v", n, err)
	}
}

// TestAtomicWrites: a reader never sees a partial file, and no temporary
// file is left behind.
func TestAtomicWrites(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	r := New(Options{StateFile: path, Now: c.Now, PersistDelay: time.Millisecond})

	var stop atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			data, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			reads.Add(1)
			var st stateFile
			if err != nil || json.Unmarshal(data, &st) != nil || st.Version != stateVersion {
				bad.Add(1)
			}
		}
	}()
	// Long user agents make each write big enough to be torn if it were
	// written in place.
	ua := strings.Repeat("x", 4096)
	for i := range 300 {
		req := reg("c", uint32(i+1), 3600, ct("sip:a@h"+strconv.Itoa(i%20), -1))
		req.UserAgent = ua
		r.Apply("alice", req)
		switch {
		case i%30 == 0:
			time.Sleep(2 * time.Millisecond) // let background writes happen mid-run
		case i%3 == 0:
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d reads saw a partial or invalid file", bad.Load(), reads.Load())
	}
	t.Logf("%d reads of the state file while it was rewritten", reads.Load())
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "state.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only state.json", names)
	}
	if st := readState(t, path); len(st.Bindings) != 10 { // MaxContacts
		t.Errorf("final file has %d bindings", len(st.Bindings))
	}
}

func TestBackgroundWriteCoalesces(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "state.json")
	r := New(Options{StateFile: path, Now: c.Now, PersistDelay: 500 * time.Millisecond})
	defer r.Close()
	for i := range 20 {
		r.Apply("alice", reg("c", uint32(i+1), 3600, ct("sip:a@h", -1)))
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("written at once; the burst should be coalesced")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("state file never written in the background")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := readState(t, path); len(st.Bindings) != 1 || st.Bindings[0].CSeq != 20 {
		t.Errorf("file %+v, want the last state", st.Bindings)
	}
}

func TestWriteErrorsAreReportedAndRetried(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "missing-dir", "state.json")
	errs := make(chan error, 10)
	r := New(Options{StateFile: path, Now: c.Now, PersistDelay: time.Millisecond,
		OnError: func(err error) { errs <- err }})
	r.Apply("alice", reg("c", 1, 3600, ct("sip:a@h", -1)))
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %v does not name the file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("background write error not reported")
	}
	// Once the directory exists, Close writes what was pending.
	if err := os.Mkdir(filepath.Join(dir, "missing-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := readState(t, path); len(st.Bindings) != 1 {
		t.Errorf("file %+v", st.Bindings)
	}
}

func TestReloadPersists(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "state.json")
	r := persistent(t, c, path)
	r.Apply("alice", reg("a", 1, 3600, ct("sip:a@h", -1)))
	r.Apply("bob", reg("b", 1, 3600, ct("sip:b@h", -1)))
	r.Flush()
	r.Reload([]string{"alice"}, time.Minute, time.Hour)
	r.Close()
	r2 := persistent(t, c, path)
	if n, err := r2.Load([]string{"alice", "bob"}); n != 1 || err != nil {
		t.Errorf("after reload and restart: %d, %v (bob must be gone from the file)", n, err)
	}
}

func TestMemoryOnlyWritesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := New(Options{Now: newClock().Now})
	r.Apply("alice", reg("a", 1, 3600, ct("sip:a@h", -1)))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("memory-only registrar wrote %v", entries)
	}
}
