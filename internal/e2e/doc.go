// Package e2e proves ringroute's behaviour on the wire: it builds the
// daemon, starts it on loopback with a generated config, and drives it with
// SIPp callers and members (scenarios in testdata/sipp), then checks the
// SIP message logs, the CDR file and the admin leak endpoint.
//
// Everything lives in test files; this file only carries the package
// comment so that `go build ./...` and `go vet` see a package here.
//
// Run it with
//
//	go test ./internal/e2e/ -v                     # the whole suite
//	go test ./internal/e2e/ -run TestScenarioPairs # SIPp scenarios against each other, no daemon
//	go test ./internal/e2e/ -run 'TestCalls/udp/parallel'
//	go test ./internal/e2e/ -run TestMedia         # RTP through the relay, on the wire (needs root)
//	RINGROUTE_E2E_LOAD=1 go test ./internal/e2e/ -run TestLoad -v
//	RINGROUTE_E2E_KEEP=1 ...                        # keep logs, configs and CDRs
//
// It needs sipp (Debian package sip-tester) on PATH and is skipped under
// -short.
package e2e
