package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	ledgerjs "github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// A hand-built September close of payer 111111111111 (DESIGN X5, M1) and its
// payments (Y2): invoice INV-A1 in USD for source 333333333333 (two lines,
// 10.1 % US-WA tax: 123.45 + 12.47 = 135.92), INV-A2 in EUR for source
// 444444444444's invoice unit (reverse charge: 45.11), then
//
//	pay-1  USD 100.00  A1 100.00 → 35.92 outstanding       (5 Oct)
//	pay-2  USD  50.00  A1 35.92 → 0.00, 14.08 unapplied    (10 Oct)
//	refund of pay-2: 4.08, leaving 10.00 unapplied          (11 Oct)
const (
	tPayer  = "111111111111"
	tSrcX   = "333333333333"
	tSrcY   = "444444444444"
	tInvA1  = "INV-202609-111111111111-a1a1a1a1a1"
	tInvA2  = "INV-202609-111111111111-a2a2a2a2a2"
	tSep    = "2026-09"
	tSeller = "Amazon Web Services, Inc."
)

var (
	tClose  = time.Date(2026, 10, 2, 9, 0, 0, 0, time.UTC)
	tPay1   = time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)
	tPay2   = time.Date(2026, 10, 10, 12, 0, 0, 0, time.UTC)
	tRefund = time.Date(2026, 10, 11, 12, 0, 0, 0, time.UTC)
)

func testInvoices() []*billingv1.Invoice {
	line := func(n uint32, account, service, amount, jurisdiction, reason string) *billingv1.InvoiceLine {
		return &billingv1.InvoiceLine{LineNumber: n, AccountId: account, Service: service, ChargeMonth: tSep, ChargeClass: "USAGE",
			UsageCurrency: "USD", BilledCost: amount, FxRate: "1", Converted: amount, Amount: amount, Jurisdiction: jurisdiction,
			TaxReason: reason, UsageRecords: 2,
			ChargePeriodStart: timestamppb.New(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)),
			ChargePeriodEnd:   timestamppb.New(time.Date(2026, 9, 30, 23, 0, 0, 0, time.UTC))}
	}
	eur := line(1, "444444444401", "AmazonS3", "45.11", "DE", "REVERSE_CHARGE")
	eur.BilledCost, eur.FxRate, eur.FxEffectiveDate, eur.Converted = "50.123", "0.9", "2026-10-01", "45.1107"
	return []*billingv1.Invoice{
		{InvoiceId: tInvA1, PayerAccountId: tPayer, Month: tSep, SourceAccountId: tSrcX, ReceiverAccountId: tSrcX,
			Seller: tSeller, Currency: "USD", InvoiceDate: "2026-10-02", BillToLegalName: "Partner Co",
			Lines: []*billingv1.InvoiceLine{line(1, "333333333301", "AmazonEC2", "100.00", "US-WA", ""),
				line(2, "333333333302", "AmazonS3", "23.45", "US-WA", "")},
			Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "US-WA", RatePercentage: "10.1", RateEffectiveFrom: "2026-01-01", Taxable: "123.45", Tax: "12.47"}},
			Subtotal: "123.45", Tax: "12.47", Total: "135.92", PaymentMethod: "BANK_TRANSFER"},
		{InvoiceId: tInvA2, PayerAccountId: tPayer, Month: tSep, SourceAccountId: tSrcY, InvoiceUnitId: "iu-berlin",
			InvoiceUnitName: "Berlin", ReceiverAccountId: "444444444401", Seller: "Amazon Web Services EMEA SARL", Currency: "EUR",
			InvoiceDate: "2026-10-02", Lines: []*billingv1.InvoiceLine{eur},
			Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "DE", Reason: "REVERSE_CHARGE", RatePercentage: "0", Taxable: "45.11", Tax: "0.00"}},
			Subtotal: "45.11", Tax: "0.00", Total: "45.11"},
	}
}

var testEventSeq struct {
	sync.Mutex
	n int
}

func testEvent(at time.Time, ev *billingv1.Event) *billingv1.Event {
	testEventSeq.Lock()
	testEventSeq.n++
	n := testEventSeq.n
	testEventSeq.Unlock()
	ev.RecordedAt, ev.Actor, ev.EventId = timestamppb.New(at), "test", "inv-test-"+time.Duration(n).String()
	return ev
}

// appendInvoiceEvents appends the close, the posting, the payments and the
// refund to store and returns its last position.
func appendInvoiceEvents(t *testing.T, store eventstore.Store) uint64 {
	t.Helper()
	ctx := context.Background()
	invs := testInvoices()
	closed := &billingv1.MonthClosed{PayerAccountId: tPayer, Month: tSep, InvoiceDate: "2026-10-02", UsageRecords: 6,
		InvoiceIds: []string{tInvA1, tInvA2}}
	month := []*billingv1.Event{testEvent(tClose, &billingv1.Event{Payload: &billingv1.Event_MonthClosed{MonthClosed: closed}})}
	post := &billingv1.InvoicesPosted{PayerAccountId: tPayer, Month: tSep}
	for _, inv := range invs {
		month = append(month, testEvent(tClose, &billingv1.Event{Payload: &billingv1.Event_InvoiceIssued{InvoiceIssued: &billingv1.InvoiceIssued{Invoice: inv}}}))
		post.Invoices = append(post.Invoices, &billingv1.InvoiceSummary{InvoiceId: inv.GetInvoiceId(), Month: tSep,
			SourceAccountId: inv.GetSourceAccountId(), InvoiceUnitId: inv.GetInvoiceUnitId(), Seller: inv.GetSeller(),
			Currency: inv.GetCurrency(), Total: inv.GetTotal()})
	}
	pay := func(at time.Time, id, amount, unapplied string, method billingv1.PaymentMethod, allocs ...*billingv1.PaymentAllocation) *billingv1.Event {
		return testEvent(at, &billingv1.Event{Payload: &billingv1.Event_PaymentRecorded{PaymentRecorded: &billingv1.PaymentRecorded{
			PaymentId: id, PayerAccountId: tPayer, Amount: amount, Currency: "USD", Method: method, Allocations: allocs,
			Unapplied: unapplied, ReceivedAt: timestamppb.New(at)}}})
	}
	receivable := []*billingv1.Event{
		testEvent(tClose, &billingv1.Event{Payload: &billingv1.Event_InvoicesPosted{InvoicesPosted: post}}),
		pay(tPay1, "pay-1", "100.00", "0.00", billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER,
			&billingv1.PaymentAllocation{InvoiceId: tInvA1, BillSourceAccountId: tSrcX, Amount: "100.00", OutstandingAfter: "35.92"}),
		pay(tPay2, "pay-2", "50.00", "14.08", billingv1.PaymentMethod_PAYMENT_METHOD_CARD,
			&billingv1.PaymentAllocation{InvoiceId: tInvA1, BillSourceAccountId: tSrcX, Amount: "35.92", OutstandingAfter: "0.00"}),
		testEvent(tRefund, &billingv1.Event{Payload: &billingv1.Event_PaymentRefunded{PaymentRefunded: &billingv1.PaymentRefunded{
			PaymentId: "pay-2", PayerAccountId: tPayer, Amount: "4.08", Currency: "USD", UnappliedAfter: "10.00"}}}),
	}
	for _, a := range []eventstore.StreamAppend{
		{Stream: domain.MonthStream(tPayer, tSep), Events: month},
		{Stream: domain.ReceivableStream(tPayer), Events: receivable},
	} {
		if _, err := store.Append(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	last, err := store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// liveDigests is billingd's BillableReader over a real read model: the
// usage, pro forma and cost digests (the invoice ones come from the
// Invoices port).
type liveDigests struct{ db *readmodel.DB }

func (l liveDigests) ReportBillable(ctx context.Context, r *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	return l.db.ReportBillable(ctx, r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId())
}

func (l liveDigests) MonthDigest(ctx context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	res, err := l.db.MonthDigest(ctx, month)
	if err != nil {
		return nil, err
	}
	pf, err := l.db.ProformaDigests(ctx, month)
	if err != nil {
		return nil, err
	}
	res.Digests = append(res.Digests, pf...)
	return res, nil
}

// waiters waits for every runner.
type waiters []*projections.Runner

func (w waiters) WaitFor(ctx context.Context, position uint64) error {
	for _, r := range w {
		if err := r.WaitFor(ctx, position); err != nil {
			return err
		}
	}
	return nil
}

// invoiceServer runs the invoices and payments projections of store into a
// real SQLite read model and serves it as billingd does; it returns the URL
// and the database.
func invoiceServer(t *testing.T, store eventstore.Store) (string, *readmodel.DB) {
	t.Helper()
	db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var ws waiters
	for _, p := range []projections.Projection{projections.Invoices{}, projections.Payments{}} {
		r := projections.NewRunner(db, store, p, projections.RunnerConfig{IdleInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		ws = append(ws, r)
	}
	return newServer(t, api.Options{Invoices: db, Billable: liveDigests{db}, Waiter: ws, Positions: store}), db
}

func TestReportInvoices(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	appendInvoiceEvents(t, store)
	url, _ := invoiceServer(t, store)

	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "invoices", "--month", tSep, "--lines")
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := `INVOICE                             PAYER         SOURCE        UNIT                RECEIVER      SELLER                         DATE        CURRENCY  SUBTOTAL  TAX    TOTAL   PAID    OUTSTANDING  STATUS
INV-202609-111111111111-a1a1a1a1a1  111111111111  333333333333  -                   333333333333  Amazon Web Services, Inc.      2026-10-02  USD       123.45    12.47  135.92  135.92  0.00         PAID
INV-202609-111111111111-a2a2a2a2a2  111111111111  444444444444  Berlin (iu-berlin)  444444444401  Amazon Web Services EMEA SARL  2026-10-02  EUR       45.11     0.00   45.11   0.00    45.11        OPEN
TOTAL                                                                                                                                        EUR       45.11     0.00   45.11   0.00    45.11
TOTAL                                                                                                                                        USD       123.45    12.47  135.92  135.92  0.00

INVOICE                             LINE  ACCOUNT       SERVICE    CHARGE_MONTH  CLASS  JURISDICTION  TAX_REASON      BILLED_COST  FX_RATE  AMOUNT
INV-202609-111111111111-a1a1a1a1a1  1     333333333301  AmazonEC2  2026-09       USAGE  US-WA         -               100.00 USD   1        100.00 USD
INV-202609-111111111111-a1a1a1a1a1  2     333333333302  AmazonS3   2026-09       USAGE  US-WA         -               23.45 USD    1        23.45 USD
INV-202609-111111111111-a2a2a2a2a2  1     444444444401  AmazonS3   2026-09       USAGE  DE            REVERSE_CHARGE  50.123 USD   0.9      45.11 EUR

INVOICE                             JURISDICTION  REASON          RATE_%  TAXABLE  TAX
INV-202609-111111111111-a1a1a1a1a1  US-WA         -               10.1    123.45   12.47
INV-202609-111111111111-a2a2a2a2a2  DE            REVERSE_CHARGE  0       45.11    0.00
`
	if stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", stdout, want)
	}

	code, stdout, stderr = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "invoices", "--month", tSep, "--source", tSrcY)
	var doc struct {
		Rows   []map[string]any `json:"rows"`
		Totals []map[string]any `json:"totals"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.Rows) != 1 || len(doc.Totals) != 1 {
		t.Fatalf("json: exit %d stdout %s stderr %s", code, stdout, stderr)
	}
	row := doc.Rows[0]
	for k, v := range map[string]string{
		"invoice_id": tInvA2, "seller": "Amazon Web Services EMEA SARL", "currency": "EUR", "source_account_id": tSrcY,
		"invoice_unit_id": "iu-berlin", "invoice_unit_name": "Berlin", "receiver_account_id": "444444444401",
		"invoice_date": "2026-10-02", "subtotal": "45.11", "tax": "0.00", "total": "45.11", "paid": "0.00",
		"outstanding": "45.11", "status": "OPEN",
	} {
		if row[k] != v {
			t.Errorf("json %s = %v, want %q", k, row[k], v)
		}
	}
	lines, _ := row["lines"].([]any)
	taxes, _ := row["taxes"].([]any)
	if len(lines) != 1 || len(taxes) != 1 {
		t.Fatalf("json lines %v taxes %v", row["lines"], row["taxes"])
	}
	l := lines[0].(map[string]any)
	if l["amount"] != "45.11" || l["fx_rate"] != "0.9" || l["converted"] != "45.1107" || l["charge_period_start"] != "2026-09-01T00:00:00Z" {
		t.Errorf("json line = %v", l)
	}
	if tx := taxes[0].(map[string]any); tx["jurisdiction"] != "DE" || tx["reason"] != "REVERSE_CHARGE" || tx["taxable"] != "45.11" || tx["tax"] != "0.00" {
		t.Errorf("json tax = %v", tx)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"report", "invoices"}, exitUsage, "missing flags: --month=YYYY-MM"},
		{[]string{"report", "invoices", "--month", "2026-13"}, 1, `INVALID_ARGUMENT: --month "2026-13" is not a month (YYYY-MM, e.g. 2026-09)`},
		{[]string{"report", "invoices", "--month", tSep, "--source", "33"}, 1, `INVALID_ARGUMENT: --source "33" is not a 12-digit account id`},
		{[]string{"report", "tax"}, exitUsage, "missing flags: --month=YYYY-MM"},
		{[]string{"report", "tax", "--month", "Sept"}, 1, `INVALID_ARGUMENT: --month "Sept" is not a month`},
		{[]string{"report", "payments", "--month", "2026-9"}, 1, `INVALID_ARGUMENT: --month "2026-9" is not a month`},
		{[]string{"report", "payments", "--payer", "abc"}, 1, `INVALID_ARGUMENT: --payer "abc" is not a 12-digit account id`},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"--server", url, "--token", testToken}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d stderr %q, want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestReportPaymentsAndTax(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	appendInvoiceEvents(t, store)
	url, _ := invoiceServer(t, store)

	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "payments", "--payer", tPayer)
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := `INVOICE                             PAYER         MONTH    SOURCE        CURRENCY  ISSUED  PAID    OUTSTANDING  STATUS  CREDIT_APPLIED  REMAINING_CREDIT
INV-202609-111111111111-a1a1a1a1a1  111111111111  2026-09  333333333333  USD       135.92  135.92  0.00         PAID    -               -
INV-202609-111111111111-a2a2a2a2a2  111111111111  2026-09  444444444444  EUR       45.11   0.00    45.11        OPEN    -               -

PAYER         CURRENCY  ISSUED  PAID    OUTSTANDING  CREDIT_NOTES  UNAPPLIED_CREDIT  BALANCE
111111111111  EUR       45.11   0.00    45.11        0.00          0.00              45.11
111111111111  USD       135.92  135.92  0.00         0.00          10.00             -10.00

PAYER         SOURCE        CURRENCY  ISSUED  PAID    OUTSTANDING  CREDIT_NOTES  BALANCE
111111111111  333333333333  USD       135.92  135.92  0.00         0.00          0.00
111111111111  444444444444  EUR       45.11   0.00    45.11        0.00          45.11

PAYMENT  PAYER         RECEIVED              METHOD         CURRENCY  AMOUNT  UNAPPLIED  REFUNDED
pay-1    111111111111  2026-10-05T12:00:00Z  BANK_TRANSFER  USD       100.00  0.00       0.00
pay-2    111111111111  2026-10-10T12:00:00Z  CARD           USD       50.00   10.00      4.08

PAYMENT  INVOICE                             SOURCE        APPLIED  OUTSTANDING_AFTER
pay-1    INV-202609-111111111111-a1a1a1a1a1  333333333333  100.00   35.92
pay-2    INV-202609-111111111111-a1a1a1a1a1  333333333333  35.92    0.00
`
	if stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", stdout, want)
	}

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "payments", "--source", tSrcY, "--month", tSep)
	var doc struct {
		Invoices       []map[string]any `json:"invoices"`
		PayerBalances  []map[string]any `json:"payer_balances"`
		SourceBalances []map[string]any `json:"source_balances"`
		Payments       []map[string]any `json:"payments"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	if len(doc.Invoices) != 1 || doc.Invoices[0]["invoice_id"] != tInvA2 || doc.Invoices[0]["issued"] != "45.11" ||
		doc.Invoices[0]["paid"] != "0.00" || doc.Invoices[0]["outstanding"] != "45.11" || doc.Invoices[0]["status"] != "OPEN" {
		t.Errorf("json invoices = %v", doc.Invoices)
	}
	if len(doc.PayerBalances) != 1 || doc.PayerBalances[0]["currency"] != "EUR" || doc.PayerBalances[0]["unapplied_credit"] != "0.00" {
		t.Errorf("json payer balances = %v", doc.PayerBalances)
	}
	if len(doc.SourceBalances) != 1 || doc.SourceBalances[0]["source_account_id"] != tSrcY || doc.SourceBalances[0]["outstanding"] != "45.11" {
		t.Errorf("json source balances = %v", doc.SourceBalances)
	}
	if len(doc.Payments) != 0 {
		t.Errorf("json payments = %v, want none (nothing was applied to %s)", doc.Payments, tInvA2)
	}

	code, stdout, stderr = runCLI(t, "", "--server", url, "--token", testToken, "report", "tax", "--month", tSep)
	if code != 0 {
		t.Fatalf("tax: exit %d stderr %q", code, stderr)
	}
	want = `INVOICE                             PAYER         SOURCE        JURISDICTION  REASON          RATE_%  CURRENCY  TAXABLE  TAX
INV-202609-111111111111-a1a1a1a1a1  111111111111  333333333333  US-WA         -               10.1    USD       123.45   12.47
INV-202609-111111111111-a2a2a2a2a2  111111111111  444444444444  DE            REVERSE_CHARGE  0       EUR       45.11    0.00
TOTAL                                                                                                 EUR       45.11    0.00
TOTAL                                                                                                 USD       123.45   12.47
`
	if stdout != want {
		t.Fatalf("tax table:\n%s\nwant:\n%s", stdout, want)
	}
	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "tax", "--month", tSep, "--payer", tPayer)
	var tax struct {
		Rows   []map[string]any `json:"rows"`
		Totals []map[string]any `json:"totals"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &tax) != nil || len(tax.Rows) != 2 || len(tax.Totals) != 2 {
		t.Fatalf("tax json: exit %d stdout %s", code, stdout)
	}
	for k, v := range map[string]string{"invoice_id": tInvA1, "jurisdiction": "US-WA", "reason": "", "rate_percentage": "10.1",
		"taxable": "123.45", "tax": "12.47"} {
		if tax.Rows[0][k] != v {
			t.Errorf("tax json %s = %v, want %q", k, tax.Rows[0][k], v)
		}
	}
}

// TestReportPaymentsShowsCreditNotes (Y2, Y3): a credit note of −30.00 EUR
// (source X's credits above its charges), 20.00 of it applied to A2: the
// table shows its status, credit applied and remaining, the balances count
// the 10.00 left, and the application names what it settled; -o json has
// the same figures.
func TestReportPaymentsShowsCreditNotes(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	const cn = "INV-202609-111111111111-c0c0c0c0c0"
	post := &billingv1.InvoicesPosted{PayerAccountId: tPayer, Month: tSep, Invoices: []*billingv1.InvoiceSummary{
		{InvoiceId: tInvA2, Month: tSep, SourceAccountId: tSrcY, InvoiceUnitId: "iu-berlin", Seller: "Amazon Web Services EMEA SARL", Currency: "EUR", Total: "45.11"},
		{InvoiceId: cn, Month: tSep, SourceAccountId: tSrcX, Seller: "Amazon Web Services EMEA SARL", Currency: "EUR", Total: "-30.00"},
	}}
	applied := &billingv1.CreditApplied{PayerAccountId: tPayer, CreditNoteId: cn, BillSourceAccountId: tSrcX, Currency: "EUR",
		Amount: "20.00", RemainingCredit: "10.00",
		Allocations: []*billingv1.PaymentAllocation{{InvoiceId: tInvA2, BillSourceAccountId: tSrcY, Amount: "20.00", OutstandingAfter: "25.11"}}}
	if _, err := store.Append(context.Background(), eventstore.StreamAppend{Stream: domain.ReceivableStream(tPayer), Events: []*billingv1.Event{
		testEvent(tClose, &billingv1.Event{Payload: &billingv1.Event_InvoicesPosted{InvoicesPosted: post}}),
		testEvent(tPay1, &billingv1.Event{Payload: &billingv1.Event_CreditApplied{CreditApplied: applied}}),
	}}); err != nil {
		t.Fatal(err)
	}
	url, _ := invoiceServer(t, store)
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "payments", "--payer", tPayer)
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := `INVOICE                             PAYER         MONTH    SOURCE        CURRENCY  ISSUED  PAID   OUTSTANDING  STATUS          CREDIT_APPLIED  REMAINING_CREDIT
INV-202609-111111111111-c0c0c0c0c0  111111111111  2026-09  333333333333  EUR       -30.00  0.00   0.00         CREDIT          20.00           10.00
INV-202609-111111111111-a2a2a2a2a2  111111111111  2026-09  444444444444  EUR       45.11   20.00  25.11        PARTIALLY_PAID  -               -

PAYER         CURRENCY  ISSUED  PAID   OUTSTANDING  CREDIT_NOTES  UNAPPLIED_CREDIT  BALANCE
111111111111  EUR       15.11   20.00  25.11        10.00         0.00              15.11

PAYER         SOURCE        CURRENCY  ISSUED  PAID   OUTSTANDING  CREDIT_NOTES  BALANCE
111111111111  333333333333  EUR       -30.00  0.00   0.00         10.00         -10.00
111111111111  444444444444  EUR       45.11   20.00  25.11        0.00          25.11

PAYMENT  PAYER  RECEIVED  METHOD  CURRENCY  AMOUNT  UNAPPLIED  REFUNDED

PAYMENT  INVOICE  SOURCE  APPLIED  OUTSTANDING_AFTER

CREDIT_NOTE                         SEQ  PAYER         APPLIED_AT            SOURCE        CURRENCY  AMOUNT  REMAINING_CREDIT
INV-202609-111111111111-c0c0c0c0c0  1    111111111111  2026-10-05T12:00:00Z  333333333333  EUR       20.00   10.00

CREDIT_NOTE                         SEQ  INVOICE                             SOURCE        APPLIED  OUTSTANDING_AFTER
INV-202609-111111111111-c0c0c0c0c0  1    INV-202609-111111111111-a2a2a2a2a2  444444444444  20.00    25.11
`
	if stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", stdout, want)
	}
	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "payments", "--payer", tPayer)
	var doc struct {
		Invoices           []map[string]any `json:"invoices"`
		PayerBalances      []map[string]any `json:"payer_balances"`
		SourceBalances     []map[string]any `json:"source_balances"`
		CreditApplications []struct {
			CreditNoteID    string           `json:"credit_note_id"`
			Amount          string           `json:"amount"`
			RemainingCredit string           `json:"remaining_credit"`
			Allocations     []map[string]any `json:"allocations"`
		} `json:"credit_applications"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	if len(doc.Invoices) != 2 || doc.Invoices[0]["status"] != "CREDIT" || doc.Invoices[0]["credit_applied"] != "20.00" ||
		doc.Invoices[0]["remaining_credit"] != "10.00" || doc.Invoices[1]["remaining_credit"] != "0.00" {
		t.Errorf("json invoices = %v", doc.Invoices)
	}
	if len(doc.PayerBalances) != 1 || doc.PayerBalances[0]["credit_notes"] != "10.00" || doc.PayerBalances[0]["balance"] != "15.11" {
		t.Errorf("json payer balances = %v", doc.PayerBalances)
	}
	if len(doc.SourceBalances) != 2 || doc.SourceBalances[0]["credit_notes"] != "10.00" || doc.SourceBalances[0]["balance"] != "-10.00" {
		t.Errorf("json source balances = %v", doc.SourceBalances)
	}
	if c := doc.CreditApplications; len(c) != 1 || c[0].CreditNoteID != cn || c[0].Amount != "20.00" || c[0].RemainingCredit != "10.00" ||
		len(c[0].Allocations) != 1 || c[0].Allocations[0]["invoice_id"] != tInvA2 || c[0].Allocations[0]["outstanding_after"] != "25.11" {
		t.Errorf("json credit applications = %+v", c)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	exec := &closeExecutor{}
	url := newServer(t, api.Options{Executor: exec})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "close", "--payer", tPayer, "--month", tSep)
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := "CloseMonth ok payer=111111111111 month=2026-09 invoice_count=2 invoice_ids=INV-1,INV-2 events=3 position=17\n" +
		"event ids: ev-close ev-inv-1 ev-inv-2\n" +
		"invoices: billctl report invoices --month 2026-09 --payer 111111111111\n"
	if stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "close", "--payer", tPayer, "--month", tSep, "--request-id", "close-sep")
	var res struct {
		AggregateID string   `json:"aggregate_id"`
		EventIDs    []string `json:"event_ids"`
		Position    string   `json:"position"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.AggregateID != tPayer ||
		len(res.EventIDs) != 3 || res.Position != "17" {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	got := exec.requests()
	if len(got) != 2 || got[0].GetPayerAccountId() != tPayer || got[0].GetMonth() != tSep || got[1].GetRequestId() != "close-sep" {
		t.Fatalf("CloseMonth requests = %v", got)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"close", "--payer", tPayer}, exitUsage, "missing flags: --month=YYYY-MM"},
		{[]string{"close", "--month", tSep}, exitUsage, "missing flags: --payer=ID"},
		{[]string{"close", "--payer", tPayer, "--month", "2026-13"}, 1, `INVALID_ARGUMENT: --month "2026-13" is not a month`},
		{[]string{"close", "--payer", "1111", "--month", tSep}, 1, `INVALID_ARGUMENT: --payer "1111" is not a 12-digit account id`},
		{[]string{"close", "--payer", "999999999999", "--month", tSep}, 1, "FAILED_PRECONDITION: month 2026-09 has not ended"},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"--server", url, "--token", testToken}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d stderr %q, want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if n := len(exec.requests()); n != 3 {
		t.Fatalf("server received %d closes, want 3 (bad flags send nothing)", n)
	}
}

// closeExecutor answers CloseMonth like the command pipeline: payer
// 999999999999 is rejected, any other gets a result with three events and
// the created ids billingd returns (aggregate = the payer; invoice_count,
// invoice_ids, month).
type closeExecutor struct {
	mu  sync.Mutex
	got []*billingv1.CloseMonth
}

func (e *closeExecutor) Execute(_ context.Context, _ string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := req.GetCloseMonth()
	if c == nil {
		return nil, domain.Reject(domain.CodeInvalidArgument, "not a CloseMonth")
	}
	e.got = append(e.got, c)
	if c.GetPayerAccountId() == "999999999999" {
		return nil, domain.Reject(domain.CodeFailedPrecondition, "month %s has not ended", c.GetMonth())
	}
	return &billingv1.CommandResult{AggregateId: c.GetPayerAccountId(), EventIds: []string{"ev-close", "ev-inv-1", "ev-inv-2"},
		Position: 17, Created: map[string]string{"invoice_count": "2", "invoice_ids": "INV-1,INV-2", "month": c.GetMonth()}}, nil
}

func (e *closeExecutor) requests() []*billingv1.CloseMonth {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*billingv1.CloseMonth(nil), e.got...)
}

// TestReplayVerifiesInvoices (R2): billctl replay rebuilds the invoices, tax
// and payments read models from JetStream, equal to the live tables; as of
// a time before pay-2 it leaves that payment out; a live table that differs
// fails --verify.
func TestReplayVerifiesInvoices(t *testing.T) {
	t.Parallel()
	natsURL := startNATS(t)
	nc, err := nats.Connect(natsURL, nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	store, err := ledgerjs.Open(context.Background(), nc, ledgerjs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	appendInvoiceEvents(t, store)
	url, db := invoiceServer(t, store)

	type digest struct {
		Rows   uint64            `json:"rows"`
		Totals map[string]string `json:"totals"`
	}
	replay := func(want int, args ...string) (map[string]digest, bool, []string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, "", append([]string{"--server", url, "--token", testToken, "-o", "json", "replay",
			"--nats-url", natsURL, "--month", tSep}, args...)...)
		if code != want {
			t.Fatalf("replay %v: exit %d, want %d\nstdout %s\nstderr %s", args, code, want, stdout, stderr)
		}
		var out struct {
			Replay      map[string]json.RawMessage `json:"replay"`
			Verified    bool                       `json:"verified"`
			Differences []string                   `json:"differences"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("replay output %s: %v", stdout, err)
		}
		ds := map[string]digest{}
		for name, raw := range out.Replay {
			if name == "checkpoint" {
				continue
			}
			var d digest
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			ds[name] = d
		}
		return ds, out.Verified, out.Differences
	}

	ds, verified, diffs := replay(0, "--verify")
	if !verified || len(diffs) != 0 {
		t.Fatalf("replay --verify: verified %v, differences %v", verified, diffs)
	}
	wantTotals := map[string]map[string]string{
		"invoices": {"closes": "1", "invoices": "2", "lines": "3", "subtotal_USD": "123.45", "tax_USD": "12.47", "total_USD": "135.92",
			"subtotal_EUR": "45.11", "tax_EUR": "0", "total_EUR": "45.11"},
		"tax": {"taxable_USD": "123.45", "tax_USD": "12.47", "taxable_EUR": "45.11", "tax_EUR": "0"},
		"payments": {"allocations": "2", "issued_USD": "135.92", "paid_USD": "135.92", "outstanding_USD": "0",
			"issued_EUR": "45.11", "paid_EUR": "0", "outstanding_EUR": "45.11"},
	}
	for name, want := range wantTotals {
		d, ok := ds[name]
		if !ok || d.Rows != 2 || !equalMaps(d.Totals, want) {
			t.Errorf("replay %s = %+v, want 2 rows and totals %v", name, d, want)
		}
	}

	// As of the second before pay-2: 100.00 of A1's 135.92 is paid.
	ds, _, _ = replay(0, "--as-of", tPay2.Add(-time.Second).Format(time.RFC3339))
	if p := ds["payments"].Totals; p["paid_USD"] != "100" || p["outstanding_USD"] != "35.92" || p["allocations"] != "1" {
		t.Errorf("replay --as-of before pay-2: payments totals %v", p)
	}

	// A live table that no longer matches the events fails the verification.
	if _, err := db.SQL().Exec(`UPDATE receivables SET paid = '35.92', outstanding = '100.00', status = 'PARTIALLY_PAID'
		WHERE invoice_id = $1`, tInvA1); err != nil {
		t.Fatal(err)
	}
	_, verified, diffs = replay(1, "--verify")
	if verified || len(diffs) != 1 || !strings.HasPrefix(diffs[0], "payments: digest ") {
		t.Fatalf("replay --verify of a changed live table: verified %v, differences %v", verified, diffs)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
