package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// appendInvoiceScenario appends two closes of September (payerA: invoices A1
// in USD and A2 in EUR; payerB: B1 in JPY), payerA's close of October (A3),
// their postings, and three payments and a refund:
//
//	pay-1  payerA  USD 100.00  A1 100.00 → 35.92 outstanding
//	pay-b  payerB  JPY 500     B1 500 → 857
//	pay-2  payerA  USD 60.00   A1 35.92 → 0.00, A3 10.00 → 0.00, 14.08 unapplied
//	refund of pay-2: 4.08, leaving 10.00 unapplied
//
// and returns the store's last position.
func appendInvoiceScenario(t *testing.T, s eventstore.Store) uint64 {
	return appendInvoiceScenarioAs(t, s, false)
}

// appendInvoiceScenarioAs appends the scenario with its closes written one
// InvoiceIssued per invoice (as closes were first written), or, packed, as
// closes write them now: InvoicesIssued events, A1's second line in an
// InvoiceLinesIssued, and payerA's September invoices posted in two
// InvoicesPosted events.
func appendInvoiceScenarioAs(t *testing.T, s eventstore.Store, packed bool) uint64 {
	t.Helper()
	closeOf, postedOf := closeEvents, func(at time.Time, payer, month string, invs ...*billingv1.Invoice) []*billingv1.Event {
		return []*billingv1.Event{posted(at, payer, month, invs...)}
	}
	if packed {
		closeOf, postedOf = packedCloseEvents, func(at time.Time, payer, month string, invs ...*billingv1.Invoice) []*billingv1.Event {
			var evs []*billingv1.Event
			for _, inv := range invs {
				evs = append(evs, posted(at, payer, month, inv))
			}
			return evs
		}
	}
	appendTo(t, s, domain.MonthStream(payerA, sep), closeOf(closeSep, payerA, sep, 42, invoiceA1(), invoiceA2())...)
	appendTo(t, s, domain.ReceivableStream(payerA), postedOf(closeSep, payerA, sep, invoiceA1(), invoiceA2())...)
	appendTo(t, s, domain.MonthStream(payerB, sep), closeOf(closeSep, payerB, sep, 7, invoiceB1())...)
	appendTo(t, s, domain.ReceivableStream(payerB), postedOf(closeSep, payerB, sep, invoiceB1())...)
	// A usage partition's close marker: outside both filters, read by neither.
	appendTo(t, s, domain.UsageStream(sep, 0), envelope(closeSep, &billingv1.Event{Payload: &billingv1.Event_UsageMonthClosed{
		UsageMonthClosed: &billingv1.UsageMonthClosed{PayerAccountId: payerA, Month: sep}}}))
	appendTo(t, s, domain.ReceivableStream(payerA), payment(pay1At, payerA, "pay-1", "100.00", "USD",
		billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER, "0.00", alloc(invA1, sourceX, "100.00", "35.92")))
	appendTo(t, s, domain.ReceivableStream(payerB), payment(payBAt, payerB, "pay-b", "500", "JPY",
		billingv1.PaymentMethod_PAYMENT_METHOD_DIRECT_DEBIT, "0", alloc(invB1, sourceZ, "500", "857")))
	appendTo(t, s, domain.MonthStream(payerA, oct), closeOf(closeOct, payerA, oct, 3, invoiceA3())...)
	appendTo(t, s, domain.ReceivableStream(payerA), postedOf(closeOct, payerA, oct, invoiceA3())...)
	appendTo(t, s, domain.ReceivableStream(payerA), payment(pay2At, payerA, "pay-2", "60.00", "USD",
		billingv1.PaymentMethod_PAYMENT_METHOD_CARD, "14.08",
		alloc(invA1, sourceX, "35.92", "0.00"), alloc(invA3, sourceX, "10.00", "0.00")))
	appendTo(t, s, domain.ReceivableStream(payerA), refunded(refund2At, payerA, "pay-2", "4.08", "USD", "10.00"))
	return lastPosition(t, s)
}

// startInvoiceRunners runs the invoices and payments projections on db and
// waits until both have applied pos.
func startInvoiceRunners(t *testing.T, db *readmodel.DB, s eventstore.Store, pos uint64) {
	t.Helper()
	cfg := projections.RunnerConfig{IdleInterval: time.Hour}
	inv := start(t, db, s, projections.Invoices{}, cfg)
	pay := start(t, db, s, projections.Payments{}, cfg)
	waitFor(t, inv, pos)
	waitFor(t, pay, pos)
}

// TestInvoicesAndPayments (X5, Y2, Y3, R1) projects the scenario and checks
// every row and figure of the three reports, with their filters.
func TestInvoicesAndPayments(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		last := appendInvoiceScenario(t, s)
		db := openDB(t, rm.Target(t))
		startInvoiceRunners(t, db, s, last)
		ctx := context.Background()

		t.Run("invoices", func(t *testing.T) {
			a1 := invoiceRow(invoiceA1(), "135.92", "0.00", "PAID")
			a2 := invoiceRow(invoiceA2(), "0.00", "45.11", "OPEN")
			b1 := invoiceRow(invoiceB1(), "500", "857", "PARTIALLY_PAID")
			eur := &billingv1.CurrencyTotals{Currency: "EUR", Invoices: 1, Subtotal: "45.11", Tax: "0.00", Total: "45.11", Paid: "0.00", Outstanding: "45.11"}
			cases := []struct {
				req  *billingv1.ReportInvoicesRequest
				want *billingv1.ReportInvoicesResponse
			}{
				{&billingv1.ReportInvoicesRequest{Month: sep}, &billingv1.ReportInvoicesResponse{
					Rows: []*billingv1.InvoiceRow{a1, a2, b1},
					Totals: []*billingv1.CurrencyTotals{
						eur,
						{Currency: "JPY", Invoices: 1, Subtotal: "1234", Tax: "123", Total: "1357", Paid: "500", Outstanding: "857"},
						{Currency: "USD", Invoices: 1, Subtotal: "123.45", Tax: "12.47", Total: "135.92", Paid: "135.92", Outstanding: "0.00"},
					},
				}},
				{&billingv1.ReportInvoicesRequest{Month: sep, PayerAccountId: payerA, SourceAccountId: sourceY},
					&billingv1.ReportInvoicesResponse{Rows: []*billingv1.InvoiceRow{a2}, Totals: []*billingv1.CurrencyTotals{eur}}},
				{&billingv1.ReportInvoicesRequest{Month: oct}, &billingv1.ReportInvoicesResponse{
					Rows: []*billingv1.InvoiceRow{invoiceRow(invoiceA3(), "10.00", "0.00", "PAID")},
					Totals: []*billingv1.CurrencyTotals{{Currency: "USD", Invoices: 1, Subtotal: "10.00", Tax: "0.00",
						Total: "10.00", Paid: "10.00", Outstanding: "0.00"}},
				}},
				{&billingv1.ReportInvoicesRequest{Month: "2026-11"}, &billingv1.ReportInvoicesResponse{}},
			}
			for _, c := range cases {
				got, err := db.ReportInvoices(ctx, c.req)
				if err != nil {
					t.Fatalf("ReportInvoices(%v): %v", c.req, err)
				}
				c.want.Checkpoint = last
				assertProto(t, "ReportInvoices("+c.req.String()+")", got, c.want)
			}
		})

		t.Run("tax", func(t *testing.T) {
			us := &billingv1.TaxRow{InvoiceId: invA1, PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "USD",
				Jurisdiction: "US-WA", RatePercentage: "10.1", RateEffectiveFrom: "2026-01-01", Taxable: "123.45", Tax: "12.47"}
			de := &billingv1.TaxRow{InvoiceId: invA2, PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR",
				Jurisdiction: "DE", Reason: "REVERSE_CHARGE", RatePercentage: "0", Taxable: "45.11", Tax: "0.00"}
			jp := &billingv1.TaxRow{InvoiceId: invB1, PayerAccountId: payerB, SourceAccountId: sourceZ, Currency: "JPY",
				Jurisdiction: "JP", RatePercentage: "10", RateEffectiveFrom: "2019-10-01", Taxable: "1234", Tax: "123"}
			cases := []struct {
				req  *billingv1.ReportTaxRequest
				want *billingv1.ReportTaxResponse
			}{
				{&billingv1.ReportTaxRequest{Month: sep}, &billingv1.ReportTaxResponse{
					Rows: []*billingv1.TaxRow{us, de, jp},
					Totals: []*billingv1.TaxTotals{{Currency: "EUR", Taxable: "45.11", Tax: "0.00"},
						{Currency: "JPY", Taxable: "1234", Tax: "123"}, {Currency: "USD", Taxable: "123.45", Tax: "12.47"}},
				}},
				{&billingv1.ReportTaxRequest{Month: sep, PayerAccountId: payerB}, &billingv1.ReportTaxResponse{
					Rows: []*billingv1.TaxRow{jp}, Totals: []*billingv1.TaxTotals{{Currency: "JPY", Taxable: "1234", Tax: "123"}},
				}},
			}
			for _, c := range cases {
				got, err := db.ReportTax(ctx, c.req)
				if err != nil {
					t.Fatalf("ReportTax(%v): %v", c.req, err)
				}
				c.want.Checkpoint = last
				assertProto(t, "ReportTax("+c.req.String()+")", got, c.want)
			}
		})

		t.Run("payments", func(t *testing.T) {
			st := func(inv *billingv1.Invoice, paid, outstanding, status string) *billingv1.InvoicePayment {
				return &billingv1.InvoicePayment{InvoiceId: inv.GetInvoiceId(), PayerAccountId: inv.GetPayerAccountId(),
					Month: inv.GetMonth(), SourceAccountId: inv.GetSourceAccountId(), InvoiceUnitId: inv.GetInvoiceUnitId(),
					Seller: inv.GetSeller(), Currency: inv.GetCurrency(), Issued: inv.GetTotal(), Paid: paid,
					Outstanding: outstanding, Status: status, CreditApplied: zeroOf(inv.GetCurrency()), RemainingCredit: zeroOf(inv.GetCurrency())}
			}
			a1 := st(invoiceA1(), "135.92", "0.00", "PAID")
			a2 := st(invoiceA2(), "0.00", "45.11", "OPEN")
			a3 := st(invoiceA3(), "10.00", "0.00", "PAID")
			b1 := st(invoiceB1(), "500", "857", "PARTIALLY_PAID")
			pay1 := &billingv1.PaymentRow{PaymentId: "pay-1", PayerAccountId: payerA, Amount: "100.00", Currency: "USD",
				Method: "BANK_TRANSFER", ReceivedAt: "2026-10-05T12:00:00Z", Unapplied: "0.00", Refunded: "0.00",
				Allocations: []*billingv1.PaymentAllocation{alloc(invA1, sourceX, "100.00", "35.92")}}
			pay2 := &billingv1.PaymentRow{PaymentId: "pay-2", PayerAccountId: payerA, Amount: "60.00", Currency: "USD",
				Method: "CARD", ReceivedAt: "2026-11-10T12:00:00Z", Unapplied: "10.00", Refunded: "4.08",
				Allocations: []*billingv1.PaymentAllocation{alloc(invA1, sourceX, "35.92", "0.00"), alloc(invA3, sourceX, "10.00", "0.00")}}
			payB := &billingv1.PaymentRow{PaymentId: "pay-b", PayerAccountId: payerB, Amount: "500", Currency: "JPY",
				Method: "DIRECT_DEBIT", ReceivedAt: "2026-10-06T12:00:00Z", Unapplied: "0", Refunded: "0",
				Allocations: []*billingv1.PaymentAllocation{alloc(invB1, sourceZ, "500", "857")}}
			pay2Sep := proto.Clone(pay2).(*billingv1.PaymentRow)
			pay2Sep.Allocations = pay2Sep.Allocations[:1]
			cases := []struct {
				req  *billingv1.ReportPaymentsRequest
				want *billingv1.ReportPaymentsResponse
			}{
				{&billingv1.ReportPaymentsRequest{}, &billingv1.ReportPaymentsResponse{
					Invoices: []*billingv1.InvoicePayment{a1, a2, a3, b1},
					PayerBalances: []*billingv1.PayerBalance{
						{PayerAccountId: payerA, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", UnappliedCredit: "0.00", CreditNotes: "0.00", Balance: "45.11"},
						{PayerAccountId: payerA, Currency: "USD", Issued: "145.92", Paid: "145.92", Outstanding: "0.00", UnappliedCredit: "10.00", CreditNotes: "0.00", Balance: "-10.00"},
						{PayerAccountId: payerB, Currency: "JPY", Issued: "1357", Paid: "500", Outstanding: "857", UnappliedCredit: "0", CreditNotes: "0", Balance: "857"},
					},
					SourceBalances: []*billingv1.SourceBalance{
						{PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "USD", Issued: "145.92", Paid: "145.92", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00"},
						{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", CreditNotes: "0.00", Balance: "45.11"},
						{PayerAccountId: payerB, SourceAccountId: sourceZ, Currency: "JPY", Issued: "1357", Paid: "500", Outstanding: "857", CreditNotes: "0", Balance: "857"},
					},
					Payments: []*billingv1.PaymentRow{pay1, pay2, payB},
				}},
				{&billingv1.ReportPaymentsRequest{PayerAccountId: payerA, Month: sep}, &billingv1.ReportPaymentsResponse{
					Invoices: []*billingv1.InvoicePayment{a1, a2},
					PayerBalances: []*billingv1.PayerBalance{
						{PayerAccountId: payerA, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", UnappliedCredit: "0.00", CreditNotes: "0.00", Balance: "45.11"},
						{PayerAccountId: payerA, Currency: "USD", Issued: "135.92", Paid: "135.92", Outstanding: "0.00", UnappliedCredit: "10.00", CreditNotes: "0.00", Balance: "-10.00"},
					},
					SourceBalances: []*billingv1.SourceBalance{
						{PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "USD", Issued: "135.92", Paid: "135.92", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00"},
						{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", CreditNotes: "0.00", Balance: "45.11"},
					},
					Payments: []*billingv1.PaymentRow{pay1, pay2Sep},
				}},
				{&billingv1.ReportPaymentsRequest{SourceAccountId: sourceY}, &billingv1.ReportPaymentsResponse{
					Invoices: []*billingv1.InvoicePayment{a2},
					PayerBalances: []*billingv1.PayerBalance{
						{PayerAccountId: payerA, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", UnappliedCredit: "0.00", CreditNotes: "0.00", Balance: "45.11"},
					},
					SourceBalances: []*billingv1.SourceBalance{
						{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "45.11", Paid: "0.00", Outstanding: "45.11", CreditNotes: "0.00", Balance: "45.11"},
					},
					Payments: []*billingv1.PaymentRow{},
				}},
			}
			for _, c := range cases {
				got, err := db.ReportPayments(ctx, c.req)
				if err != nil {
					t.Fatalf("ReportPayments(%v): %v", c.req, err)
				}
				c.want.Checkpoint = last
				assertProto(t, "ReportPayments("+c.req.String()+")", got, c.want)
			}
		})

		t.Run("closes", func(t *testing.T) {
			rows, err := db.SQL().QueryContext(ctx, `SELECT payer_account_id, month, invoice_date, invoice_count, usage_records
				FROM closed_months ORDER BY month, payer_account_id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var payer, month, date string
				var n, records int
				if err := rows.Scan(&payer, &month, &date, &n, &records); err != nil {
					t.Fatal(err)
				}
				got = append(got, strings.Join([]string{payer, month, date, strconv.Itoa(n), strconv.Itoa(records)}, " "))
			}
			want := []string{
				payerA + " 2026-09 2026-10-02 2 42",
				payerB + " 2026-09 2026-10-02 1 7",
				payerA + " 2026-10 2026-11-02 1 3",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("closed_months:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})

		t.Run("refunds change only the payment's credit", func(t *testing.T) {
			var seq, amount, currency, after string
			err := db.SQL().QueryRowContext(ctx, `SELECT seq, amount, currency, unapplied_after FROM payment_refunds
				WHERE payer_account_id = $1 AND payment_id = 'pay-2'`, payerA).Scan(&seq, &amount, &currency, &after)
			if err != nil || seq != "1" || amount != "4.08" || currency != "USD" || after != "10.00" {
				t.Fatalf("refund row: %s %s %s %s, %v", seq, amount, currency, after, err)
			}
		})
	})
}

// TestInvoiceReplayEqualsLive (R2): a replay of each month's invoices, tax
// and payments equals the live digests, with exact totals; a replay as of a
// time before a payment leaves it out.
func TestInvoiceReplayEqualsLive(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		last := appendInvoiceScenario(t, s)
		db := openDB(t, rm.Target(t))
		startInvoiceRunners(t, db, s, last)
		ctx := context.Background()

		for _, month := range []string{sep, oct, "2026-11"} {
			live, err := db.InvoiceDigests(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			replay, err := projections.ReplayMonthWith(ctx, s, month, projections.ReplayOptions{
				Invoices: true, InvoicesUpTo: live[0].GetCheckpoint(), PaymentsUpTo: live[2].GetCheckpoint(),
			})
			if err != nil {
				t.Fatalf("replay %s: %v", month, err)
			}
			got := replay.GetDigests()[2:] // after billable and deadletters
			if len(got) != 3 {
				t.Fatalf("replay %s: digests %v", month, replay.GetDigests())
			}
			for i := range live {
				if live[i].GetCheckpoint() != last {
					t.Fatalf("live %s checkpoint %d, want %d", live[i].GetName(), live[i].GetCheckpoint(), last)
				}
				assertProto(t, month+" "+live[i].GetName()+" replay vs live", got[i], live[i])
			}
		}

		sepDigests, err := db.InvoiceDigests(ctx, sep)
		if err != nil {
			t.Fatal(err)
		}
		wantTotals := []map[string]string{
			{"closes": "2", "invoices": "3", "lines": "4",
				"subtotal_USD": "123.45", "tax_USD": "12.47", "total_USD": "135.92",
				"subtotal_EUR": "45.11", "tax_EUR": "0", "total_EUR": "45.11",
				"subtotal_JPY": "1234", "tax_JPY": "123", "total_JPY": "1357"},
			{"taxable_USD": "123.45", "tax_USD": "12.47", "taxable_EUR": "45.11", "tax_EUR": "0",
				"taxable_JPY": "1234", "tax_JPY": "123"},
			{"allocations": "3", "issued_USD": "135.92", "paid_USD": "135.92", "outstanding_USD": "0",
				"issued_EUR": "45.11", "paid_EUR": "0", "outstanding_EUR": "45.11",
				"issued_JPY": "1357", "paid_JPY": "500", "outstanding_JPY": "857"},
		}
		for i, name := range []string{readmodel.DigestInvoices, readmodel.DigestTax, readmodel.DigestPayments} {
			d := sepDigests[i]
			if d.GetName() != name || d.GetRows() != 3 {
				t.Fatalf("digest %d: %s with %d rows, want %s with 3", i, d.GetName(), d.GetRows(), name)
			}
			assertProto(t, name+" totals", &billingv1.ReadModelDigest{Totals: d.GetTotals()}, &billingv1.ReadModelDigest{Totals: wantTotals[i]})
		}

		// As of the second before pay-2: A1 is paid 100.00 of 135.92, pay-2's
		// allocation is not there; invoices and tax are unchanged.
		asOf, err := projections.ReplayMonthWith(ctx, s, sep, projections.ReplayOptions{Invoices: true, AsOf: pay2At.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		ds := asOf.GetDigests()[2:]
		assertProto(t, "invoices as of before pay-2", ds[0], withCheckpoint(sepDigests[0], asOf.GetCheckpoint()))
		assertProto(t, "tax as of before pay-2", ds[1], withCheckpoint(sepDigests[1], asOf.GetCheckpoint()))
		assertProto(t, "payments totals as of before pay-2", &billingv1.ReadModelDigest{Totals: ds[2].GetTotals()},
			&billingv1.ReadModelDigest{Totals: map[string]string{"allocations": "2",
				"issued_USD": "135.92", "paid_USD": "100", "outstanding_USD": "35.92",
				"issued_EUR": "45.11", "paid_EUR": "0", "outstanding_EUR": "45.11",
				"issued_JPY": "1357", "paid_JPY": "500", "outstanding_JPY": "857"}})
		if ds[2].GetDigest() == sepDigests[2].GetDigest() {
			t.Fatal("payments digest as of before pay-2 equals the live one")
		}

		// As of before September's close: nothing at all.
		empty, err := projections.ReplayMonthWith(ctx, s, sep, projections.ReplayOptions{Invoices: true, AsOf: closeSep.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range empty.GetDigests()[2:] {
			if d.GetRows() != 0 {
				t.Fatalf("replay as of before the close: %s has %d rows", d.GetName(), d.GetRows())
			}
		}
	})
}

// TestX5_R2_PackedClosesProjectAsOneEventPerInvoice: the scenario written as
// closes write it now (MonthClosed counting the invoices in invoice_count and
// listing no id, InvoicesIssued packing invoices, an InvoiceLinesIssued
// continuing A1's lines, several InvoicesPosted for one close) gives the same
// invoices, tax and payments read models, field for field (the invoices
// digest covers each close's invoice count), as the scenario written as
// closes were first written (MonthClosed listing the ids, no count, one
// InvoiceIssued per invoice), and its replay equals its live tables (R2).
func TestX5_R2_PackedClosesProjectAsOneEventPerInvoice(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		ctx := context.Background()
		oldStore := memstore.New()
		oldLast := appendInvoiceScenarioAs(t, oldStore, false)
		oldDB := openDB(t, tempDBPath(t))
		startInvoiceRunners(t, oldDB, oldStore, oldLast)

		last := appendInvoiceScenarioAs(t, s, true)
		db := openDB(t, rm.Target(t))
		startInvoiceRunners(t, db, s, last)

		// The two logs hold the two forms of MonthClosed, which count alike.
		for _, c := range []struct {
			store   eventstore.Store
			counted bool
		}{{oldStore, false}, {s, true}} {
			recs, err := c.store.ReadStream(ctx, domain.MonthStream(payerA, sep))
			if err != nil {
				t.Fatal(err)
			}
			mc := recs[0].Event.GetMonthClosed()
			want := "2 ids, count 0"
			if c.counted {
				want = "0 ids, count 2"
			}
			if got := fmt.Sprintf("%d ids, count %d", len(mc.GetInvoiceIds()), mc.GetInvoiceCount()); got != want || domain.ClosedInvoiceCount(mc) != 2 {
				t.Fatalf("MonthClosed of payerA's September: %s (%d invoices), want %s (2 invoices)", got, domain.ClosedInvoiceCount(mc), want)
			}
		}
		var count int
		if err := db.SQL().QueryRowContext(ctx, `SELECT invoice_count FROM closed_months WHERE payer_account_id = $1 AND month = $2`,
			payerA, sep).Scan(&count); err != nil || count != 2 {
			t.Fatalf("closed_months.invoice_count of payerA's September = %d (%v), want 2", count, err)
		}

		for _, month := range []string{sep, oct} {
			want, err := oldDB.InvoiceDigests(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			got, err := db.InvoiceDigests(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				assertProto(t, month+" "+want[i].GetName()+" packed vs one event per invoice",
					withCheckpoint(got[i], 0), withCheckpoint(want[i], 0))
			}
			replay, err := projections.ReplayMonthWith(ctx, s, month, projections.ReplayOptions{
				Invoices: true, InvoicesUpTo: got[0].GetCheckpoint(), PaymentsUpTo: got[2].GetCheckpoint(),
			})
			if err != nil {
				t.Fatalf("replay %s: %v", month, err)
			}
			for i, d := range replay.GetDigests()[2:] {
				assertProto(t, month+" "+d.GetName()+" replay vs live", d, got[i])
			}
		}
		rep, err := db.ReportInvoices(ctx, &billingv1.ReportInvoicesRequest{Month: sep, PayerAccountId: payerA})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.GetRows()) != 2 || len(rep.GetRows()[0].GetLines()) != 2 || rep.GetRows()[0].GetLines()[1].GetAmount() != "23.45" {
			t.Fatalf("payerA's September invoices: %v", rep.GetRows())
		}
	})
}

func withCheckpoint(d *billingv1.ReadModelDigest, cp uint64) *billingv1.ReadModelDigest {
	c := proto.Clone(d).(*billingv1.ReadModelDigest)
	c.Checkpoint = cp
	return c
}

// TestPaymentsRefuseHistoriesWithoutRows: an allocation to an invoice never
// posted stops the runner at that event, and nothing of it is committed.
func TestPaymentsRefuseHistoriesWithoutRows(t *testing.T) {
	t.Parallel()
	s := memstore.New()
	appendTo(t, s, domain.ReceivableStream(payerA), payment(pay1At, payerA, "pay-1", "100.00", "USD",
		billingv1.PaymentMethod_PAYMENT_METHOD_CARD, "0.00", alloc(invA1, sourceX, "100.00", "35.92")))
	db := openDB(t, tempDBPath(t))
	rn := start(t, db, s, projections.Payments{}, projections.RunnerConfig{IdleInterval: time.Hour})
	err := rn.wait(t)
	var ae *projections.ApplyError
	if !errors.As(err, &ae) || ae.Position != 1 || !strings.Contains(err.Error(), `allocates to invoice "`+invA1+`", which was never posted`) {
		t.Fatalf("runner error = %v, want an ApplyError at position 1 about the unposted invoice", err)
	}
	var n int
	if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM payments`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("payments rows = %d (%v), want 0: the failed batch is rolled back", n, err)
	}
	assertCheckpoint(t, db, projections.PaymentsName, 0)
}

// TestInvoicesRefuseBadHistories: a replay reads a month's close streams
// only, so an invoice elsewhere would make it disagree with the live tables;
// the projection refuses it, and an invoice without its close or issued twice.
func TestInvoicesRefuseBadHistories(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		stream string
		events []*billingv1.Event
		want   string
	}{
		{"invoice on another month's stream", domain.MonthStream(payerA, oct),
			closeEvents(closeSep, payerA, oct, 0, invoiceA1()),
			`on stream "billing.month.111111111111.2026-10", want "billing.month.111111111111.2026-09"`},
		{"invoice before its close", domain.MonthStream(payerA, sep),
			closeEvents(closeSep, payerA, sep, 0, invoiceA1())[1:], "which is not closed"},
		{"invoice issued twice", domain.MonthStream(payerA, sep),
			append(closeEvents(closeSep, payerA, sep, 0, invoiceA1()), closeEvents(closeSep, payerA, sep, 0, invoiceA1())[1]),
			"issued twice"},
		{"close of a bad month", "billing.month.111111111111.2026-13",
			closeEvents(closeSep, payerA, "2026-13", 0), "2026-13"},
		{"lines of an invoice never issued", domain.MonthStream(payerA, sep),
			append(packedCloseEvents(closeSep, payerA, sep, 0, invoiceA1())[:1], packedCloseEvents(closeSep, payerA, sep, 0, invoiceA1())[2]),
			`lines of invoice "` + invA1 + `", which was never issued`},
		{"lines that skip a line", domain.MonthStream(payerA, sep),
			withFirstLine(packedCloseEvents(closeSep, payerA, sep, 0, invoiceA1()), 3),
			`start at line 3; the invoice has 1 lines, so the next is 2`},
		{"lines issued twice", domain.MonthStream(payerA, sep),
			func() []*billingv1.Event {
				evs := packedCloseEvents(closeSep, payerA, sep, 0, invoiceA1())
				return append(evs, proto.Clone(evs[2]).(*billingv1.Event))
			}(),
			`start at line 2; the invoice has 2 lines, so the next is 3`},
		{"lines numbered out of order", domain.MonthStream(payerA, sep),
			func() []*billingv1.Event {
				evs := packedCloseEvents(closeSep, payerA, sep, 0, invoiceA1())
				evs[2].GetInvoiceLinesIssued().GetLines()[0].LineNumber = 7
				return evs
			}(),
			`line 1 of InvoiceLinesIssued is numbered 7, want 2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, tempDBPath(t))
			err := db.WithTx(context.Background(), func(tx *sql.Tx) error {
				for i, ev := range c.events {
					ev.Stream = c.stream
					if err := (projections.Invoices{}).Apply(context.Background(), tx, eventstore.Record{Event: ev, Position: uint64(i + 1)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// withFirstLine sets the first_line of the InvoiceLinesIssued events of evs.
func withFirstLine(evs []*billingv1.Event, first uint32) []*billingv1.Event {
	for _, ev := range evs {
		if l := ev.GetInvoiceLinesIssued(); l != nil {
			l.FirstLine = first
		}
	}
	return evs
}

// TestEvolveReceivable: paid, outstanding and status follow outstanding_after (Y3).
func TestEvolveReceivable(t *testing.T) {
	t.Parallel()
	posted, err := projections.PostedReceivable(payerA, sep, &billingv1.InvoiceSummary{InvoiceId: invA1, SourceAccountId: sourceX,
		Seller: sellerUS, Currency: "USD", Total: "135.92"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := &readmodel.ReceivableRow{InvoiceID: invA1, PayerAccountID: payerA, Month: sep, SourceAccountID: sourceX,
		Seller: sellerUS, Currency: "USD", Issued: "135.92", Paid: "0.00", Outstanding: "135.92",
		Status: readmodel.InvoiceOpen, PostedPosition: 5, UpdatedPosition: 5}
	if *posted != *want {
		t.Fatalf("posted = %+v\nwant %+v", posted, want)
	}
	with := func(paid, outstanding string, status readmodel.InvoiceStatus, pos uint64) *readmodel.ReceivableRow {
		r := *want
		r.Paid, r.Outstanding, r.Status, r.UpdatedPosition = paid, outstanding, status, pos
		return &r
	}
	cases := []struct {
		name    string
		alloc   *billingv1.PaymentAllocation
		pos     uint64
		want    *readmodel.ReceivableRow
		wantErr string
	}{
		{"part paid", alloc(invA1, sourceX, "100.00", "35.92"), 9, with("100.00", "35.92", readmodel.InvoicePartiallyPaid, 9), ""},
		{"all paid", alloc(invA1, sourceX, "135.92", "0.00"), 9, with("135.92", "0.00", readmodel.InvoicePaid, 9), ""},
		{"nothing applied", alloc(invA1, sourceX, "0.00", "135.92"), 9, with("0.00", "135.92", readmodel.InvoiceOpen, 9), ""},
		{"same event, second allocation", alloc(invA1, sourceX, "1.00", "134.92"), 5, with("1.00", "134.92", readmodel.InvoicePartiallyPaid, 5), ""},
		{"another invoice", alloc(invA2, sourceY, "1.00", "0.00"), 9, nil, "applied to invoice"},
		{"before the row", alloc(invA1, sourceX, "1.00", "0.00"), 4, nil, "applied twice?"},
		{"outstanding not a decimal", alloc(invA1, sourceX, "1.00", "lots"), 9, nil, `"lots" is not a decimal number`},
		{"amount not a decimal", alloc(invA1, sourceX, "", "0.00"), 9, nil, "allocation amount"},
	}
	for _, c := range cases {
		got, err := projections.EvolveReceivable(posted, c.alloc, c.pos)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || *got != *c.want {
			t.Errorf("%s: got %+v, %v\nwant %+v", c.name, got, err, c.want)
		}
	}
	if *posted != *want {
		t.Fatalf("EvolveReceivable modified its input: %+v", posted)
	}

	zero, err := projections.PostedReceivable(payerA, sep, &billingv1.InvoiceSummary{InvoiceId: "INV-0", SourceAccountId: sourceX,
		Currency: "JPY", Total: "0"}, 1)
	if err != nil || zero.Status != readmodel.InvoicePaid || zero.Paid != "0" || zero.Outstanding != "0" {
		t.Fatalf("an invoice of 0: %+v, %v; want PAID", zero, err)
	}
}

// TestEvolvePaymentRefund: a refund sets the unapplied credit and adds to
// the refunded sum, and nothing else.
func TestEvolvePaymentRefund(t *testing.T) {
	t.Parallel()
	rec := eventstore.Record{Position: 7, Event: payment(pay2At, payerA, "pay-2", "60.00", "USD",
		billingv1.PaymentMethod_PAYMENT_METHOD_CARD, "14.08", alloc(invA1, sourceX, "45.92", "0.00"))}
	p, err := projections.RecordedPayment(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := readmodel.PaymentRecord{PayerAccountID: payerA, PaymentID: "pay-2", Amount: "60.00", Currency: "USD",
		Method: "CARD", Unapplied: "14.08", Refunded: "0.00", ReceivedAt: pay2At, Position: 7}
	if *p != want {
		t.Fatalf("payment = %+v\nwant %+v", p, want)
	}
	one, err := projections.EvolvePaymentRefund(p, refunded(refund2At, payerA, "pay-2", "4.08", "USD", "10.00").GetPaymentRefunded())
	if err != nil {
		t.Fatal(err)
	}
	two, err := projections.EvolvePaymentRefund(one, refunded(refund2At, payerA, "pay-2", "10.00", "USD", "0.00").GetPaymentRefunded())
	if err != nil {
		t.Fatal(err)
	}
	want.Unapplied, want.Refunded = "0.00", "14.08"
	if *two != want {
		t.Fatalf("after two refunds = %+v\nwant %+v", two, want)
	}
	if p.Unapplied != "14.08" || p.Refunded != "0.00" {
		t.Fatalf("EvolvePaymentRefund modified its input: %+v", p)
	}
	if _, err := projections.EvolvePaymentRefund(p, refunded(refund2At, payerA, "pay-2", "1", "EUR", "13.08").GetPaymentRefunded()); err == nil ||
		!strings.Contains(err.Error(), "in EUR, the payment is in USD") {
		t.Fatalf("refund in another currency: %v", err)
	}
}
