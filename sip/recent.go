package sip

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/ringroute/ringroute/routing"
)

// recent remembers keys, with a value each, for at least keep and at most
// twice that. It is what is left of a transaction once sipgo has dropped it
// (see linger): enough to answer a retransmission, at a fraction of the
// memory and none of the pointers of the messages themselves.
//
// At 1000 calls/s the Server's sets (recent, invites, byes) hold a few
// hundred thousand entries each. They are kept as seeded 64-bit hashes in
// two generations: no string for the garbage collector to mark (a map of
// uint64 to struct{} is not even scanned), and forgetting a generation is
// dropping a map, not a scan under the lock. A forged key would have to
// hit a hash under a random seed.
type recent[V any] struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]V
	clock     routing.Clock
	keep      time.Duration
	stop      routing.Timer
}

// recentKeep is the span of a generation for what a peer may retransmit
// for 64*T1 (a 2xx, a BYE, an INVITE that got no provisional response):
// an entry lives between one and two of it, so at least 2*64*T1.
const recentKeep = 2 * 64 * 500 * time.Millisecond

func (r *recent[V]) init(clk routing.Clock, keep time.Duration) {
	r.seed = maphash.MakeSeed()
	r.cur, r.prev = map[uint64]V{}, map[uint64]V{}
	r.clock = clk
	r.keep = keep
}

// hash is the key of parts; a NUL between them keeps ("ab","c") apart
// from ("a","bc").
func (r *recent[V]) hash(parts ...string) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	for _, p := range parts {
		h.WriteString(p)
		h.WriteByte(0)
	}
	return h.Sum64()
}

func (r *recent[V]) put(v V, key ...string) {
	h := r.hash(key...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(h, v)
}

func (r *recent[V]) putLocked(h uint64, v V) {
	r.cur[h] = v
	if r.stop == nil {
		r.stop = r.clock.AfterFunc(r.keep, r.rotate)
	}
}

func (r *recent[V]) get(key ...string) (V, bool) {
	h := r.hash(key...)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.getLocked(h)
}

func (r *recent[V]) getLocked(h uint64) (V, bool) {
	v, ok := r.cur[h]
	if !ok {
		v, ok = r.prev[h]
	}
	return v, ok
}

func (r *recent[V]) has(key ...string) bool {
	_, ok := r.get(key...)
	return ok
}

func (r *recent[V]) rotate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev, r.cur = r.cur, make(map[uint64]V, len(r.cur))
	r.stop = nil
	if len(r.prev) > 0 {
		r.stop = r.clock.AfterFunc(r.keep, r.rotate)
	}
}

func (r *recent[V]) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		r.stop.Stop()
		r.stop = nil
	}
}

// set is a recent without values.
type set struct{ recent[struct{}] }

func (r *set) add(key ...string) { r.put(struct{}{}, key...) }

// first adds key and reports whether it was not there yet.
func (r *set) first(key ...string) bool {
	h := r.hash(key...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.getLocked(h); ok {
		return false
	}
	r.putLocked(h, struct{}{})
	return true
}

// txKey is what identifies a request's transaction for the sets above:
// its Call-ID and its top Via branch (RFC 3261 §17.2.3). ok is false for
// a branch without the RFC 3261 magic cookie, which need not be unique.
func txKey(req *sipmsg.Request) (callID, branch string, ok bool) {
	via, cid := req.Via(), req.CallID()
	if via == nil || cid == nil {
		return "", "", false
	}
	branch, _ = via.Params.Get("branch")
	if !strings.HasPrefix(branch, sipmsg.RFC3261BranchMagicCookie) || len(branch) == len(sipmsg.RFC3261BranchMagicCookie) {
		return "", "", false
	}
	return cid.Value(), branch, true
}
