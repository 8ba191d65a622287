package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/metrics"
	"github.com/ringroute/ringroute/routing"
	"github.com/ringroute/ringroute/sip"
)

type fakeDaemon struct{ draining bool }

func (f *fakeDaemon) Live() (int, int) { return 1, 2 }
func (f *fakeDaemon) Draining() bool   { return f.draining }
func (f *fakeDaemon) Groups() []sip.GroupStatus {
	return []sip.GroupStatus{{Name: "sales", Members: []sip.MemberStatus{{Key: "user:bob", State: "ringing"}}}}
}
func (f *fakeDaemon) Calls() []sip.CallStatus { return nil }
func (f *fakeDaemon) Call(id string) (sip.CallStatus, bool) {
	return sip.CallStatus{CallID: id, Decisions: []string{"pass 1"}}, id == "abc"
}

func serve(t *testing.T, token string, d Daemon, rl Reloader, m *metrics.Metrics) string {
	t.Helper()
	s, err := New("127.0.0.1:0", token, d, rl, m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return "http://" + s.Addr().String()
}

func get(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestTokenEnforced(t *testing.T) {
	base := serve(t, "s3cret", &fakeDaemon{}, nil, metrics.New())
	for _, path := range []string{"/healthz", "/metrics", "/api/v1/groups", "/api/v1/calls"} {
		if code, _ := get(t, "GET", base+path, ""); code != 401 {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
		if code, _ := get(t, "GET", base+path, "wrong"); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code, _ := get(t, "GET", base+path, "s3cret"); code != 200 {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}
}

func TestHealthAndCalls(t *testing.T) {
	d := &fakeDaemon{}
	base := serve(t, "", d, nil, metrics.New())
	if code, _ := get(t, "GET", base+"/healthz", ""); code != 200 {
		t.Errorf("healthz %d", code)
	}
	d.draining = true
	if code, _ := get(t, "GET", base+"/healthz", ""); code != 503 {
		t.Errorf("healthz while draining %d, want 503", code)
	}
	if code, body := get(t, "GET", base+"/api/v1/calls", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("calls: %d %q, want an empty JSON list", code, body)
	}
	if code, body := get(t, "GET", base+"/api/v1/calls/abc", ""); code != 200 || !strings.Contains(body, "pass 1") {
		t.Errorf("call abc: %d %s", code, body)
	}
	if code, _ := get(t, "GET", base+"/api/v1/calls/nope", ""); code != 404 {
		t.Errorf("unknown call: %d, want 404", code)
	}
	code, body := get(t, "GET", base+"/api/v1/groups", "")
	var gs []sip.GroupStatus
	if code != 200 || json.Unmarshal([]byte(body), &gs) != nil || gs[0].Members[0].State != "ringing" {
		t.Errorf("groups: %d %s", code, body)
	}
}

// A refused reload answers 400 with every error and its position.
func TestReloadErrors(t *testing.T) {
	_, perr := config.Parse("bad.yaml", []byte("media: {mode: nope}\ngroups: [{name: x, extension: \"1\", timeout: ten}]\n"))
	rl := func() ([]string, error) { return nil, perr }
	base := serve(t, "", &fakeDaemon{}, rl, metrics.New())
	code, body := get(t, "POST", base+"/api/v1/reload", "")
	var res struct {
		OK     bool     `json:"ok"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != 400 || res.OK || len(res.Errors) != 2 {
		t.Fatalf("reload: %d %s", code, body)
	}
	for _, e := range res.Errors {
		if !strings.HasPrefix(e, "bad.yaml:") {
			t.Errorf("error without its position: %q", e)
		}
	}
	ok := func() ([]string, error) { return []string{"listen"}, nil }
	base = serve(t, "", &fakeDaemon{}, ok, metrics.New())
	if code, body := get(t, "POST", base+"/api/v1/reload", ""); code != 200 || !strings.Contains(body, `"listen"`) {
		t.Errorf("good reload: %d %s", code, body)
	}
}

// /metrics parses with the Prometheus text parser and counts calls.
func TestMetricsParse(t *testing.T) {
	m := metrics.New()
	m.CallFinished(routing.Record{Group: "sales", Outcome: "answered", Legs: []routing.LegRecord{{Code: 200}, {Code: 487}}})
	m.CallFinished(routing.Record{Group: "sales", Outcome: "noanswer"})
	m.Reloaded(false)
	base := serve(t, "", &fakeDaemon{}, nil, m)
	code, body := get(t, "GET", base+"/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	calls := fams["ringroute_calls_total"]
	if calls == nil || len(calls.GetMetric()) != 2 {
		t.Fatalf("ringroute_calls_total: %v", calls)
	}
	if f := fams["ringroute_config_reload_failures_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("reload failures: %v", f)
	}
	if f := fams["ringroute_legs_total"]; f == nil || len(f.GetMetric()) != 2 {
		t.Errorf("legs by code: %v", f)
	}
}
