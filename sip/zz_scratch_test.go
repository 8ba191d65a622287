package sip

import (
	"os"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestScratchTorture(t *testing.T) {
	name := os.Getenv("TNAME")
	tr := os.Getenv("TTR")
	m := tortureMessage(t, name)
	member, caller := newPeer(t, "m"), newPeer(t, "caller")
	s, _ := startServer(t, tortureConfig(member.uri("m")), caller, member)
	server := caller.to.String()
	w := udpWire(caller)
	if tr == "tcp" {
		w = tcpWire(t, s, "tcp-caller")
	}
	msg := fill(m.raw, map[string]string{"SERVER": server, "PEER": w.local, "ID": "x-" + sipmsg.GenerateTagN(5), "TRANSPORT": strings.ToUpper(tr)})
	w.write(t, msg)
	deadline := time.After(1500 * time.Millisecond)
	for {
		select {
		case x := <-w.p.in:
			t.Logf("caller got:\n%s", x)
		case x := <-member.in:
			t.Logf("member got:\n%s", x)
			if r, ok := x.(*sipmsg.Request); ok && r.IsInvite() {
				member.reply(r, 486, "m", "")
			}
		case <-deadline:
			return
		}
	}
}

func TestScratchSeq(t *testing.T) {
	first, second := tortureMessage(t, "seq-first-invite"), tortureMessage(t, os.Getenv("TNAME"))
	member, caller := newPeer(t, "m"), newPeer(t, "caller")
	startServer(t, tortureConfig(member.uri("m")), caller, member)
	w := udpWire(caller)
	vars := map[string]string{"SERVER": caller.to.String(), "PEER": w.local, "ID": "x-" + sipmsg.GenerateTagN(5), "TRANSPORT": "UDP"}
	w.write(t, fill(first.raw, vars))
	inv := member.request(sipmsg.INVITE, wait)
	member.reply(inv, 180, "m", "")
	w.write(t, fill(second.raw, vars))
	deadline := time.After(1500 * time.Millisecond)
	var invs []*sipmsg.Request
	for {
		select {
		case x := <-w.p.in:
			t.Logf("caller got: %s", strings.SplitN(x.String(), "\r\n", 2)[0])
		case x := <-member.in:
			t.Logf("member got: %s / %s", strings.SplitN(x.String(), "\r\n", 2)[0], x.CallID().Value())
			if r, ok := x.(*sipmsg.Request); ok && r.IsInvite() {
				invs = append(invs, r)
			}
		case <-deadline:
			member.reply(inv, 486, "m", "")
			for _, r := range invs {
				member.reply(r, 486, "m", "")
			}
			time.Sleep(200 * time.Millisecond)
			return
		}
	}
}
