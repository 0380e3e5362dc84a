package projections_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// Credit notes in the payments read model (Y2, Y3): payerA's September close
// issues A1 (USD 135.92, sourceX), A2 (EUR 45.11, sourceY) and the credit note
// CN (EUR −30.00, sourceX); October's, A4 (EUR 8.00, sourceY). Then:
//
//	credit 1  CN → A2 20.00 (25.11 left), 10.00 credit remaining
//	credit 2  CN → A4 8.00 (0.00), A2 2.00 (23.11), no credit remaining
//	pay-1     EUR 25.00 → A2 23.11 (0.00), 1.89 unapplied
const (
	invCN = "INV-202609-111111111111-c0c0c0c0c0" // payerA, sourceX, EUR −30.00
	invA4 = "INV-202610-111111111111-a4a4a4a4a4" // payerA, sourceY, October, EUR 8.00
)

var (
	credit1At = time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)
	credit2At = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	payEURAt  = time.Date(2026, 11, 11, 12, 0, 0, 0, time.UTC)
)

// invoiceCN: sourceX's September credits exceed its charges, in EUR.
func invoiceCN() *billingv1.Invoice {
	l := line(1, accountX1, "AmazonEC2", sep, "-30.00", "DE", "REVERSE_CHARGE")
	l.BilledCost, l.FxRate, l.Converted = "-33.3333", "0.9", "-29.99997"
	return &billingv1.Invoice{
		InvoiceId: invCN, PayerAccountId: payerA, Month: sep, SourceAccountId: sourceX, ReceiverAccountId: sourceX,
		Seller: sellerEMEA, Currency: "EUR", InvoiceDate: "2026-10-02",
		Lines:    []*billingv1.InvoiceLine{l},
		Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "DE", Reason: "REVERSE_CHARGE", RatePercentage: "0", Taxable: "-30.00", Tax: "0.00"}},
		Subtotal: "-30.00", Tax: "0.00", Total: "-30.00",
	}
}

// invoiceA4: payerA's October invoice for sourceY in EUR, reverse charge.
func invoiceA4() *billingv1.Invoice {
	return &billingv1.Invoice{
		InvoiceId: invA4, PayerAccountId: payerA, Month: oct, SourceAccountId: sourceY, ReceiverAccountId: sourceY,
		Seller: sellerEMEA, Currency: "EUR", InvoiceDate: "2026-11-02",
		Lines:    []*billingv1.InvoiceLine{line(1, accountY1, "AmazonEC2", oct, "8.00", "DE", "REVERSE_CHARGE")},
		Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "DE", Reason: "REVERSE_CHARGE", RatePercentage: "0", Taxable: "8.00", Tax: "0.00"}},
		Subtotal: "8.00", Tax: "0.00", Total: "8.00",
	}
}

// creditApplied is a CreditApplied recorded at t.
func creditApplied(at time.Time, payer, note, source, currency, amount, remaining string, allocs ...*billingv1.PaymentAllocation) *billingv1.Event {
	return envelope(at, &billingv1.Event{Payload: &billingv1.Event_CreditApplied{CreditApplied: &billingv1.CreditApplied{
		PayerAccountId: payer, CreditNoteId: note, BillSourceAccountId: source, Currency: currency,
		Amount: amount, Allocations: allocs, RemainingCredit: remaining,
	}}})
}

// appendCreditScenario appends the scenario up to credit 1 (first) or the rest
// (not first), and returns the store's last position.
func appendCreditScenario(t *testing.T, s eventstore.Store, first bool) uint64 {
	t.Helper()
	if first {
		appendTo(t, s, domain.MonthStream(payerA, sep), closeEvents(closeSep, payerA, sep, 3, invoiceA1(), invoiceA2(), invoiceCN())...)
		appendTo(t, s, domain.ReceivableStream(payerA), posted(closeSep, payerA, sep, invoiceA1(), invoiceA2(), invoiceCN()))
		appendTo(t, s, domain.ReceivableStream(payerA), creditApplied(credit1At, payerA, invCN, sourceX, "EUR", "20.00", "10.00",
			alloc(invA2, sourceY, "20.00", "25.11")))
		return lastPosition(t, s)
	}
	appendTo(t, s, domain.MonthStream(payerA, oct), closeEvents(closeOct, payerA, oct, 1, invoiceA4())...)
	appendTo(t, s, domain.ReceivableStream(payerA), posted(closeOct, payerA, oct, invoiceA4()))
	appendTo(t, s, domain.ReceivableStream(payerA), creditApplied(credit2At, payerA, invCN, sourceX, "EUR", "10.00", "0.00",
		alloc(invA4, sourceY, "8.00", "0.00"), alloc(invA2, sourceY, "2.00", "23.11")))
	appendTo(t, s, domain.ReceivableStream(payerA), payment(payEURAt, payerA, "pay-1", "25.00", "EUR",
		billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER, "1.89", alloc(invA2, sourceY, "23.11", "0.00")))
	return lastPosition(t, s)
}

func TestY3_PaymentsReadModelShowsCreditNotesTheirApplicationsAndBalances(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		ctx := context.Background()
		db := openDB(t, rm.Target(t))
		pos := appendCreditScenario(t, s, true)
		cfg := projections.RunnerConfig{IdleInterval: 10 * time.Millisecond}
		inv := start(t, db, s, projections.Invoices{}, cfg)
		pay := start(t, db, s, projections.Payments{}, cfg)
		waitFor(t, inv, pos)
		waitFor(t, pay, pos)

		st := func(i *billingv1.Invoice, paid, outstanding, status, applied, remaining string) *billingv1.InvoicePayment {
			return &billingv1.InvoicePayment{InvoiceId: i.GetInvoiceId(), PayerAccountId: i.GetPayerAccountId(),
				Month: i.GetMonth(), SourceAccountId: i.GetSourceAccountId(), InvoiceUnitId: i.GetInvoiceUnitId(),
				Seller: i.GetSeller(), Currency: i.GetCurrency(), Issued: i.GetTotal(), Paid: paid,
				Outstanding: outstanding, Status: status, CreditApplied: applied, RemainingCredit: remaining}
		}
		a1 := st(invoiceA1(), "0.00", "135.92", "OPEN", "0.00", "0.00")
		usd := &billingv1.PayerBalance{PayerAccountId: payerA, Currency: "USD", Issued: "135.92", Paid: "0.00", Outstanding: "135.92",
			UnappliedCredit: "0.00", CreditNotes: "0.00", Balance: "135.92"}
		xUSD := &billingv1.SourceBalance{PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "USD", Issued: "135.92", Paid: "0.00",
			Outstanding: "135.92", CreditNotes: "0.00", Balance: "135.92"}
		app1 := &billingv1.CreditApplicationRow{PayerAccountId: payerA, CreditNoteId: invCN, Seq: 1, BillSourceAccountId: sourceX,
			Currency: "EUR", Amount: "20.00", RemainingCredit: "10.00", AppliedAt: "2026-10-05T12:00:00Z",
			Allocations: []*billingv1.PaymentAllocation{alloc(invA2, sourceY, "20.00", "25.11")}}

		// Part of the credit applied: 10.00 of it still counts against the balance.
		got, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{PayerAccountId: payerA})
		if err != nil {
			t.Fatal(err)
		}
		assertProto(t, "after credit 1", got, &billingv1.ReportPaymentsResponse{
			Invoices: []*billingv1.InvoicePayment{a1, st(invoiceCN(), "0.00", "0.00", "CREDIT", "20.00", "10.00"),
				st(invoiceA2(), "20.00", "25.11", "PARTIALLY_PAID", "0.00", "0.00")},
			PayerBalances: []*billingv1.PayerBalance{
				{PayerAccountId: payerA, Currency: "EUR", Issued: "15.11", Paid: "20.00", Outstanding: "25.11", UnappliedCredit: "0.00",
					CreditNotes: "10.00", Balance: "15.11"},
				usd,
			},
			SourceBalances: []*billingv1.SourceBalance{
				{PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "EUR", Issued: "-30.00", Paid: "0.00", Outstanding: "0.00",
					CreditNotes: "10.00", Balance: "-10.00"},
				xUSD,
				{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "45.11", Paid: "20.00", Outstanding: "25.11",
					CreditNotes: "0.00", Balance: "25.11"},
			},
			Payments:           []*billingv1.PaymentRow{},
			CreditApplications: []*billingv1.CreditApplicationRow{app1},
			Checkpoint:         pos,
		})
		invs, err := db.ReportInvoices(ctx, &billingv1.ReportInvoicesRequest{Month: sep, PayerAccountId: payerA, SourceAccountId: sourceX})
		if err != nil {
			t.Fatal(err)
		}
		if r := invs.GetRows(); len(r) != 2 || r[0].GetInvoiceId() != invCN || r[0].GetStatus() != "CREDIT" || r[0].GetOutstanding() != "0.00" || r[0].GetPaid() != "0.00" {
			t.Fatalf("ReportInvoices shows %v", r)
		}
		sepBefore, err := db.InvoiceDigests(ctx, sep)
		if err != nil {
			t.Fatal(err)
		}

		// All of it applied, then a payment.
		pos = appendCreditScenario(t, s, false)
		waitFor(t, inv, pos)
		waitFor(t, pay, pos)
		a2 := st(invoiceA2(), "45.11", "0.00", "PAID", "0.00", "0.00")
		cn := st(invoiceCN(), "0.00", "0.00", "CREDIT_APPLIED", "30.00", "0.00")
		a4 := st(invoiceA4(), "8.00", "0.00", "PAID", "0.00", "0.00")
		app2 := &billingv1.CreditApplicationRow{PayerAccountId: payerA, CreditNoteId: invCN, Seq: 2, BillSourceAccountId: sourceX,
			Currency: "EUR", Amount: "10.00", RemainingCredit: "0.00", AppliedAt: "2026-11-10T12:00:00Z",
			Allocations: []*billingv1.PaymentAllocation{alloc(invA4, sourceY, "8.00", "0.00"), alloc(invA2, sourceY, "2.00", "23.11")}}
		pay1 := &billingv1.PaymentRow{PaymentId: "pay-1", PayerAccountId: payerA, Amount: "25.00", Currency: "EUR",
			Method: "BANK_TRANSFER", ReceivedAt: "2026-11-11T12:00:00Z", Unapplied: "1.89", Refunded: "0.00",
			Allocations: []*billingv1.PaymentAllocation{alloc(invA2, sourceY, "23.11", "0.00")}}
		xEUR := &billingv1.SourceBalance{PayerAccountId: payerA, SourceAccountId: sourceX, Currency: "EUR", Issued: "-30.00", Paid: "0.00",
			Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00"}
		cases := []struct {
			req  *billingv1.ReportPaymentsRequest
			want *billingv1.ReportPaymentsResponse
		}{
			{&billingv1.ReportPaymentsRequest{PayerAccountId: payerA}, &billingv1.ReportPaymentsResponse{
				Invoices: []*billingv1.InvoicePayment{a1, cn, a2, a4},
				PayerBalances: []*billingv1.PayerBalance{
					{PayerAccountId: payerA, Currency: "EUR", Issued: "23.11", Paid: "53.11", Outstanding: "0.00", UnappliedCredit: "1.89",
						CreditNotes: "0.00", Balance: "-1.89"},
					usd,
				},
				SourceBalances: []*billingv1.SourceBalance{xEUR, xUSD,
					{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "53.11", Paid: "53.11", Outstanding: "0.00",
						CreditNotes: "0.00", Balance: "0.00"},
				},
				Payments:           []*billingv1.PaymentRow{pay1},
				CreditApplications: []*billingv1.CreditApplicationRow{app1, app2},
			}},
			// October: A4 only, settled by the second application (only that
			// allocation shown); the payment went to September's A2.
			{&billingv1.ReportPaymentsRequest{Month: oct}, &billingv1.ReportPaymentsResponse{
				Invoices: []*billingv1.InvoicePayment{a4},
				PayerBalances: []*billingv1.PayerBalance{
					{PayerAccountId: payerA, Currency: "EUR", Issued: "8.00", Paid: "8.00", Outstanding: "0.00", UnappliedCredit: "1.89",
						CreditNotes: "0.00", Balance: "-1.89"},
				},
				SourceBalances: []*billingv1.SourceBalance{
					{PayerAccountId: payerA, SourceAccountId: sourceY, Currency: "EUR", Issued: "8.00", Paid: "8.00", Outstanding: "0.00",
						CreditNotes: "0.00", Balance: "0.00"},
				},
				Payments: []*billingv1.PaymentRow{},
				CreditApplications: []*billingv1.CreditApplicationRow{{PayerAccountId: payerA, CreditNoteId: invCN, Seq: 2,
					BillSourceAccountId: sourceX, Currency: "EUR", Amount: "10.00", RemainingCredit: "0.00", AppliedAt: "2026-11-10T12:00:00Z",
					Allocations: []*billingv1.PaymentAllocation{alloc(invA4, sourceY, "8.00", "0.00")}}},
			}},
			// sourceX: its credit note is listed, so every application shows in full.
			{&billingv1.ReportPaymentsRequest{SourceAccountId: sourceX}, &billingv1.ReportPaymentsResponse{
				Invoices: []*billingv1.InvoicePayment{a1, cn},
				PayerBalances: []*billingv1.PayerBalance{
					{PayerAccountId: payerA, Currency: "EUR", Issued: "-30.00", Paid: "0.00", Outstanding: "0.00", UnappliedCredit: "1.89",
						CreditNotes: "0.00", Balance: "-1.89"},
					usd,
				},
				SourceBalances:     []*billingv1.SourceBalance{xEUR, xUSD},
				Payments:           []*billingv1.PaymentRow{},
				CreditApplications: []*billingv1.CreditApplicationRow{app1, app2},
			}},
		}
		for _, c := range cases {
			got, err := db.ReportPayments(ctx, c.req)
			if err != nil {
				t.Fatalf("ReportPayments(%v): %v", c.req, err)
			}
			c.want.Checkpoint = pos
			assertProto(t, "ReportPayments("+c.req.String()+")", got, c.want)
		}

		// Replay (R2): each month's digests equal the live ones, and the
		// payments digest covers the credit note's state and its allocations.
		for _, month := range []string{sep, oct} {
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
			for i, d := range replay.GetDigests()[2:] {
				assertProto(t, month+" "+d.GetName()+" replay vs live", d, live[i])
			}
		}
		sepDigests, err := db.InvoiceDigests(ctx, sep)
		if err != nil {
			t.Fatal(err)
		}
		assertProto(t, "September payments totals", &billingv1.ReadModelDigest{Totals: sepDigests[2].GetTotals()},
			&billingv1.ReadModelDigest{Totals: map[string]string{"allocations": "1", "credit_allocations": "3",
				"issued_USD": "135.92", "paid_USD": "0", "outstanding_USD": "135.92",
				"issued_EUR": "15.11", "paid_EUR": "45.11", "outstanding_EUR": "0", "remaining_credit_EUR": "0"}})
		octDigests, err := db.InvoiceDigests(ctx, oct)
		if err != nil {
			t.Fatal(err)
		}
		if got := octDigests[2].GetTotals()["credit_allocations"]; got != "1" {
			t.Fatalf("October credit allocations %s, want 1", got)
		}
		// As of before the second application: the credit note had 10.00 left.
		asOf, err := projections.ReplayMonthWith(ctx, s, sep, projections.ReplayOptions{Invoices: true, AsOf: credit2At.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := asOf.GetDigests()[4].GetDigest(), sepBefore[2].GetDigest(); got != want {
			t.Fatalf("payments digest as of before credit 2 = %s, the live one then was %s", got, want)
		}
	})
}

// TestPaymentsRefuseCreditApplicationsWithoutACreditNote: credit applied from
// an invoice, from a credit note never posted, or to a credit note, stops the
// projection at that event.
func TestPaymentsRefuseCreditApplicationsWithoutACreditNote(t *testing.T) {
	t.Parallel()
	post := posted(closeSep, payerA, sep, invoiceA1(), invoiceA2(), invoiceCN())
	cases := []struct {
		name string
		ev   *billingv1.Event
		want string
	}{
		{"from an invoice", creditApplied(credit1At, payerA, invA2, sourceY, "EUR", "1.00", "0.00", alloc(invA2, sourceY, "1.00", "44.11")),
			"is not a credit note"},
		{"from a credit note never posted", creditApplied(credit1At, payerA, "INV-NOPE", sourceX, "EUR", "1.00", "0.00"),
			`credit applied from "INV-NOPE", which was never posted`},
		{"to a credit note", creditApplied(credit1At, payerA, invCN, sourceX, "EUR", "1.00", "29.00", alloc(invCN, sourceX, "1.00", "0.00")),
			"applied to credit note"},
		{"to an invoice never posted", creditApplied(credit1At, payerA, invCN, sourceX, "EUR", "1.00", "29.00", alloc(invA3, sourceX, "1.00", "0.00")),
			"which was never posted"},
		{"more credit than it had", creditApplied(credit1At, payerA, invCN, sourceX, "EUR", "1.00", "31.00", alloc(invA2, sourceY, "1.00", "44.11")),
			"outside 0..30.00"},
		{"in another currency", creditApplied(credit1At, payerA, invCN, sourceX, "USD", "1.00", "29.00", alloc(invA1, sourceX, "1.00", "134.92")),
			"in EUR applied in USD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := openDB(t, tempDBPath(t))
			err := db.WithTx(context.Background(), func(tx *sql.Tx) error {
				for i, ev := range []*billingv1.Event{post, c.ev} {
					ev.Stream = domain.ReceivableStream(payerA)
					if err := (projections.Payments{}).Apply(context.Background(), tx, eventstore.Record{Event: ev, Position: uint64(i + 1)}); err != nil {
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
	// A payment allocating to a credit note is refused too.
	s := memstore.New()
	appendTo(t, s, domain.ReceivableStream(payerA), posted(closeSep, payerA, sep, invoiceCN()),
		payment(pay1At, payerA, "pay-1", "1.00", "EUR", billingv1.PaymentMethod_PAYMENT_METHOD_CARD, "0.00", alloc(invCN, sourceX, "1.00", "0.00")))
	db := openDB(t, tempDBPath(t))
	rn := start(t, db, s, projections.Payments{}, projections.RunnerConfig{IdleInterval: time.Hour})
	if err := rn.wait(t); err == nil || !strings.Contains(err.Error(), "a credit note owes nothing") {
		t.Fatalf("runner error = %v, want a refusal of the allocation to a credit note", err)
	}
}

// TestPostedCreditNoteAndEvolveCreditNote: a negative total posts as a credit
// note with all its credit remaining; each application sets the remaining
// credit from the event and the status follows.
func TestPostedCreditNoteAndEvolveCreditNote(t *testing.T) {
	t.Parallel()
	cn, err := projections.PostedReceivable(payerA, sep, &billingv1.InvoiceSummary{InvoiceId: invCN, SourceAccountId: sourceX,
		Seller: sellerEMEA, Currency: "EUR", Total: "-30.00"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := readmodel.ReceivableRow{InvoiceID: invCN, PayerAccountID: payerA, Month: sep, SourceAccountID: sourceX,
		Seller: sellerEMEA, Currency: "EUR", Issued: "-30.00", Paid: "0.00", Outstanding: "0.00", Status: readmodel.InvoiceCredit,
		CreditApplied: "0.00", RemainingCredit: "30.00", PostedPosition: 4, UpdatedPosition: 4}
	if *cn != want {
		t.Fatalf("posted = %+v\nwant %+v", cn, want)
	}
	one, err := projections.EvolveCreditNote(cn, creditApplied(credit1At, payerA, invCN, sourceX, "EUR", "12.50", "17.50").GetCreditApplied(), 6)
	if err != nil {
		t.Fatal(err)
	}
	want.CreditApplied, want.RemainingCredit, want.UpdatedPosition = "12.50", "17.50", 6
	if *one != want {
		t.Fatalf("after 12.50 = %+v\nwant %+v", one, want)
	}
	two, err := projections.EvolveCreditNote(one, creditApplied(credit2At, payerA, invCN, sourceX, "EUR", "17.50", "0.00").GetCreditApplied(), 9)
	if err != nil {
		t.Fatal(err)
	}
	want.CreditApplied, want.RemainingCredit, want.Status, want.UpdatedPosition = "30.00", "0.00", readmodel.InvoiceCreditApplied, 9
	if *two != want {
		t.Fatalf("after all = %+v\nwant %+v", two, want)
	}
	if _, err := projections.EvolveCreditNote(two, creditApplied(credit2At, payerA, invCN, sourceX, "EUR", "1", "0.00").GetCreditApplied(), 8); err == nil ||
		!strings.Contains(err.Error(), "applied twice?") {
		t.Fatalf("an application before the row's position: %v", err)
	}
	if cn.RemainingCredit != "30.00" || one.RemainingCredit != "17.50" {
		t.Fatal("EvolveCreditNote modified its input")
	}
}
