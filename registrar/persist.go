package registrar

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// stateVersion is the state file format. A file with another version is
// refused like a corrupt one rather than half understood.
const stateVersion = 1

type stateFile struct {
	Version  int            `json:"version"`
	Saved    time.Time      `json:"saved"`
	Bindings []stateBinding `json:"bindings"`
}

type stateBinding struct {
	User      string    `json:"user"`
	URI       string    `json:"uri"`
	Expires   time.Time `json:"expires"`
	Q         float64   `json:"q"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	UserAgent string    `json:"user_agent,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Load restores the state file, replacing whatever the Registrar holds;
// call it once before serving. Bindings already expired by the clock's now
// and bindings of users not in users are dropped (pass every configured
// user name). It returns how many bindings it restored.
//
// Nothing here is fatal: with no StateFile or no file yet (first start) it
// returns 0, nil. An unreadable, corrupt or foreign file returns an error
// for the caller to log and leaves the Registrar empty; the next change
// overwrites the file. Single entries that make no sense (bad address,
// unknown transport) are skipped and reported in the error, the rest are
// restored.
func (r *Registrar) Load(users []string) (int, error) {
	path := r.opts.StateFile
	if path == "" {
		return 0, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("registrar: state file %s: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return 0, fmt.Errorf("registrar: state file %s is corrupt, starting with no registrations: %w", path, err)
	}
	if st.Version != stateVersion {
		return 0, fmt.Errorf("registrar: state file %s has version %d, want %d; starting with no registrations", path, st.Version, stateVersion)
	}

	known := make(map[string]bool, len(users))
	for _, u := range users {
		known[u] = true
	}
	r.mu.Lock()
	now := r.now()
	loaded := map[string][]entry{}
	var problems []error
	dropped := 0
	for i, sb := range st.Bindings {
		b, err := sb.binding()
		if err != nil {
			problems = append(problems, fmt.Errorf("entry %d: %w", i, err))
			dropped++
			continue
		}
		if !known[b.User] || !b.Expires.After(now) {
			dropped++
			continue
		}
		es := loaded[b.User]
		if j := indexOf(es, b.URI); j >= 0 {
			es = slices.Delete(es, j, j+1) // a duplicate: the later entry wins
			dropped++
		}
		r.seq++
		loaded[b.User] = append(es, entry{Binding: b, seq: r.seq})
	}
	n := 0
	for u, es := range loaded {
		if over := len(es) - r.opts.MaxContacts; over > 0 {
			loaded[u] = es[over:]
			dropped += over
		}
		n += len(loaded[u])
	}
	r.users = loaded
	if dropped > 0 {
		r.markDirtyLocked() // rewrite the file without what was dropped
	}
	r.mu.Unlock()
	if len(problems) > 0 {
		return n, fmt.Errorf("registrar: state file %s: skipped %d bad entries: %w", path, len(problems), errors.Join(problems...))
	}
	return n, nil
}

func (sb stateBinding) binding() (Binding, error) {
	src, err := netip.ParseAddrPort(sb.Source)
	if err != nil {
		return Binding{}, fmt.Errorf("user %q contact %q: source: %w", sb.User, sb.URI, err)
	}
	if sb.User == "" || sb.URI == "" || strings.ContainsAny(sb.URI, "<>\r\n\x00") {
		return Binding{}, fmt.Errorf("user %q contact %q: empty or unusable", sb.User, sb.URI)
	}
	if !slices.Contains(validTransports, sb.Transport) {
		return Binding{}, fmt.Errorf("user %q contact %q: unknown transport %q", sb.User, sb.URI, sb.Transport)
	}
	if sb.Q != -1 && (sb.Q < 0 || sb.Q > 1) {
		sb.Q = -1
	}
	return Binding{
		User: sb.User, URI: sb.URI, Expires: sb.Expires, Q: sb.Q,
		CallID: sb.CallID, CSeq: sb.CSeq, Source: src, Transport: sb.Transport,
		UserAgent: sb.UserAgent, Updated: sb.Updated,
	}, nil
}

// markDirtyLocked notes a change and makes sure a write is scheduled:
// the first change of a burst starts the PersistDelay timer, later ones
// ride along.
func (r *Registrar) markDirtyLocked() {
	if r.opts.StateFile == "" {
		return
	}
	r.dirty = true
	if r.timer == nil && !r.closed {
		r.timer = time.AfterFunc(r.opts.PersistDelay, r.flushInBackground)
	}
}

func (r *Registrar) flushInBackground() {
	if err := r.Flush(); err != nil && r.opts.OnError != nil {
		r.opts.OnError(err)
	}
}

// Flush writes pending changes to the state file now. Writes are
// atomic: a temporary file in the same directory, fsynced, renamed over
// the old one, so a crash leaves either the old or the new file, never
// part of one. On failure the changes stay pending and are retried on the
// next change and at Close.
func (r *Registrar) Flush() error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	st := r.snapshotLocked()
	r.dirty = false
	r.mu.Unlock()

	err := writeAtomic(r.opts.StateFile, st)
	if err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
	}
	return err
}

// Close writes the state file a last time; Apply fails after it, the
// read methods keep working.
func (r *Registrar) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.Flush()
}

func (r *Registrar) snapshotLocked() stateFile {
	now := r.now()
	st := stateFile{Version: stateVersion, Saved: now, Bindings: []stateBinding{}}
	names := make([]string, 0, len(r.users))
	for u := range r.users {
		names = append(names, u)
	}
	slices.Sort(names)
	for _, u := range names {
		es := slices.Clone(r.users[u])
		// Registration order, so Load restores the MaxContacts order.
		slices.SortFunc(es, func(a, b entry) int { return cmpUint(a.seq, b.seq) })
		for _, e := range es {
			if !e.Expires.After(now) {
				continue
			}
			st.Bindings = append(st.Bindings, stateBinding{
				User: e.User, URI: e.URI, Expires: e.Expires, Q: e.Q,
				CallID: e.CallID, CSeq: e.CSeq, Source: e.Source.String(),
				Transport: e.Transport, UserAgent: e.UserAgent, Updated: e.Updated,
			})
		}
	}
	return st
}

func writeAtomic(path string, st stateFile) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("registrar: encode state: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("registrar: write state file %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("registrar: write state file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("registrar: fsync state file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("registrar: write state file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		done = true
		return fmt.Errorf("registrar: replace state file %s: %w", path, err)
	}
	done = true
	// The rename is durable only once the directory entry is on disk.
	// Not every system can fsync a directory; the file itself is safe
	// either way, so a failure here is not reported.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
