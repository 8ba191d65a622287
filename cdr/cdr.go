// Package cdr writes call detail records: one JSON object per finished
// call, one line each, appended to a file (JSON Lines).
//
// Each record is written with a single write on a file opened O_APPEND, so
// lines from concurrent calls never interleave and a crash loses at most
// the record being written. Nothing is buffered: a CDR is on disk when the
// caller has its final response.
package cdr

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/ringroute/ringroute/routing"
)

// Writer appends records to one file. It is safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	path string
	errs int // failed writes since the last success, to log once
	err  func(error)
}

// Open opens (creating if needed) the CDR file at path for appending.
// onErr, if not nil, is told about write failures; a CDR that cannot be
// written must not stop calls.
func Open(path string, onErr func(error)) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cdr: %w", err)
	}
	return &Writer{f: f, path: path, err: onErr}, nil
}

// Path is the file written to.
func (w *Writer) Path() string { return w.path }

// Write appends one record.
func (w *Writer) Write(r routing.Record) {
	b, err := json.Marshal(r)
	if err != nil {
		w.report(fmt.Errorf("cdr: encode %s: %w", r.CallID, err))
		return
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if _, err := w.f.Write(b); err != nil {
		w.errs++
		if w.errs == 1 {
			w.report(fmt.Errorf("cdr: write %s: %w", w.path, err))
		}
		return
	}
	w.errs = 0
}

func (w *Writer) report(err error) {
	if w.err != nil {
		w.err(err)
	}
}

// Close closes the file; later writes are dropped.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
