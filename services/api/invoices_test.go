package api_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The read model itself is the InvoiceReader billingd wires.
var _ api.InvoiceReader = (*readmodel.DB)(nil)

// fakeInvoices returns canned answers and remembers the requests.
type fakeInvoices struct {
	mu       sync.Mutex
	invoices *billingv1.ReportInvoicesRequest
	payments *billingv1.ReportPaymentsRequest
	tax      *billingv1.ReportTaxRequest
	calls    int
}

func (f *fakeInvoices) ReportInvoices(_ context.Context, req *billingv1.ReportInvoicesRequest) (*billingv1.ReportInvoicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invoices, f.calls = req, f.calls+1
	return &billingv1.ReportInvoicesResponse{Rows: []*billingv1.InvoiceRow{{InvoiceId: "INV-1", Total: "1.00"}}}, nil
}

func (f *fakeInvoices) ReportPayments(_ context.Context, req *billingv1.ReportPaymentsRequest) (*billingv1.ReportPaymentsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.payments, f.calls = req, f.calls+1
	return &billingv1.ReportPaymentsResponse{Invoices: []*billingv1.InvoicePayment{{InvoiceId: "INV-1", Issued: "1.00"}}}, nil
}

func (f *fakeInvoices) ReportTax(_ context.Context, req *billingv1.ReportTaxRequest) (*billingv1.ReportTaxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tax, f.calls = req, f.calls+1
	return &billingv1.ReportTaxResponse{Rows: []*billingv1.TaxRow{{InvoiceId: "INV-1", Tax: "0.10"}}}, nil
}

func (f *fakeInvoices) InvoiceDigests(_ context.Context, month string) ([]*billingv1.ReadModelDigest, error) {
	return []*billingv1.ReadModelDigest{{Name: "invoices", Digest: "i-" + month, Checkpoint: 3}, {Name: "tax"}, {Name: "payments"}}, nil
}

// fakeDigests is a BillableReader with one digest.
type fakeDigests struct{}

func (fakeDigests) ReportBillable(context.Context, *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	return &billingv1.ReportBillableResponse{}, nil
}

func (fakeDigests) MonthDigest(_ context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	return &billingv1.MonthDigestResponse{Digests: []*billingv1.ReadModelDigest{{Name: "billable", Digest: "b-" + month}}, Checkpoint: 8}, nil
}

func TestReportInvoicesPaymentsTax(t *testing.T) {
	t.Parallel()

	t.Run("trim the filters and wait for the last position", func(t *testing.T) {
		t.Parallel()
		f, w := &fakeInvoices{}, &fakeWaiter{reached: 8}
		e := newEnv(t, api.Options{Invoices: f, Waiter: w, Positions: fixedPosition(8)})
		ctx := context.Background()
		inv, err := e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{
			Month: " 2026-09", PayerAccountId: "111111111111 ", SourceAccountId: " 333333333333"}, adminToken))
		if err != nil || inv.Msg.GetCheckpoint() != 8 || inv.Msg.GetRows()[0].GetTotal() != "1.00" {
			t.Fatalf("ReportInvoices = %v, %v", inv, err)
		}
		pay, err := e.query.ReportPayments(ctx, withToken(&billingv1.ReportPaymentsRequest{PayerAccountId: " 111111111111"}, adminToken))
		if err != nil || pay.Msg.GetCheckpoint() != 8 || pay.Msg.GetInvoices()[0].GetIssued() != "1.00" {
			t.Fatalf("ReportPayments = %v, %v", pay, err)
		}
		tax, err := e.query.ReportTax(ctx, withToken(&billingv1.ReportTaxRequest{Month: "2026-09 "}, adminToken))
		if err != nil || tax.Msg.GetCheckpoint() != 8 || tax.Msg.GetRows()[0].GetTax() != "0.10" {
			t.Fatalf("ReportTax = %v, %v", tax, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if !proto.Equal(f.invoices, &billingv1.ReportInvoicesRequest{Month: "2026-09", PayerAccountId: "111111111111", SourceAccountId: "333333333333"}) {
			t.Errorf("invoices request reaching the reader = %v", f.invoices)
		}
		if !proto.Equal(f.payments, &billingv1.ReportPaymentsRequest{PayerAccountId: "111111111111"}) {
			t.Errorf("payments request reaching the reader = %v", f.payments)
		}
		if !proto.Equal(f.tax, &billingv1.ReportTaxRequest{Month: "2026-09"}) {
			t.Errorf("tax request reaching the reader = %v", f.tax)
		}
		if !slices.Equal(w.asked, []uint64{8, 8, 8}) {
			t.Errorf("waited for %v, want [8 8 8]", w.asked)
		}
	})

	t.Run("invalid requests name the value and never reach the reader", func(t *testing.T) {
		t.Parallel()
		f := &fakeInvoices{}
		e := newEnv(t, api.Options{Invoices: f})
		ctx := context.Background()
		check := func(what string, err error, want string) {
			t.Helper()
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), want) {
				t.Errorf("%s: err = %v, want INVALID_ARGUMENT containing %q", what, err, want)
			}
		}
		_, err := e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{}, adminToken))
		check("invoices without month", err, "month is required")
		_, err = e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{Month: "2026-13"}, adminToken))
		check("invoices bad month", err, `month "2026-13"`)
		_, err = e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{Month: "2026-09", SourceAccountId: "33"}, adminToken))
		check("invoices bad source", err, `source_account_id "33"`)
		_, err = e.query.ReportPayments(ctx, withToken(&billingv1.ReportPaymentsRequest{Month: "Sept"}, adminToken))
		check("payments bad month", err, `month "Sept"`)
		_, err = e.query.ReportPayments(ctx, withToken(&billingv1.ReportPaymentsRequest{PayerAccountId: "x"}, adminToken))
		check("payments bad payer", err, `payer_account_id "x"`)
		_, err = e.query.ReportTax(ctx, withToken(&billingv1.ReportTaxRequest{PayerAccountId: "111111111111"}, adminToken))
		check("tax without month", err, "month is required")
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.calls != 0 {
			t.Fatalf("reader called %d times", f.calls)
		}
	})

	t.Run("unwired, they are unimplemented", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{})
		ctx := context.Background()
		_, err1 := e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{Month: "2026-09"}, adminToken))
		_, err2 := e.query.ReportPayments(ctx, withToken(&billingv1.ReportPaymentsRequest{}, adminToken))
		_, err3 := e.query.ReportTax(ctx, withToken(&billingv1.ReportTaxRequest{Month: "2026-09"}, adminToken))
		for _, err := range []error{err1, err2, err3} {
			if connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Errorf("err = %v, want UNIMPLEMENTED", err)
			}
		}
	})

	t.Run("month digests include the invoice read models", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Billable: fakeDigests{}, Invoices: &fakeInvoices{}})
		res, err := e.query.MonthDigest(context.Background(), withToken(&billingv1.MonthDigestRequest{Month: "2026-09"}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range res.Msg.GetDigests() {
			names = append(names, d.GetName())
		}
		if !slices.Equal(names, []string{"billable", "invoices", "tax", "payments"}) || res.Msg.GetDigests()[1].GetDigest() != "i-2026-09" ||
			res.Msg.GetDigests()[1].GetCheckpoint() != 3 || res.Msg.GetCheckpoint() != 8 {
			t.Fatalf("MonthDigest = %v", res.Msg)
		}
	})
}

// TestInvoiceQueriesOnTheReadModel serves the real read model, filled by
// the invoices and payments projections from hand-built events, and reads
// it over Connect: one USD invoice of 110.00 (100.00 + 10 % tax), part paid.
func TestInvoiceQueriesOnTheReadModel(t *testing.T) {
	t.Parallel()
	const (
		payer  = "111111111111"
		source = "333333333333"
		inv    = "INV-202609-111111111111-0123456789"
	)
	ctx := context.Background()
	store := memstore.New()
	at := time.Date(2026, 10, 2, 9, 0, 0, 0, time.UTC)
	ev := func(offset time.Duration, e *billingv1.Event) *billingv1.Event {
		e.RecordedAt, e.EventId, e.Actor = timestamppb.New(at.Add(offset)), "ev-"+offset.String(), "test"
		return e
	}
	invoice := &billingv1.Invoice{
		InvoiceId: inv, PayerAccountId: payer, Month: "2026-09", SourceAccountId: source, ReceiverAccountId: source,
		Seller: "Amazon Web Services, Inc.", Currency: "USD", InvoiceDate: "2026-10-02",
		Lines: []*billingv1.InvoiceLine{{LineNumber: 1, AccountId: source, Service: "AmazonEC2", ChargeMonth: "2026-09",
			ChargeClass: "USAGE", UsageCurrency: "USD", BilledCost: "99.996", FxRate: "1", Converted: "99.996", Amount: "100.00",
			Jurisdiction: "US-WA", UsageRecords: 3}},
		Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "US-WA", RatePercentage: "10", Taxable: "100.00", Tax: "10.00"}},
		Subtotal: "100.00", Tax: "10.00", Total: "110.00",
	}
	appendEvents := func(stream string, evs ...*billingv1.Event) {
		t.Helper()
		if _, err := store.Append(ctx, eventstore.StreamAppend{Stream: stream, Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	appendEvents(domain.MonthStream(payer, "2026-09"),
		ev(0, &billingv1.Event{Payload: &billingv1.Event_MonthClosed{MonthClosed: &billingv1.MonthClosed{
			PayerAccountId: payer, Month: "2026-09", InvoiceDate: "2026-10-02", InvoiceIds: []string{inv}, UsageRecords: 3}}}),
		ev(0, &billingv1.Event{Payload: &billingv1.Event_InvoiceIssued{InvoiceIssued: &billingv1.InvoiceIssued{Invoice: invoice}}}))
	appendEvents(domain.ReceivableStream(payer),
		ev(0, &billingv1.Event{Payload: &billingv1.Event_InvoicesPosted{InvoicesPosted: &billingv1.InvoicesPosted{
			PayerAccountId: payer, Month: "2026-09", Invoices: []*billingv1.InvoiceSummary{{InvoiceId: inv, Month: "2026-09",
				SourceAccountId: source, Seller: "Amazon Web Services, Inc.", Currency: "USD", Total: "110.00"}}}}}),
		ev(time.Hour, &billingv1.Event{Payload: &billingv1.Event_PaymentRecorded{PaymentRecorded: &billingv1.PaymentRecorded{
			PaymentId: "pay-1", PayerAccountId: payer, Amount: "80.00", Currency: "USD",
			Method: billingv1.PaymentMethod_PAYMENT_METHOD_CARD, Unapplied: "0.00",
			Allocations: []*billingv1.PaymentAllocation{{InvoiceId: inv, BillSourceAccountId: source, Amount: "80.00", OutstandingAfter: "30.00"}}}}}))

	db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	last, _ := store.LastPosition(ctx)
	var waiters []api.Waiter
	for _, p := range []projections.Projection{projections.Invoices{}, projections.Payments{}} {
		r := projections.NewRunner(db, store, p, projections.RunnerConfig{IdleInterval: time.Hour})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-done })
		waiters = append(waiters, r)
	}
	e := newEnv(t, api.Options{Invoices: db, Waiter: waitAll(waiters), Positions: store})

	res, err := e.query.ReportInvoices(ctx, withToken(&billingv1.ReportInvoicesRequest{Month: "2026-09"}, adminToken))
	if err != nil {
		t.Fatal(err)
	}
	want := &billingv1.ReportInvoicesResponse{
		Rows: []*billingv1.InvoiceRow{{InvoiceId: inv, PayerAccountId: payer, Month: "2026-09", Seller: "Amazon Web Services, Inc.",
			Currency: "USD", SourceAccountId: source, ReceiverAccountId: source, InvoiceDate: "2026-10-02",
			Lines: invoice.GetLines(), Taxes: invoice.GetTaxes(), Subtotal: "100.00", Tax: "10.00", Total: "110.00",
			Paid: "80.00", Outstanding: "30.00", Status: "PARTIALLY_PAID"}},
		Totals: []*billingv1.CurrencyTotals{{Currency: "USD", Invoices: 1, Subtotal: "100.00", Tax: "10.00", Total: "110.00",
			Paid: "80.00", Outstanding: "30.00"}},
		Checkpoint: last,
	}
	if !proto.Equal(res.Msg, want) {
		t.Fatalf("ReportInvoices\n got %s\nwant %s", prototext.Format(res.Msg), prototext.Format(want))
	}
	pay, err := e.query.ReportPayments(ctx, withToken(&billingv1.ReportPaymentsRequest{PayerAccountId: payer}, adminToken))
	if err != nil {
		t.Fatal(err)
	}
	if b := pay.Msg.GetPayerBalances(); len(b) != 1 || !proto.Equal(b[0], &billingv1.PayerBalance{PayerAccountId: payer, Currency: "USD",
		Issued: "110.00", Paid: "80.00", Outstanding: "30.00", UnappliedCredit: "0.00", CreditNotes: "0.00", Balance: "30.00"}) {
		t.Fatalf("payer balances = %v", b)
	}
	if p := pay.Msg.GetPayments(); len(p) != 1 || p[0].GetMethod() != "CARD" || p[0].GetReceivedAt() != "2026-10-02T10:00:00Z" ||
		len(p[0].GetAllocations()) != 1 || p[0].GetAllocations()[0].GetOutstandingAfter() != "30.00" {
		t.Fatalf("payments = %v", p)
	}
	tax, err := e.query.ReportTax(ctx, withToken(&billingv1.ReportTaxRequest{Month: "2026-09", PayerAccountId: payer}, adminToken))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(tax.Msg, &billingv1.ReportTaxResponse{
		Rows: []*billingv1.TaxRow{{InvoiceId: inv, PayerAccountId: payer, SourceAccountId: source, Currency: "USD",
			Jurisdiction: "US-WA", RatePercentage: "10", Taxable: "100.00", Tax: "10.00"}},
		Totals:     []*billingv1.TaxTotals{{Currency: "USD", Taxable: "100.00", Tax: "10.00"}},
		Checkpoint: last,
	}) {
		t.Fatalf("ReportTax = %s", prototext.Format(tax.Msg))
	}
}

// waitAll waits for every runner.
type waitAll []api.Waiter

func (w waitAll) WaitFor(ctx context.Context, position uint64) error {
	for _, x := range w {
		if err := x.WaitFor(ctx, position); err != nil {
			return err
		}
	}
	return nil
}
