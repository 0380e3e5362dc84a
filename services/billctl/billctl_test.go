package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const testToken = "blt_billctl-test-token"

// recordingExecutor accepts commands and rejects the rejectAt-th one (1-based).
type recordingExecutor struct {
	mu       sync.Mutex
	rejectAt int
	got      []*billingv1.ExecuteRequest
}

func (e *recordingExecutor) Execute(_ context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, req)
	if actor != "admin" {
		return nil, domain.Reject(domain.CodePermissionDenied, "unexpected actor %q", actor)
	}
	if len(e.got) == e.rejectAt {
		return nil, domain.Reject(domain.CodeTransferAlreadyExists, "source 222222222222 already has live transfer rt-demo1")
	}
	id := "rt-generated"
	if inv := req.GetInviteBillSource(); inv != nil && inv.GetTransferId() != "" {
		id = inv.GetTransferId()
	}
	if org := req.GetRegisterOrganization(); org != nil {
		id = org.GetManagementAccountId()
	}
	return &billingv1.CommandResult{AggregateId: id, EventIds: []string{"e1", "e2", "e3"}, Position: uint64(len(e.got))}, nil
}

func (e *recordingExecutor) calls() []*billingv1.ExecuteRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*billingv1.ExecuteRequest(nil), e.got...)
}

type staticReader []*billingv1.Transfer

func (r staticReader) ListTransfers(context.Context, *billingv1.ListTransfersRequest) ([]*billingv1.Transfer, error) {
	return r, nil
}

// newServer runs the real API handler over fakes and returns its URL.
func newServer(t *testing.T, opts api.Options) string {
	t.Helper()
	v, err := auth.NewVerifier(auth.TokenRecord{Name: "admin", Role: auth.RoleAdmin, SHA256: auth.HashToken(testToken)})
	if err != nil {
		t.Fatal(err)
	}
	opts.Verifier = v
	srv := httptest.NewServer(api.NewHandler(opts))
	t.Cleanup(srv.Close)
	return srv.URL
}

// runCLI runs billctl with args and returns its exit status and output.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmds.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const demoFile = `# demo: two organizations, then a transfer
{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner Co"}

{"command":"InviteBillSource","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}
{"command":"InviteBillSource","transfer_id":"rt-demo2","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}
{"command":"AcceptTransfer","transfer_id":"rt-demo2"}
`

func TestApplyStopsAtFirstRejectedLine(t *testing.T) {
	t.Parallel()
	exec := &recordingExecutor{rejectAt: 3}
	url := newServer(t, api.Options{Executor: exec})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "apply", "-f", writeFile(t, demoFile))

	if code != 1 {
		t.Fatalf("exit status %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	wantOut := "line 2: RegisterOrganization ok management_account_id=111111111111 events=3\n" +
		"line 4: InviteBillSource ok transfer_id=rt-generated events=3\n"
	if stdout != wantOut {
		t.Fatalf("stdout:\n%s\nwant:\n%s", stdout, wantOut)
	}
	wantErr := "line 5: InviteBillSource: TRANSFER_ALREADY_EXISTS: source 222222222222 already has live transfer rt-demo1\n"
	if stderr != wantErr {
		t.Fatalf("stderr:\n%q\nwant:\n%q", stderr, wantErr)
	}
	if n := len(exec.calls()); n != 3 {
		t.Fatalf("server received %d commands, want 3 (the 3rd rejected, nothing after it)", n)
	}
}

func TestApplyInvalidLineSendsNothing(t *testing.T) {
	t.Parallel()
	exec := &recordingExecutor{}
	url := newServer(t, api.Options{Executor: exec})
	file := writeFile(t, `{"command":"AcceptTransfer","transfer_id":"rt-1"}
{"command":"AcceptTransfer","transfer_id":"rt-1","bogus":1}
{"command":"AcceptTransfer","transfer_id":"rt-2"}
`)
	code, _, stderr := runCLI(t, "", "--server", url, "--token", testToken, "apply", "-f", file)
	if code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	if !strings.HasPrefix(stderr, `line 2: AcceptTransfer: INVALID_ARGUMENT: unknown field "bogus"`) {
		t.Fatalf("stderr = %q", stderr)
	}
	if n := len(exec.calls()); n != 1 {
		t.Fatalf("server received %d commands, want 1", n)
	}
}

func TestApplyStdinJSON(t *testing.T) {
	t.Parallel()
	exec := &recordingExecutor{}
	url := newServer(t, api.Options{Executor: exec})
	code, stdout, stderr := runCLI(t, `{"command":"InviteBillSource","transfer_id":"rt-x","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}`,
		"--server", url, "--token", testToken, "-o", "json", "apply", "-f", "-")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	var line struct {
		Line    int    `json:"line"`
		Command string `json:"command"`
		OK      bool   `json:"ok"`
		Result  struct {
			AggregateID string   `json:"aggregate_id"`
			EventIDs    []string `json:"event_ids"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(stdout), &line); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if line.Line != 1 || line.Command != "InviteBillSource" || !line.OK || line.Result.AggregateID != "rt-x" || len(line.Result.EventIDs) != 3 {
		t.Fatalf("json line = %+v", line)
	}
}

func TestReportTransfers(t *testing.T) {
	t.Parallel()
	rows := staticReader{
		{TransferId: "rt-demo1", PayerAccountId: "111111111111", SourceAccountId: "222222222222", Status: "ACCEPTED",
			StartTime: "2026-09-01T00:00:00Z", ExpiresAt: "2026-08-29T23:59:59Z"},
		{TransferId: "rt-demo22", PayerAccountId: "111111111111", SourceAccountId: "333333333333", Status: "WITHDRAWN",
			StartTime: "2026-09-01T00:00:00Z", EndTime: "2026-10-31T23:59:59.999Z", PricingPlanId: "pp-1"},
	}
	url := newServer(t, api.Options{Transfers: rows})

	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "transfers", "--payer", "111111111111")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TRANSFER ") || !strings.Contains(lines[1], "ACCEPTED") {
		t.Fatalf("table:\n%s", stdout)
	}
	// Aligned columns: STATUS starts at the same offset on every line.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "ACCEPTED") && !strings.HasPrefix(l[col:], "WITHDRAWN") {
			t.Fatalf("columns not aligned:\n%s", stdout)
		}
	}

	code, stdout, stderr = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "transfers")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Transfers []map[string]any `json:"transfers"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("json %q: %v", stdout, err)
	}
	if len(doc.Transfers) != 2 {
		t.Fatalf("transfers = %v", doc.Transfers)
	}
	for _, key := range []string{"transfer_id", "payer_account_id", "source_account_id", "status", "start_time", "end_time"} {
		if _, ok := doc.Transfers[0][key]; !ok {
			t.Errorf("transfer object lacks %q: %v", key, doc.Transfers[0])
		}
	}
	if doc.Transfers[1]["end_time"] != "2026-10-31T23:59:59.999Z" {
		t.Errorf("end_time = %v", doc.Transfers[1]["end_time"])
	}
}

func TestReportRejectsBadStatus(t *testing.T) {
	t.Parallel()
	url := newServer(t, api.Options{Transfers: staticReader{}})
	code, _, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "transfers", "--status", "PENDING")
	if code != 1 || !strings.HasPrefix(stderr, "INVALID_ARGUMENT: status \"PENDING\"") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

func TestClockSetAndInfo(t *testing.T) {
	t.Parallel()
	c := clock.NewSimulated(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), nil)
	url := newServer(t, api.Options{Clock: c, NATSURL: "nats://127.0.0.1:4222"})

	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "clock", "set", "2026-05-01")
	if code != 0 || stdout != "clock set to 2026-05-01T00:00:00Z\n" {
		t.Fatalf("clock set: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "", "--server", url, "--token", testToken, "clock", "set", "2026-04-02T00:00:00Z")
	if code != 1 || !strings.HasPrefix(stderr, "INVALID_ARGUMENT: ") {
		t.Fatalf("clock set backwards: exit %d stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "--server", url, "--token", testToken, "clock", "set", "next tuesday")
	if code != 1 || !strings.HasPrefix(stderr, "INVALID_ARGUMENT: ") {
		t.Fatalf("clock set garbage: exit %d stderr %q", code, stderr)
	}

	code, stdout, stderr = runCLI(t, "", "--server", url, "--token", testToken, "info")
	if code != 0 || !strings.Contains(stdout, "nats://127.0.0.1:4222") || !strings.Contains(stdout, "2026-05-01T00:00:00Z") {
		t.Fatalf("info: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "info")
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &info) != nil || info["simulated_clock"] != true {
		t.Fatalf("info json: exit %d stdout %q", code, stdout)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	url := newServer(t, api.Options{Executor: &recordingExecutor{}})

	t.Run("wrong token", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := runCLI(t, "", "--server", url, "--token", "blt_wrong", "info")
		if code != 1 || !strings.HasPrefix(stderr, "UNAUTHENTICATED: ") {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
	})

	t.Run("connection refused names the server", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		code, _, stderr := runCLI(t, "", "--server", addr, "--token", testToken, "info")
		if code != 1 || !strings.Contains(stderr, "cannot reach billingd at http://"+addr) {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := runCLI(t, "", "--server", url, "--token", testToken, "apply", "-f", filepath.Join(t.TempDir(), "nope.jsonl"))
		if code != 1 || !strings.Contains(stderr, "nope.jsonl") {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		if code, _, _ := runCLI(t, "", "frobnicate"); code != exitUsage {
			t.Fatalf("unknown command: exit %d, want %d", code, exitUsage)
		}
		if code, _, _ := runCLI(t, "", "-o", "yaml", "info"); code != exitUsage {
			t.Fatalf("bad -o: exit %d, want %d", code, exitUsage)
		}
		if code, stdout, _ := runCLI(t, "", "--help"); code != 0 || !strings.Contains(stdout, "apply") {
			t.Fatalf("--help: exit %d stdout %q", code, stdout)
		}
	})
}

// TestTokenFromDataDir covers the documented fallback: no --token and no
// BILLING_TOKEN, but ./data/admin.token exists. Not parallel: it changes the
// working directory and the environment.
func TestTokenFromDataDir(t *testing.T) {
	url := newServer(t, api.Options{})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "admin.token"), []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("BILLING_TOKEN", "")
	t.Setenv("BILLING_SERVER", url)
	if code, _, stderr := runCLI(t, "", "info"); code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// An explicit token wins over the file.
	if code, _, stderr := runCLI(t, "", "--token", "blt_wrong", "info"); code != 1 || !strings.HasPrefix(stderr, "UNAUTHENTICATED") {
		t.Fatalf("explicit token: exit %d stderr %q", code, stderr)
	}
}
