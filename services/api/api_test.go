package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const (
	adminToken   = "blt_test-admin-token"
	auditorToken = "blt_test-auditor-token"
)

// fakeExecutor answers every command with fn.
type fakeExecutor struct {
	fn func(actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error)
}

func (f *fakeExecutor) Execute(_ context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	return f.fn(actor, req)
}

// fakeReader returns rows and remembers the last filter.
type fakeReader struct {
	mu   sync.Mutex
	last *billingv1.ListTransfersRequest
	rows []*billingv1.Transfer
}

func (f *fakeReader) ListTransfers(_ context.Context, filter *billingv1.ListTransfersRequest) ([]*billingv1.Transfer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = filter
	return f.rows, nil
}

// fakeWaiter has applied everything up to reached; it blocks for more.
type fakeWaiter struct {
	reached uint64
	mu      sync.Mutex
	asked   []uint64
}

func (f *fakeWaiter) WaitFor(ctx context.Context, position uint64) error {
	f.mu.Lock()
	f.asked = append(f.asked, position)
	f.mu.Unlock()
	if position <= f.reached {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

type fixedPosition uint64

func (p fixedPosition) LastPosition(context.Context) (uint64, error) { return uint64(p), nil }

// env is a running API with connect clients.
type env struct {
	url     string
	http    *http.Client
	logs    *syncBuffer
	command billingv1connect.CommandServiceClient
	query   billingv1connect.QueryServiceClient
	admin   billingv1connect.AdminServiceClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, opts api.Options, clientOpts ...connect.ClientOption) *env {
	t.Helper()
	v, err := auth.NewVerifier(
		auth.TokenRecord{Name: "admin", Role: auth.RoleAdmin, SHA256: auth.HashToken(adminToken)},
		auth.TokenRecord{Name: "audit-co", Role: auth.RoleAuditor, SHA256: auth.HashToken(auditorToken)},
	)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts.Verifier = v
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	// TLS with HTTP/2 so that the gRPC protocol can be exercised too.
	srv := httptest.NewUnstartedServer(api.NewHandler(opts))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &env{
		url:     srv.URL,
		http:    srv.Client(),
		logs:    logs,
		command: billingv1connect.NewCommandServiceClient(srv.Client(), srv.URL, clientOpts...),
		query:   billingv1connect.NewQueryServiceClient(srv.Client(), srv.URL, clientOpts...),
		admin:   billingv1connect.NewAdminServiceClient(srv.Client(), srv.URL, clientOpts...),
	}
}

func withToken[T any](msg *T, token string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	return req
}

func invite() *billingv1.ExecuteRequest {
	return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{
		InviteBillSource: &billingv1.InviteBillSource{PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09"},
	}}
}

// errorInfo returns the ErrorInfo detail of err, failing when there is none.
func errorInfo(t *testing.T, err error) *billingv1.ErrorInfo {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *connect.Error", err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail: %v", derr)
		}
		if info, ok := v.(*billingv1.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("error %v has no ErrorInfo detail", err)
	return nil
}

func TestDomainErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code domain.Code
		want connect.Code
	}{
		{domain.CodeInvalidArgument, connect.CodeInvalidArgument},
		{domain.CodeRequestIDConflict, connect.CodeInvalidArgument},
		{domain.CodeEndDateInvalid, connect.CodeInvalidArgument},
		{domain.CodeStartDateTooEarly, connect.CodeInvalidArgument},
		{domain.CodeStartDateTooLate, connect.CodeInvalidArgument},
		{domain.CodeSourceAndTargetCannotMatch, connect.CodeInvalidArgument},
		{domain.CodeNotFound, connect.CodeNotFound},
		{domain.CodePermissionDenied, connect.CodePermissionDenied},
		{domain.CodeUnauthenticated, connect.CodeUnauthenticated},
		{domain.CodeTransferAlreadyExists, connect.CodeAlreadyExists},
		{domain.CodeAlreadyExists, connect.CodeAlreadyExists},
		{domain.CodeInvalidStateTransition, connect.CodeFailedPrecondition},
		{domain.CodeInvitationExpired, connect.CodeFailedPrecondition},
		{domain.CodeChainTooDeep, connect.CodeFailedPrecondition},
		{domain.CodeTransferCycle, connect.CodeFailedPrecondition},
		{domain.CodeFailedPrecondition, connect.CodeFailedPrecondition},
		{domain.CodeQuotaExceeded, connect.CodeResourceExhausted},
		{domain.CodeAborted, connect.CodeAborted},
	}
	exec := &fakeExecutor{fn: func(_ string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
		code := domain.Code(req.GetInviteBillSource().GetNotes())
		// Wrapped on purpose: the mapping must see through context added by the pipeline.
		return nil, fmt.Errorf("pipeline: %w", domain.Reject(code, "rule for %s broken", code))
	}}
	e := newEnv(t, api.Options{Executor: exec})
	for _, tc := range tests {
		t.Run(string(tc.code), func(t *testing.T) {
			t.Parallel()
			msg := invite()
			msg.GetInviteBillSource().Notes = string(tc.code)
			_, err := e.command.Execute(context.Background(), withToken(msg, adminToken))
			if got := connect.CodeOf(err); got != tc.want {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.want, err)
			}
			wantMsg := "rule for " + string(tc.code) + " broken"
			var ce *connect.Error
			errors.As(err, &ce)
			if ce.Message() != string(tc.code)+": "+wantMsg {
				t.Fatalf("message = %q, want %q", ce.Message(), string(tc.code)+": "+wantMsg)
			}
			info := errorInfo(t, err)
			if info.GetCode() != string(tc.code) || info.GetMessage() != wantMsg {
				t.Fatalf("ErrorInfo = %v, want {%s, %s}", info, tc.code, wantMsg)
			}
			if api.ConnectCode(tc.code) != tc.want {
				t.Fatalf("ConnectCode(%s) = %v", tc.code, api.ConnectCode(tc.code))
			}
		})
	}
}

func TestInternalErrorIsGenericAndLogged(t *testing.T) {
	t.Parallel()
	exec := &fakeExecutor{fn: func(string, *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
		return nil, errors.New("nats: connection closed at jetstream.go:42")
	}}
	e := newEnv(t, api.Options{Executor: exec})
	_, err := e.command.Execute(context.Background(), withToken(invite(), adminToken))
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("code = %v, want internal", connect.CodeOf(err))
	}
	info := errorInfo(t, err)
	if info.GetCode() != api.InternalCode || !strings.Contains(info.GetMessage(), "execute InviteBillSource failed") {
		t.Fatalf("ErrorInfo = %v, want INTERNAL naming the operation", info)
	}
	if strings.Contains(err.Error(), "nats") || strings.Contains(err.Error(), ".go:") {
		t.Fatalf("client sees server internals: %v", err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "nats: connection closed") || !strings.Contains(logs, "execute InviteBillSource") {
		t.Fatalf("server log lacks the cause:\n%s", logs)
	}
}

func TestPanicIsInternalWithoutStack(t *testing.T) {
	t.Parallel()
	exec := &fakeExecutor{fn: func(string, *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
		panic("index out of range")
	}}
	e := newEnv(t, api.Options{Executor: exec})
	_, err := e.command.Execute(context.Background(), withToken(invite(), adminToken))
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("code = %v, want internal (err %v)", connect.CodeOf(err), err)
	}
	if strings.Contains(err.Error(), "goroutine") || strings.Contains(err.Error(), "index out of range") {
		t.Fatalf("client sees the panic: %v", err)
	}
	if !strings.Contains(e.logs.String(), "index out of range") {
		t.Fatalf("panic not logged:\n%s", e.logs.String())
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var actors []string
	exec := &fakeExecutor{fn: func(actor string, _ *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
		mu.Lock()
		defer mu.Unlock()
		actors = append(actors, actor)
		return &billingv1.CommandResult{AggregateId: "rt-1", Position: 7}, nil
	}}
	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"connect-json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		e := newEnv(t, api.Options{Executor: exec}, proto.opts...)
		tests := []struct {
			name     string
			header   string
			wantCode connect.Code // 0 = success
			wantInfo domain.Code
		}{
			{"missing token", "", connect.CodeUnauthenticated, domain.CodeUnauthenticated},
			{"wrong token", "Bearer blt_wrong", connect.CodeUnauthenticated, domain.CodeUnauthenticated},
			{"wrong scheme", "Basic " + adminToken, connect.CodeUnauthenticated, domain.CodeUnauthenticated},
			{"non-admin role", "Bearer " + auditorToken, connect.CodePermissionDenied, domain.CodePermissionDenied},
			{"admin token", "Bearer " + adminToken, 0, ""},
		}
		for _, tc := range tests {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				req := connect.NewRequest(invite())
				if tc.header != "" {
					req.Header().Set("Authorization", tc.header)
				}
				res, err := e.command.Execute(context.Background(), req)
				if tc.wantCode == 0 {
					if err != nil {
						t.Fatal(err)
					}
					if res.Msg.GetResult().GetAggregateId() != "rt-1" || res.Header().Get(api.PositionHeader) != "7" {
						t.Fatalf("result = %v, header %q", res.Msg, res.Header().Get(api.PositionHeader))
					}
					return
				}
				if connect.CodeOf(err) != tc.wantCode {
					t.Fatalf("code = %v, want %v (err %v)", connect.CodeOf(err), tc.wantCode, err)
				}
				if info := errorInfo(t, err); info.GetCode() != string(tc.wantInfo) || info.GetMessage() == "" {
					t.Fatalf("ErrorInfo = %v, want code %s with a message", info, tc.wantInfo)
				}
			})
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(actors) != 4 {
		t.Fatalf("executor ran %d times, want 3 (once per protocol, only with the admin token)", len(actors))
	}
	for _, a := range actors {
		if a != "admin" {
			t.Fatalf("actor = %q, want the principal name \"admin\"", a)
		}
	}
}

func TestAuthPlainHTTPGets401BeforeReadingBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Options{Executor: &fakeExecutor{}})
	res, err := e.http.Post(e.url+billingv1connect.CommandServiceExecuteProcedure, "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "UNAUTHENTICATED") {
		t.Fatalf("status %d body %s, want 401 UNAUTHENTICATED", res.StatusCode, body)
	}
	if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate = %q", res.Header.Get("WWW-Authenticate"))
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ready := false
	e := newEnv(t, api.Options{Ready: func() bool { mu.Lock(); defer mu.Unlock(); return ready }})
	get := func() (int, string) {
		t.Helper()
		res, err := e.http.Get(e.url + "/healthz") // no token: /healthz is open
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("not ready: status %d, want 503", code)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	if code, body := get(); code != http.StatusOK || body != "ok" {
		t.Fatalf("ready: %d %q, want 200 ok", code, body)
	}
	res, err := e.http.Post(e.url+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d, want 405", res.StatusCode)
	}
}

func TestExecuteWithoutCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Options{Executor: &fakeExecutor{fn: func(string, *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
		t.Error("executor called for an empty request")
		return nil, nil
	}}})
	_, err := e.command.Execute(context.Background(), withToken(&billingv1.ExecuteRequest{}, adminToken))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || errorInfo(t, err).GetCode() != "INVALID_ARGUMENT" {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
}

func TestUnwiredPortIsUnimplemented(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Options{})
	_, err := e.query.ListTransfers(context.Background(), withToken(&billingv1.ListTransfersRequest{}, adminToken))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("err = %v, want unimplemented", err)
	}
}

func TestListTransfers(t *testing.T) {
	t.Parallel()
	rows := []*billingv1.Transfer{{TransferId: "rt-1", PayerAccountId: "111111111111", SourceAccountId: "222222222222", Status: "ACCEPTED"}}

	t.Run("filters and implicit wait for the last position", func(t *testing.T) {
		t.Parallel()
		reader, waiter := &fakeReader{rows: rows}, &fakeWaiter{reached: 12}
		e := newEnv(t, api.Options{Transfers: reader, Waiter: waiter, Positions: fixedPosition(12)})
		res, err := e.query.ListTransfers(context.Background(), withToken(&billingv1.ListTransfersRequest{
			PayerAccountId: "111111111111", Status: "accepted",
		}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.GetTransfers()) != 1 || res.Msg.GetCheckpoint() != 12 {
			t.Fatalf("response = %v", res.Msg)
		}
		if reader.last.GetPayerAccountId() != "111111111111" || reader.last.GetStatus() != "ACCEPTED" {
			t.Fatalf("filter = %v, want payer and upper-case status", reader.last)
		}
		if len(waiter.asked) != 1 || waiter.asked[0] != 12 {
			t.Fatalf("waited for %v, want [12]", waiter.asked)
		}
	})

	t.Run("invalid filters", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Transfers: &fakeReader{}})
		for _, req := range []*billingv1.ListTransfersRequest{{Status: "PENDING"}, {PayerAccountId: "12"}, {SourceAccountId: "abcdefghijkl"}} {
			_, err := e.query.ListTransfers(context.Background(), withToken(req, adminToken))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("%v: err = %v, want INVALID_ARGUMENT", req, err)
			}
		}
	})

	t.Run("explicit min position not reached is unavailable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Transfers: &fakeReader{rows: rows}, Waiter: &fakeWaiter{reached: 5}, WaitTimeout: 20 * time.Millisecond})
		req := withToken(&billingv1.ListTransfersRequest{}, adminToken)
		req.Header().Set(api.MinPositionHeader, "9")
		_, err := e.query.ListTransfers(context.Background(), req)
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("err = %v, want unavailable", err)
		}
	})

	t.Run("implicit wait is best effort", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Transfers: &fakeReader{rows: rows}, Waiter: &fakeWaiter{reached: 5},
			Positions: fixedPosition(9), WaitTimeout: 20 * time.Millisecond})
		res, err := e.query.ListTransfers(context.Background(), withToken(&billingv1.ListTransfersRequest{}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.GetTransfers()) != 1 || res.Msg.GetCheckpoint() != 0 {
			t.Fatalf("response = %v, want the rows with checkpoint 0", res.Msg)
		}
	})
}

func TestSetClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

	t.Run("wall clock cannot be set", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{})
		_, err := e.admin.SetClock(context.Background(), withToken(&billingv1.SetClockRequest{Time: "2030-01-01T00:00:00Z"}, adminToken))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("err = %v, want failed_precondition", err)
		}
	})

	t.Run("simulated clock moves forward only", func(t *testing.T) {
		t.Parallel()
		c := clock.NewSimulated(start, nil)
		e := newEnv(t, api.Options{Clock: c, NATSURL: "nats://127.0.0.1:4222", Positions: fixedPosition(3)})
		res, err := e.admin.SetClock(context.Background(), withToken(&billingv1.SetClockRequest{Time: "2026-05-01"}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetNow() != "2026-05-01T00:00:00Z" {
			t.Fatalf("now = %q", res.Msg.GetNow())
		}
		_, err = e.admin.SetClock(context.Background(), withToken(&billingv1.SetClockRequest{Time: "2026-04-15T00:00:00Z"}, adminToken))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), "2026-05-01T00:00:00Z") {
			t.Fatalf("backwards: err = %v, want INVALID_ARGUMENT naming the current time", err)
		}
		_, err = e.admin.SetClock(context.Background(), withToken(&billingv1.SetClockRequest{Time: "soon"}, adminToken))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("garbage: err = %v, want INVALID_ARGUMENT", err)
		}

		info, err := e.admin.GetServerInfo(context.Background(), withToken(&billingv1.GetServerInfoRequest{}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		want := &billingv1.GetServerInfoResponse{NatsUrl: "nats://127.0.0.1:4222", Now: "2026-05-01T00:00:00Z", SimulatedClock: true, LastPosition: 3, EventStore: "jetstream"}
		if info.Msg.String() != want.String() {
			t.Fatalf("GetServerInfo = %v, want %v", info.Msg, want)
		}
	})
}

func TestMuxLeavesRoomForMoreRoutes(t *testing.T) {
	t.Parallel()
	v, _ := auth.NewVerifier()
	mux := api.NewHandler(api.Options{Verifier: v})
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") }))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "dashboard") }))
	for path, want := range map[string]int{
		"/metrics": http.StatusOK,
		"/":        http.StatusOK,
		"/healthz": http.StatusOK,
		// Connect routes keep precedence over "/" and stay behind authentication.
		billingv1connect.QueryServiceListTransfersProcedure: http.StatusUnauthorized,
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if path == billingv1connect.QueryServiceListTransfersProcedure {
			req = httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s: status %d, want %d", path, rec.Code, want)
		}
	}
}
