package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
)

type client struct {
	t     *testing.T
	cmd   billingv1connect.CommandServiceClient
	query billingv1connect.QueryServiceClient
	admin billingv1connect.AdminServiceClient
	usage billingv1connect.UsageServiceClient
}

func start(t *testing.T, dir string, extra func(*Config)) (*Server, context.CancelFunc) {
	t.Helper()
	cfg := Config{DataDir: dir, HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Store: "jetstream", ReadModel: "sqlite", Role: "all",
		SimulatedClock: "2026-08-10T12:00:00Z", Replicas: 1, MaxInbound: 1000, SweepInterval: 50 * time.Millisecond, LogLevel: "warn"}
	if extra != nil {
		extra(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, cfg, io.Discard)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return s, cancel
}

func stop(t *testing.T, s *Server, cancel context.CancelFunc) {
	t.Helper()
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func newClient(t *testing.T, s *Server, dir string) *client {
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.HTTPAddr
	opt := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			return next(ctx, r)
		}
	}))
	return &client{t: t,
		cmd:   billingv1connect.NewCommandServiceClient(http.DefaultClient, base, opt),
		query: billingv1connect.NewQueryServiceClient(http.DefaultClient, base, opt),
		admin: billingv1connect.NewAdminServiceClient(http.DefaultClient, base, opt),
		usage: billingv1connect.NewUsageServiceClient(http.DefaultClient, base, opt),
	}
}

func (c *client) do(req *billingv1.ExecuteRequest) *billingv1.CommandResult {
	c.t.Helper()
	res, err := c.cmd.Execute(context.Background(), connect.NewRequest(req))
	if err != nil {
		c.t.Fatalf("execute %v: %v", req, err)
	}
	return res.Msg.GetResult()
}

func (c *client) transfers() map[string]*billingv1.Transfer {
	c.t.Helper()
	res, err := c.query.ListTransfers(context.Background(), connect.NewRequest(&billingv1.ListTransfersRequest{}))
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]*billingv1.Transfer{}
	for _, tr := range res.Msg.GetTransfers() {
		out[tr.GetTransferId()] = tr
	}
	return out
}

func register(id string) *billingv1.ExecuteRequest {
	return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{ManagementAccountId: id, Name: "org " + id}}}
}

func inviteReq(tid, payer, source, month string) *billingv1.ExecuteRequest {
	return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{InviteBillSource: &billingv1.InviteBillSource{TransferId: tid, PayerAccountId: payer, SourceAccountId: source, StartMonth: month}}}
}

func acceptReq(tid string) *billingv1.ExecuteRequest {
	return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_AcceptTransfer{AcceptTransfer: &billingv1.AcceptTransfer{TransferId: tid}}}
}

// TestBillingd_RestartKeepsTransfersAndTheReadModelCatchesUp runs the walk-through
// against a real billingd (embedded NATS, SQLite), restarts it on the same data
// dir, then deletes the read model and restarts again: every transfer is kept
// and the read model is rebuilt from the events.
func TestBillingd_RestartKeepsTransfersAndTheReadModelCatchesUp(t *testing.T) {
	dir := t.TempDir()
	s, cancel := start(t, dir, nil)
	if s.AdminToken == "" {
		t.Fatal("first start did not create an admin token")
	}
	c := newClient(t, s, dir)
	for _, id := range []string{"111111111111", "222222222222", "333333333333"} {
		c.do(register(id))
	}
	c.do(inviteReq("rt-1", "111111111111", "222222222222", "2026-09"))
	c.do(acceptReq("rt-1"))
	c.do(inviteReq("rt-2", "111111111111", "333333333333", "2026-09"))
	got := c.transfers()
	if got["rt-1"].GetStatus() != "ACCEPTED" || got["rt-2"].GetStatus() != "REQUESTED" || got["rt-1"].GetStartTime() != "2026-09-01T00:00:00Z" {
		t.Fatalf("before restart: %v", got)
	}
	stop(t, s, cancel)

	s, cancel = start(t, dir, nil)
	if s.AdminToken != "" {
		t.Fatal("second start created a new admin token")
	}
	c = newClient(t, s, dir)
	// The simulated clock survived the restart.
	info, err := c.admin.SetClock(context.Background(), connect.NewRequest(&billingv1.SetClockRequest{Time: "2026-08-20T00:00:00Z"}))
	if err != nil || info.Msg.GetNow() != "2026-08-20T00:00:00Z" {
		t.Fatalf("clock set: %v %v", info, err)
	}
	if _, err := c.admin.SetClock(context.Background(), connect.NewRequest(&billingv1.SetClockRequest{Time: "2026-08-19T00:00:00Z"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("clock moved back: %v", err)
	}
	got = c.transfers()
	if len(got) != 2 || got["rt-1"].GetStatus() != "ACCEPTED" {
		t.Fatalf("after restart: %v", got)
	}
	// The sweeper expires rt-2 (deadline 2026-08-25T12:00Z) once the clock passes it.
	if _, err := c.admin.SetClock(context.Background(), connect.NewRequest(&billingv1.SetClockRequest{Time: "2026-08-26T00:00:00Z"})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.transfers()["rt-2"].GetStatus() != "EXPIRED" {
		if time.Now().After(deadline) {
			t.Fatalf("rt-2 not expired by the sweeper: %v", c.transfers()["rt-2"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop(t, s, cancel)

	// Drop the read model: it is rebuilt from the events at the next start.
	for _, f := range []string{"readmodel.db", "readmodel.db-wal", "readmodel.db-shm"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	s, cancel = start(t, dir, nil)
	defer stop(t, s, cancel)
	c = newClient(t, s, dir)
	got = c.transfers()
	if len(got) != 2 || got["rt-1"].GetStatus() != "ACCEPTED" || got["rt-2"].GetStatus() != "EXPIRED" {
		t.Fatalf("after rebuild: %v", got)
	}
	// And the ledger still enforces T4 from the events, not the read model.
	_, err = c.cmd.Execute(context.Background(), connect.NewRequest(inviteReq("rt-3", "333333333333", "222222222222", "2026-10")))
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("T4 after rebuild: %v", err)
	}
}
