package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop with a real softphone (issue 6): baresip, from Debian's
// baresip-core, registers with digest and answers a group call through the
// relay. It runs headless: no audio device, a WAV file as its microphone,
// another as its speaker, auto-answer.
//
// Gotchas found getting it to run here:
//   - baresip 1.0's libre fails its REGISTER ("Function not implemented")
//     when any challenge names SHA-256: ringroute's default
//     digest_algorithms is [MD5] for this.
//   - net_interface lo makes it fail ("could not get network address");
//     leaving it out and binding sip_listen to 127.0.0.1 works.
//   - ausine only runs at 48 kHz; an 8 kHz PCM WAV through aufile is the
//     source that works with G.711.
//
// Over TLS, baresip checks ringroute's certificate against the test CA
// (sip_cafile), registers on its TLS connection and gets the group call's
// INVITE back on that connection: the binding's source and transport, not
// its Contact, is where ringroute reaches it.
func TestBaresipInterop(t *testing.T) {
	for _, tr := range []string{"udp", "tls"} {
		t.Run(tr, func(t *testing.T) { baresipInterop(t, tr) })
	}
}

func baresipInterop(t *testing.T, transport string) {
	bin := needDaemon(t)
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Fatal("baresip is not installed: make test installs it (Debian package baresip-core), or run: apt-get install -y baresip-core")
	}
	dir := workDir(t)
	base := portBlock(t)
	sipPort, adminPort, bsPort := base, base+1, base+2
	mediaLo := 41000 + (base%100)*20
	// The TLS listener takes the TCP port of the UDP one's number.
	crt, key := filepath.Join(repoRoot, "testdata/tls/a.crt"), filepath.Join(repoRoot, "testdata/tls/a.key")

	cdr := filepath.Join(dir, "cdr.jsonl")
	cfg := fmt.Sprintf(`listen: [udp://127.0.0.1:%d, tls://127.0.0.1:%[1]d]
tls: {cert: %q, key: %q}
realm: interop.test
media: {mode: relay, address: 127.0.0.1, ports: %d-%d}
admin: {listen: 127.0.0.1:%d}
log: {level: debug, format: json}
cdr: {path: %q}
registrar: {state_file: "", min_expires: 60s}
trunks: [{name: local, from: [127.0.0.1/32]}]
users:
  - {name: alice, password: s3cret}
groups:
  - name: sales
    extension: "600"
    strategy: all
    timeout: 8s
    member_timeout: 6s
    members: [{user: alice}]
`, sipPort, crt, key, mediaLo, mediaLo+19, adminPort, cdr)
	cfgPath := filepath.Join(dir, "ringroute.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	rrLog := filepath.Join(dir, "ringroute.log")
	rr := startProc(t, "ringroute", dir, rrLog, bin, "run", "-c", cfgPath)
	addr := fmt.Sprintf("127.0.0.1:%d", sipPort)
	deadline := time.Now().Add(10 * time.Second)
	for !optionsOK(addr, 200*time.Millisecond) {
		if rr.exited() || time.Now().After(deadline) {
			t.Fatalf("ringroute not up:\n%s", tail(rrLog, 40))
		}
	}

	// baresip's config: a WAV microphone, a WAV speaker, auto-answer.
	bsDir := filepath.Join(dir, "baresip")
	if err := os.MkdirAll(bsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mic := filepath.Join(bsDir, "mic.wav")
	writeSine(t, mic, 440, 10*time.Second)
	heard := filepath.Join(bsDir, "heard.wav")
	files := map[string]string{
		"config": fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
sip_trans_def udp
sip_cafile %s
audio_player aufile,%s
audio_source aufile,%s
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module menu.so
module account.so
`, bsPort, crt, heard, mic),
		"accounts": fmt.Sprintf("<sip:alice@127.0.0.1:%d;transport=%s>;auth_pass=s3cret;answermode=auto;regint=120\n", sipPort, transport),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(bsDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bsLog := filepath.Join(dir, "baresip.log")
	startProc(t, "baresip", dir, bsLog, "baresip", "-f", bsDir, "-t", "30")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("baresip log:\n%s", tail(bsLog, 60))
			t.Logf("ringroute log:\n%s", tail(rrLog, 80))
		}
	})
	// Registered: ringroute logs the binding.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(rrLog), `"msg":"registration","call_id"`) {
		if time.Now().After(deadline) {
			t.Fatal("baresip did not register with digest within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A trunk call to the group: baresip answers, media flows through the
	// relay both ways (the sipp caller echoes what baresip sends).
	// sipp binds -mp and -mp+2 (and their RTCP ports): a block of its own.
	cb := portBlock(t)
	c := startProc(t, "caller", dir, filepath.Join(dir, "caller.out"), "sipp", "-sn", "uac", "-s", "600", addr,
		"-i", "127.0.0.1", "-p", fmt.Sprint(cb), "-mp", fmt.Sprint(cb+2), "-cp", fmt.Sprint(cb+7),
		"-m", "1", "-d", "2000", "-nostdin", "-rtp_echo", "-timeout", "20s", "-timeout_error")
	if code, ok := c.wait(25 * time.Second); !ok || code != 0 {
		t.Fatalf("sipp caller exit %d (ok=%v):\n%s", code, ok, tail(filepath.Join(dir, "caller.out"), 80))
	}
	var rec cdrRecord
	deadline = time.Now().Add(10 * time.Second)
	for {
		if lines := nonEmptyLines(cdr); len(lines) > 0 {
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatalf("CDR line %q: %v", lines[0], err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CDR line")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.Outcome != "answered" || rec.AnsweredBy != "user:alice" {
		t.Errorf("CDR outcome %q answered_by %q, want answered by user:alice", rec.Outcome, rec.AnsweredBy)
	}
	if rec.RTP == nil || rec.RTP.FromCaller < 20 || rec.RTP.FromMember < 20 || rec.RTP.Dropped != 0 {
		t.Errorf("CDR rtp %+v, want audio both ways through the relay (baresip's and sipp's echo), none dropped", rec.RTP)
	}
	if !strings.Contains(readFile(bsLog), "Call established") {
		t.Error("baresip never reported the call established")
	}
	if got := strings.Contains(rec.AnsweredURI, "transport=tls"); got != (transport == "tls") {
		t.Errorf("CDR answered_uri %q, want baresip's %s binding", rec.AnsweredURI, transport)
	}
	if want := "{0/" + strings.ToUpper(transport) + "/v4} 200 OK"; !strings.Contains(readFile(bsLog), want) {
		t.Errorf("baresip log has no %q: it did not register over %s", want, transport)
	}
}

// writeSine writes an 8 kHz mono 16-bit PCM WAV of a tone.
func writeSine(t *testing.T, path string, hz float64, d time.Duration) {
	t.Helper()
	n := int(d.Seconds() * 8000)
	b := make([]byte, 44+2*n)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], 8000)
	binary.LittleEndian.PutUint32(b[28:], 16000)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/8000))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
