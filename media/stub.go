package media

import (
	"errors"
	"net/netip"
	"time"
)

// Temporary stubs so the module builds while the implementation lands.

var errNotYet = errors.New("media: not implemented yet")

type descImpl struct{}

func parseSDP(body []byte) (*Description, error) { return nil, errNotYet }
func (descImpl) streams() []Stream               { return nil }
func (descImpl) rewrite(addr netip.Addr, ports []Ports, origin Origin) []byte {
	return nil
}

type poolImpl struct{}

func newPool(addr netip.Addr, lo, hi int) (*Pool, error) { return nil, errNotYet }
func (poolImpl) inUse() int                              { return 0 }
func (poolImpl) size() int                               { return 0 }
func (poolImpl) newSession(streams int, opts SessionOptions) (*Session, error) {
	return nil, errNotYet
}

type session struct{}

func (*session) ports(side Side) []Ports             { return nil }
func (*session) setPeer(side Side, i int, st Stream) {}
func (*session) earlyMedia(on bool)                  {}
func (*session) bridge()                             {}
func (*session) play(src Source)                     {}
func (*session) stopPlay()                           {}
func (*session) setHold(held bool)                   {}
func (*session) idle() time.Duration                 { return 0 }
func (*session) record(path string) error            { return errNotYet }
func (*session) stats() Stats                        { return Stats{} }
func (*session) close() error                        { return nil }

func newTone(country string, pt uint8) (Source, error) { return nil, errNotYet }
func newMusic(path string, pt uint8) (Source, error)   { return nil, errNotYet }
