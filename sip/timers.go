package sip

import (
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// linger is how long a transaction that has its final response would stay
// to absorb retransmissions (RFC 3261's Timers D, J and L are 32 s on UDP;
// 5 s is Kamailio's wait_timer). sipgo keeps every message of such a
// transaction for as long, about 25 KiB a call. At 1000 calls/s that live
// heap made each GC mark phase last a quarter of a second on the core the
// daemon has, and call setups queued behind it (bench/sip -trace).
//
// So ringroute keeps what those timers are for, not the transactions.
// A member leg's INVITE transaction is not sipgo's at all (invitetx.go);
// it ends at its final response the same way. sipgo's INVITE client
// transactions are left for the in-dialog re-INVITEs ringroute relays:
//
//   - INVITE client after a failure (Timer D, which sipgo also uses as
//     Timer K of non-INVITE clients): 0. A retransmitted failure of a
//     member's INVITE reaches onStrayResponse, which ACKs it again from the
//     few strings kept in Server.failed for linger. A retransmitted
//     response to a CANCEL or BYE needs nothing; sendAndWait already ends
//     those transactions at their final response.
//   - INVITE client after a 2xx (Timer M): settle, not 0. RFC 6026 keeps
//     that state only to hand later 2xx to the TU, and sipgo hands a
//     response that matches no transaction to the TU anyway. But sipgo
//     gives each datagram a goroutine of its own, which finds the
//     transaction and then waits for it: a second 2xx right behind the
//     first that found it before Timer M ran would be dropped once the
//     transaction had ended (CI caught this on member INVITEs, when they
//     were sipgo's).
//   - INVITE server after a 2xx (Timer L): 0. The TU retransmits the 2xx
//     itself (awaitACK) and the ACK never matched the transaction (it has
//     a branch of its own). A retransmitted INVITE is absorbed by onInvite
//     from Server.invites.
//   - non-INVITE server (Timer J): linger. A BYE's transaction is ended as
//     soon as it is answered and a retransmitted BYE gets its 200 again from
//     Server.byes; REGISTER and the rest keep theirs, which a retransmission
//     must not pass (a digest nonce-count is single use).
//
// A peer retransmits at 0.5, 1.5 and 3.5 s, so linger still covers three
// losses in a row for what is kept that long.
const linger = 5 * time.Second

// settle is Timer M: long enough for every response goroutine that found
// the transaction to have had its turn, however loaded the core is.
const settle = time.Second

// sipgo keeps its timers in package variables; they are set here, before
// any transaction exists, and never written again.
func init() {
	sipmsg.Timer_D = 0
	sipmsg.Timer_M = settle
	sipmsg.Timer_L = 0
	sipmsg.Timer_J = linger
}
