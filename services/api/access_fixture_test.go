package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The access world (DESIGN §5): a real ledger behind the real API (in-memory
// event store, command pipeline, directory, usage writer, projections into
// SQLite), set up through the API with real tokens of every role.
//
//   - payer P (111111111111, member 111111111112) paid for source S
//     (222222222222, member 222222222223) in 2026-09 only: S withdrew the
//     transfer at the end of September (A3);
//   - payer Q (333333333333) pays for source T (444444444444, member
//     444444444445) from 2026-09;
//   - usage of September for every organization, and of October for S;
//   - P and Q closed September (invoices, tax), P paid part of it;
//   - billing views: P's bv-p-s (S's member account, granted to S) and
//     bv-p-all (not granted); Q's bv-q-t (T's member account, granted to T).
const (
	acctP  = "111111111111"
	acctP2 = "111111111112"
	acctQ  = "333333333333"
	acctS  = "222222222222"
	acctS2 = "222222222223"
	acctT  = "444444444444"
	acctT2 = "444444444445"
)

// Principals of the access world, in the order the table runs them.
var principals = []string{"admin", "auditor", "ingest", "P", "Q", "S", "T"}

// accountsOf are each principal's own accounts.
var accountsOf = map[string][]string{
	"P": {acctP, acctP2},
	"Q": {acctQ},
	"S": {acctS, acctS2},
	"T": {acctT, acctT2},
}

// accessFixture is the running access world.
type accessFixture struct {
	url     string
	http    *http.Client
	store   eventstore.Store
	clock   *clock.Simulated
	tokens  map[string]string // principal → bearer token
	command billingv1connect.CommandServiceClient
	query   billingv1connect.QueryServiceClient
	usage   billingv1connect.UsageServiceClient
	admin   billingv1connect.AdminServiceClient
	close   func()
}

var (
	fixtureOnce sync.Once
	fixture     *accessFixture
	fixtureErr  error
)

// TestMain stops the access world after the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		fixture.close()
	}
	os.Exit(code)
}

// accessWorld returns the shared access world, built on first use.
func accessWorld(tb testing.TB) *accessFixture {
	tb.Helper()
	fixtureOnce.Do(func() { fixture, fixtureErr = newAccessWorld() })
	if fixtureErr != nil {
		tb.Fatalf("access world: %v", fixtureErr)
	}
	return fixture
}

// dlAdapter is billingd's dead-letter port, reduced to what authorization needs.
type dlAdapter struct{ db *readmodel.DB }

func (d dlAdapter) ListDeadLetters(ctx context.Context, reason string) (*billingv1.ListDeadLettersResponse, error) {
	return d.db.ListDeadLetters(ctx, reason)
}

func (d dlAdapter) RedriveDeadLetters(ctx context.Context, _ string, ids []string) (*billingv1.RedriveDeadLettersResponse, error) {
	if _, err := d.db.DeadLetterRecords(ctx, ids); err != nil {
		return nil, err
	}
	return &billingv1.RedriveDeadLettersResponse{}, nil
}

type billableAdapter struct{ db *readmodel.DB }

func (b billableAdapter) ReportBillable(ctx context.Context, r *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	return b.db.ReportBillable(ctx, r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId())
}

func (b billableAdapter) MonthDigest(ctx context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	return b.db.MonthDigest(ctx, month)
}

type proformaAdapter struct{ db *readmodel.DB }

func (p proformaAdapter) ReportProforma(ctx context.Context, r *billingv1.ReportProformaRequest) (*billingv1.ReportProformaResponse, error) {
	return p.db.ReportProforma(ctx, r.GetMonth(), r.GetPayerAccountId(), r.GetBillingGroupId(), r.GetAccountId())
}

func (p proformaAdapter) ReportCost(ctx context.Context, r *billingv1.ReportCostRequest) (*billingv1.ReportCostResponse, error) {
	return p.db.ReportCost(ctx, r.GetMonth(), r.GetPayerAccountId())
}

type transfersAdapter struct{ db *readmodel.DB }

func (t transfersAdapter) ListTransfers(ctx context.Context, f *billingv1.ListTransfersRequest) ([]*billingv1.Transfer, error) {
	return t.db.ListTransfers(ctx, readmodel.TransferFilter{PayerAccountID: f.GetPayerAccountId(), SourceAccountID: f.GetSourceAccountId(), Status: f.GetStatus()})
}

// bearer sets the Authorization header of a request.
func bearer[T any](msg *T, token string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	return req
}

func newAccessWorld() (_ *accessFixture, err error) {
	dir, err := os.MkdirTemp("", "billing-access-*")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var srv *httptest.Server
	var db *readmodel.DB
	closeAll := func() {
		if srv != nil {
			srv.Close()
		}
		cancel()
		wg.Wait()
		if db != nil {
			_ = db.Close()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := memstore.New()
	clk := clock.NewSimulated(time.Date(2026, 8, 10, 12, 0, 0, 0, time.UTC), nil)
	if db, err = readmodel.OpenSQLite(filepath.Join(dir, "readmodel.db")); err != nil {
		return nil, err
	}
	const adminToken = "blt_access-admin"
	verifier, err := auth.NewVerifier(auth.TokenRecord{Name: auth.AdminName, Role: auth.RoleAdmin, SHA256: auth.HashToken(adminToken)})
	if err != nil {
		return nil, err
	}
	directory := commands.NewDirectory(store)
	var runners []api.Waiter
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(ctx) }()
	}
	for _, p := range []projections.Projection{projections.Transfers{}, projections.Usage{}, projections.Proforma{}, projections.Invoices{}, projections.Payments{}} {
		r := projections.NewRunner(db, store, p, projections.RunnerConfig{Logger: quiet})
		runners = append(runners, r)
		run(r.Run)
	}
	tokensLoaded := make(chan struct{})
	run(func(ctx context.Context) error { return verifier.Follow(ctx, store, func() { close(tokensLoaded) }) })
	run(directory.Run)
	<-tokensLoaded
	<-directory.Ready()
	writer := commands.NewUsageWriter(store, clk, directory, commands.UsageWriterOptions{})
	srv = httptest.NewServer(api.NewHandler(api.Options{
		Executor:    commands.New(store, clk, commands.Options{}),
		Transfers:   transfersAdapter{db},
		Billable:    billableAdapter{db},
		Proforma:    proformaAdapter{db},
		Invoices:    db,
		Usage:       writer,
		Malformed:   writer,
		DeadLetters: dlAdapter{db},
		Waiter:      waitAll(runners),
		Positions:   store,
		Clock:       clk,
		NATSURL:     "nats://127.0.0.1:4222",
		Verifier:    verifier,
		Ledger:      directory,
		Metrics:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "billing_up 1\n") }),
		Logger:      quiet,
	}))
	f := &accessFixture{
		url: srv.URL, http: srv.Client(), store: store, clock: clk,
		tokens:  map[string]string{"admin": adminToken},
		command: billingv1connect.NewCommandServiceClient(srv.Client(), srv.URL),
		query:   billingv1connect.NewQueryServiceClient(srv.Client(), srv.URL),
		usage:   billingv1connect.NewUsageServiceClient(srv.Client(), srv.URL),
		admin:   billingv1connect.NewAdminServiceClient(srv.Client(), srv.URL),
		close:   closeAll,
	}
	if err := f.populate(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// exec runs commands as a principal; every one must succeed.
func (f *accessFixture) exec(ctx context.Context, who string, cmds ...string) error {
	for _, line := range cmds {
		req := &billingv1.ExecuteRequest{}
		if err := protojson.Unmarshal([]byte(line), req); err != nil {
			return fmt.Errorf("%s: %w", line, err)
		}
		if _, err := f.command.Execute(ctx, bearer(req, f.tokens[who])); err != nil {
			return fmt.Errorf("%s as %s: %w", line, who, err)
		}
	}
	return nil
}

func (f *accessFixture) populate(ctx context.Context) error {
	if err := f.exec(ctx, "admin",
		`{"register_organization":{"management_account_id":"111111111111","name":"P","member_account_ids":["111111111112"]}}`,
		`{"register_organization":{"management_account_id":"333333333333","name":"Q"}}`,
		`{"register_organization":{"management_account_id":"222222222222","name":"S","member_account_ids":["222222222223"]}}`,
		`{"register_organization":{"management_account_id":"444444444444","name":"T","member_account_ids":["444444444445"]}}`,
		`{"set_seller_of_record":{"country":"US","seller":"Amazon Web Services, Inc.","default_currency":"USD"}}`,
		`{"set_tax_rate":{"jurisdiction":"US-WA","rate_percentage":"10","effective_from":"2026-01-01"}}`,
	); err != nil {
		return err
	}
	// Tokens of every role, issued through the API.
	for who, spec := range map[string][2]string{
		"auditor": {auth.RoleAuditor, ""}, "ingest": {auth.RoleIngest, ""},
		"P": {auth.RolePayer, acctP}, "Q": {auth.RolePayer, acctQ},
		"S": {auth.RoleSource, acctS}, "T": {auth.RoleSource, acctT},
	} {
		res, err := f.admin.CreateToken(ctx, bearer(&billingv1.CreateTokenRequest{Role: spec[0], AccountId: spec[1], Name: "token-" + who}, f.tokens["admin"]))
		if err != nil {
			return fmt.Errorf("create the %s token: %w", who, err)
		}
		f.tokens[who] = res.Msg.GetToken()
	}
	// The payers and sources act for themselves (scoped Execute).
	steps := []struct {
		who  string
		cmds []string
	}{
		{"P", []string{
			`{"invite_bill_source":{"transfer_id":"rt-ps","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}}`,
			`{"create_pricing_rule":{"pricing_rule_id":"pr-p","owner_account_id":"111111111111","name":"p","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}}`,
			`{"set_tax_settings":{"account_id":"111111111111","legal_name":"P Inc","country":"US","region":"WA"}}`,
			`{"set_payment_profile":{"payer_account_id":"111111111111","seller":"Amazon Web Services, Inc.","currency":"USD","payment_method":"CARD"}}`,
		}},
		{"Q", []string{
			`{"invite_bill_source":{"transfer_id":"rt-qt","payer_account_id":"333333333333","source_account_id":"444444444444","start_month":"2026-09"}}`,
			`{"set_tax_settings":{"account_id":"333333333333","legal_name":"Q Inc","country":"US","region":"WA"}}`,
			`{"set_payment_profile":{"payer_account_id":"333333333333","seller":"Amazon Web Services, Inc.","currency":"USD","payment_method":"CARD"}}`,
		}},
		{"S", []string{
			`{"accept_transfer":{"transfer_id":"rt-ps"}}`,
			`{"withdraw_transfer":{"transfer_id":"rt-ps","end_month":"2026-09","withdrawn_by":"222222222222"}}`,
		}},
		{"T", []string{`{"accept_transfer":{"transfer_id":"rt-qt"}}`}},
	}
	for _, s := range steps {
		if err := f.exec(ctx, s.who, s.cmds...); err != nil {
			return err
		}
	}
	if _, err := f.admin.SetClock(ctx, bearer(&billingv1.SetClockRequest{Time: "2026-10-15T00:00:00Z"}, f.tokens["admin"])); err != nil {
		return err
	}
	day := func(d string) *timestamppb.Timestamp {
		t, _ := time.Parse(time.DateOnly, d)
		return timestamppb.New(t)
	}
	rec := func(id, account, date, service, cost string) *billingv1.UsageRecord {
		return &billingv1.UsageRecord{UsageId: id, AccountId: account, ChargePeriodStart: day(date), ChargePeriodEnd: timestamppb.New(day(date).AsTime().Add(time.Hour)),
			Service: service, UsageType: "BoxUsage", Quantity: "1", ListUnitPrice: cost, BilledCost: cost, Currency: "USD"}
	}
	res, err := f.usage.IngestBatch(ctx, bearer(&billingv1.IngestBatchRequest{Records: []*billingv1.UsageRecord{
		rec("u-s9a", acctS2, "2026-09-03", "AmazonEC2", "10"),
		rec("u-s9b", acctS, "2026-09-04", "AmazonS3", "2"),
		rec("u-s10", acctS2, "2026-10-02", "AmazonEC2", "3"),
		rec("u-t9", acctT2, "2026-09-05", "AmazonEC2", "7"),
		rec("u-p9", acctP2, "2026-09-06", "AmazonEC2", "5"),
		rec("u-q9", acctQ, "2026-09-06", "AmazonEC2", "4"),
	}}, f.tokens["ingest"]))
	if err != nil {
		return err
	}
	if res.Msg.GetAccepted() != 6 {
		return fmt.Errorf("usage: %v", res.Msg)
	}
	for _, s := range []struct {
		who  string
		cmds []string
	}{
		{"P", []string{
			`{"create_billing_view":{"billing_view_id":"bv-p-s","owner_account_id":"111111111111","type":"CUSTOM","name":"S's member account","filter":{"account_ids":["222222222223"]}}}`,
			`{"create_billing_view":{"billing_view_id":"bv-p-all","owner_account_id":"111111111111","type":"CUSTOM","name":"all"}}`,
			`{"grant_billing_view":{"billing_view_id":"bv-p-s","account_id":"222222222222"}}`,
			`{"close_month":{"payer_account_id":"111111111111","month":"2026-09"}}`,
			`{"record_payment":{"payment_id":"pay-p","payer_account_id":"111111111111","amount":"1.00","currency":"USD","method":"CARD"}}`,
		}},
		{"Q", []string{
			`{"create_billing_view":{"billing_view_id":"bv-q-t","owner_account_id":"333333333333","type":"CUSTOM","filter":{"account_ids":["444444444445"]}}}`,
			`{"grant_billing_view":{"billing_view_id":"bv-q-t","account_id":"444444444444"}}`,
			`{"close_month":{"payer_account_id":"333333333333","month":"2026-09"}}`,
		}},
	} {
		if err := f.exec(ctx, s.who, s.cmds...); err != nil {
			return err
		}
	}
	// The read models reflect everything before the tests read them.
	last, err := f.store.LastPosition(ctx)
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	req := bearer(&billingv1.ListTransfersRequest{}, f.tokens["admin"])
	req.Header().Set(api.MinPositionHeader, fmt.Sprint(last))
	if _, err := f.query.ListTransfers(wctx, req); err != nil {
		return fmt.Errorf("wait for the read models: %w", err)
	}
	return nil
}

// isDenied reports whether err is the PERMISSION_DENIED answer of the
// authorization, with an ErrorInfo naming the procedure's method.
func isDenied(err error, method string) (bool, string) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodePermissionDenied {
		return false, fmt.Sprintf("not PermissionDenied: %v", err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if info, ok := v.(*billingv1.ErrorInfo); ok {
			if info.GetCode() != string(domain.CodePermissionDenied) || !strings.Contains(info.GetMessage(), method) {
				return false, fmt.Sprintf("ErrorInfo %v does not name %s", info, method)
			}
			return true, ""
		}
	}
	return false, "no ErrorInfo detail"
}
