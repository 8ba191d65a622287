// Package cdr writes call detail records: one JSON object per finished
// call, one line each, appended to a file (JSON Lines).
//
// Each record is written with a single write on a file opened O_APPEND, so
// lines from concurrent calls never interleave and a crash loses at most
// the record being written. Nothing is buffered: a CDR is on disk when the
// caller has its final response.
package cdr

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ringroute/ringroute/routing"
)

// Writer appends records to one file. It is safe for concurrent use, and
// no lock is held across the write: *os.File serialises with Close itself,
// and O_APPEND keeps each record's single write whole.
type Writer struct {
	f    atomic.Pointer[os.File] // nil once closed
	path string
	errs atomic.Int32 // failed writes since the last success, to log once
	err  func(error)
	bufs sync.Pool // *[]byte, a record's encoding
}

// Open opens (creating if needed) the CDR file at path for appending.
// onErr, if not nil, is told about write failures; a CDR that cannot be
// written must not stop calls.
func Open(path string, onErr func(error)) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cdr: %w", err)
	}
	w := &Writer{path: path, err: onErr}
	w.f.Store(f)
	return w, nil
}

// Path is the file written to.
func (w *Writer) Path() string { return w.path }

// Write appends one record.
func (w *Writer) Write(r routing.Record) {
	f := w.f.Load()
	if f == nil {
		return
	}
	bp, _ := w.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append(appendRecord((*bp)[:0], &r), '\n')
	_, err := f.Write(b)
	if cap(b) <= 64<<10 { // a call that tried thousands of legs keeps no giant buffer
		*bp = b
		w.bufs.Put(bp)
	}
	switch {
	case err == nil:
		if w.errs.Load() != 0 {
			w.errs.Store(0)
		}
	case errors.Is(err, os.ErrClosed):
		// Close won the race: the record is dropped, as after Close.
	case w.errs.Add(1) == 1:
		w.report(fmt.Errorf("cdr: write %s: %w", w.path, err))
	}
}

func (w *Writer) report(err error) {
	if w.err != nil {
		w.err(err)
	}
}

// Close closes the file; later writes are dropped.
func (w *Writer) Close() error {
	f := w.f.Swap(nil)
	if f == nil {
		return nil
	}
	return f.Close()
}
