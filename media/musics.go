package media

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Musics keeps music files as Music loads them, by file and payload type,
// so that a call starts its ringback music with a slice of what the last
// call read, not with a read and a decode of the whole file: that ran on
// whichever goroutine stepped the call, every ringing call. A file is
// read again once its size or modification time is no longer what it
// was, so an operator who replaces it needs no reload. The zero value is
// ready; it is safe for concurrent use.
type Musics struct {
	mu sync.Mutex
	m  map[musicKey]musicFile
}

type musicKey struct {
	path string
	pt   uint8
}

type musicFile struct {
	size int64
	mod  time.Time
	data []byte // encoded for the key's pt; never written once here
}

// Music is the package's Music, from what is kept when the file is
// unchanged.
func (c *Musics) Music(path string, pt uint8) (Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("music: %w", err)
	}
	k := musicKey{path, pt}
	c.mu.Lock()
	f, ok := c.m[k]
	c.mu.Unlock()
	if ok && f.size == st.Size() && f.mod.Equal(st.ModTime()) {
		return &loop{data: f.data, pt: pt}, nil
	}
	src, err := newMusic(path, pt)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[musicKey]musicFile{}
	}
	// Stamped with what Stat saw before the read: a file changed while
	// it was read is read again next time.
	c.m[k] = musicFile{size: st.Size(), mod: st.ModTime(), data: src.(*loop).data}
	c.mu.Unlock()
	return src, nil
}
