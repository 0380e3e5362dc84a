package commands_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Credit notes through the real pipeline (Y2, Y3): the close scenario's payer
// P, with September usage of A (USD 10.00), of B's main unit (USD 20.00) and a
// refund on B's exempt research unit (USD −32.5556). Computed by hand:
//
//	A             USD  10.00 + 10.25 % US-WA 1.025 → 1.03          =  11.03
//	B de-main     EUR  20.00 × 0.9215 = 18.43 + 19 % 3.5017 → 3.50  =  21.93
//	B de-research EUR  −32.5556 × 0.9215 = −29.9999854 → −30.00, exempt = −30.00: a credit note
//
// October: B's main unit USD 20.00 at the rate in force on 2 November (0.5):
// 10.00 + 19 % 1.90 = 11.90 EUR.

// creditClose sets up the scenario and closes September; it returns the ids
// of A's invoice, B's main invoice and the credit note.
func creditClose(t *testing.T, store eventstore.Store, p commands.Executor, clock *fixedClock) (invA, invMain, note string) {
	t.Helper()
	closeWorld(t, p, clock, true)
	clock.Set("2026-09-20T00:00:00Z")
	w := usageWorld(t, store, clock)
	if res := ingest(t, w, svcRec("a-1", orgA, "AmazonEC2", "2026-09-01T00:00:00Z", "10.00"),
		svcRec("b-1", orgB, "AmazonEC2", "2026-09-04T00:00:00Z", "20.00"),
		svcRec("b-refund", acctB2, "AmazonEC2", "2026-09-06T00:00:00Z", "-32.5556")); res.GetAccepted() != 3 {
		t.Fatalf("accepted %d, want 3: %v", res.GetAccepted(), statuses(res))
	}
	clock.Set("2026-10-02T09:30:00Z")
	if res := must(t, p, closeMonth(payerP, "2026-09")); res.GetCreated()["invoice_count"] != "3" {
		t.Fatalf("created %v, want 3 invoices", res.GetCreated())
	}
	sep, _ := domain.ParseMonth("2026-09")
	invA = domain.InvoiceID(payerP, sep, orgA, "", sellerUS)
	invMain = domain.InvoiceID(payerP, sep, orgB, "de-main", sellerEMEA)
	note = domain.InvoiceID(payerP, sep, orgB, "de-research", sellerEMEA)
	return invA, invMain, note
}

func receivableNow(t *testing.T, store eventstore.Store) (domain.Receivable, int) {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), domain.ReceivableStream(payerP))
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	return domain.FoldReceivable(evs), len(recs)
}

// wantEUR checks the payer's EUR balance.
func wantEUR(t *testing.T, store eventstore.Store, step string, want domain.ReceivableBalance) {
	t.Helper()
	r, _ := receivableNow(t, store)
	if got := r.Balance("EUR"); got != want {
		t.Errorf("%s: EUR balance\n got %+v\nwant %+v", step, got, want)
	}
}

func apply(note, amount string, invoices ...string) *billingv1.ApplyCredit {
	return &billingv1.ApplyCredit{PayerAccountId: payerP, CreditNoteId: note, Amount: amount, InvoiceIds: invoices}
}

// wantRejected runs cmd, wants code with the message naming each fragment,
// and checks that nothing was appended to the receivable.
func wantRejected(t *testing.T, store eventstore.Store, p commands.Executor, cmd any, code domain.Code, fragments ...string) {
	t.Helper()
	_, before := receivableNow(t, store)
	_, err := exec(t, p, cmd)
	if got := domain.CodeOf(err); got != code {
		t.Fatalf("%T: %v, want %s", cmd, err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%T: %q does not name %q", cmd, err, f)
		}
	}
	if _, after := receivableNow(t, store); after != before {
		t.Fatalf("%T was rejected but the receivable went from %d to %d events", cmd, before, after)
	}
}

func TestY2_ACreditNoteIsAppliedThroughThePipelineAndTheReadModelShowsIt(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		invA, invMain, note := creditClose(t, store, p, clock)
		r, _ := receivableNow(t, store)
		for id, want := range map[string]string{invA: "11.03 USD OPEN", invMain: "21.93 EUR OPEN", note: "-30.00 EUR CREDIT"} {
			inv, _ := r.Invoice(id)
			if got := inv.Total() + " " + inv.Currency() + " " + string(inv.Status()); got != want {
				t.Fatalf("invoice %s: %s, want %s", id, got, want)
			}
		}
		wantEUR(t, store, "after the close", domain.ReceivableBalance{Currency: "EUR", Invoiced: "-8.07", Paid: "0.00", Outstanding: "21.93",
			Unapplied: "0.00", Refunded: "0.00", CreditNotes: "30.00", Balance: "-8.07", OpenInvoices: 1})

		// A payment never settles a credit note.
		wantRejected(t, store, p, &billingv1.RecordPayment{PaymentId: "pay-cn", PayerAccountId: payerP, Amount: "5", Currency: "EUR",
			Method: "CARD", InvoiceIds: []string{note}}, domain.CodeFailedPrecondition, note, "is a credit note; apply it with ApplyCredit")

		// Part of the credit: 10.00 to B's main invoice.
		res := must(t, p, apply(note, "10"))
		if res.GetAggregateId() != note {
			t.Fatalf("result %v", res)
		}
		wantEUR(t, store, "after 10.00 applied", domain.ReceivableBalance{Currency: "EUR", Invoiced: "-8.07", Paid: "10.00", Outstanding: "11.93",
			Unapplied: "0.00", Refunded: "0.00", CreditNotes: "20.00", Balance: "-8.07", OpenInvoices: 1})

		// Every rejection names what is wrong and appends nothing.
		wantRejected(t, store, p, apply("INV-NOPE", ""), domain.CodeNotFound, "INV-NOPE", payerP)
		wantRejected(t, store, p, apply(invMain, ""), domain.CodeFailedPrecondition, invMain, "is not a credit note")
		wantRejected(t, store, p, apply(note, "", invA), domain.CodeCurrencyMismatch, invA, "USD", "EUR")
		wantRejected(t, store, p, apply(note, "", note), domain.CodeFailedPrecondition, note, "is itself a credit note")
		wantRejected(t, store, p, apply(note, "", "INV-NOPE"), domain.CodeNotFound, "INV-NOPE")
		wantRejected(t, store, p, apply(note, "20.01"), domain.CodeInvalidArgument, "20.01", "more than the remaining credit 20.00 EUR")
		wantRejected(t, store, p, apply(note, "1.001"), domain.CodeInvalidArgument, "1.001", "more than 2 decimals")
		wantRejected(t, store, p, apply(note, "0"), domain.CodeInvalidArgument, "must be > 0")

		// The rest, once (the request id makes a retry harmless): B's invoice
		// takes 11.93, 8.07 stays on the credit note.
		rest := apply(note, "")
		rest.RequestId = "apply-rest"
		first := must(t, p, rest)
		again := must(t, p, rest)
		if first.GetPosition() != again.GetPosition() {
			t.Fatalf("the retried request appended again: positions %d and %d", first.GetPosition(), again.GetPosition())
		}
		wantEUR(t, store, "after the rest applied", domain.ReceivableBalance{Currency: "EUR", Invoiced: "-8.07", Paid: "21.93", Outstanding: "0.00",
			Unapplied: "0.00", Refunded: "0.00", CreditNotes: "8.07", Balance: "-8.07", OpenInvoices: 0})
		wantRejected(t, store, p, apply(note, "", invMain), domain.CodeFailedPrecondition, invMain, "already paid")
		wantRejected(t, store, p, apply(note, ""), domain.CodeFailedPrecondition, "no open invoice in EUR", "8.07 EUR stays")

		// October's invoice takes the 8.07 left.
		clock.Set("2026-10-20T00:00:00Z")
		w := usageWorld(t, store, clock)
		if res := ingest(t, w, svcRec("b-oct", orgB, "AmazonEC2", "2026-10-05T00:00:00Z", "20.00")); res.GetAccepted() != 1 {
			t.Fatalf("October usage: %v", statuses(res))
		}
		clock.Set("2026-11-02T09:30:00Z")
		must(t, p, closeMonth(payerP, "2026-10"))
		oct, _ := domain.ParseMonth("2026-10")
		invOct := domain.InvoiceID(payerP, oct, orgB, "de-main", sellerEMEA)
		must(t, p, apply(note, ""))
		r, _ = receivableNow(t, store)
		if n, _ := r.Invoice(note); n.Status() != domain.InvoiceCreditApplied || n.CreditApplied() != "30.00" || n.RemainingCredit() != "0.00" {
			t.Fatalf("credit note: %s applied %s remaining %s", n.Status(), n.CreditApplied(), n.RemainingCredit())
		}
		if o, _ := r.Invoice(invOct); o.Total() != "11.90" || o.Paid() != "8.07" || o.Outstanding() != "3.83" {
			t.Fatalf("October's invoice: total %s paid %s outstanding %s", o.Total(), o.Paid(), o.Outstanding())
		}
		wantEUR(t, store, "after all of it applied", domain.ReceivableBalance{Currency: "EUR", Invoiced: "3.83", Paid: "30.00", Outstanding: "3.83",
			Unapplied: "0.00", Refunded: "0.00", CreditNotes: "0.00", Balance: "3.83", OpenInvoices: 1})
		wantRejected(t, store, p, apply(note, ""), domain.CodeFailedPrecondition, note, "no credit left")
		var applied []string
		for _, c := range r.CreditApplications() {
			var allocs []string
			for _, a := range c.GetAllocations() {
				allocs = append(allocs, fmt.Sprintf("%s %s→%s", a.GetInvoiceId(), a.GetAmount(), a.GetOutstandingAfter()))
			}
			applied = append(applied, fmt.Sprintf("%s %s %s left %s [%s]", c.GetBillSourceAccountId(), c.GetCurrency(), c.GetAmount(),
				c.GetRemainingCredit(), strings.Join(allocs, ", ")))
		}
		if want := []string{
			orgB + " EUR 10.00 left 20.00 [" + invMain + " 10.00→11.93]",
			orgB + " EUR 11.93 left 8.07 [" + invMain + " 11.93→0.00]",
			orgB + " EUR 8.07 left 0.00 [" + invOct + " 8.07→3.83]",
		}; fmt.Sprint(applied) != fmt.Sprint(want) {
			t.Fatalf("credit applications\n got %v\nwant %v", applied, want)
		}

		// The payments read model, projected from the same store, says the
		// same, and a replay of each month equals it (R2).
		db := projectInvoices(t, store)
		rep, err := db.ReportPayments(context.Background(), &billingv1.ReportPaymentsRequest{PayerAccountId: payerP})
		if err != nil {
			t.Fatal(err)
		}
		var rows []string // by payer, month, source, invoice id
		for _, x := range rep.GetInvoices() {
			rows = append(rows, fmt.Sprintf("%s %s %s paid %s out %s applied %s left %s", x.GetInvoiceId(), x.GetStatus(), x.GetIssued(),
				x.GetPaid(), x.GetOutstanding(), x.GetCreditApplied(), x.GetRemainingCredit()))
		}
		if want := []string{
			invA + " OPEN 11.03 paid 0.00 out 11.03 applied 0.00 left 0.00",
			note + " CREDIT_APPLIED -30.00 paid 0.00 out 0.00 applied 30.00 left 0.00",
			invMain + " PAID 21.93 paid 21.93 out 0.00 applied 0.00 left 0.00",
			invOct + " PARTIALLY_PAID 11.90 paid 8.07 out 3.83 applied 0.00 left 0.00",
		}; fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Fatalf("read model invoices\n got %v\nwant %v", rows, want)
		}
		var bal []string
		for _, b := range rep.GetPayerBalances() {
			bal = append(bal, fmt.Sprintf("%s out %s credit %s unapplied %s balance %s", b.GetCurrency(), b.GetOutstanding(),
				b.GetCreditNotes(), b.GetUnappliedCredit(), b.GetBalance()))
		}
		if want := []string{"EUR out 3.83 credit 0.00 unapplied 0.00 balance 3.83", "USD out 11.03 credit 0.00 unapplied 0.00 balance 11.03"}; fmt.Sprint(bal) != fmt.Sprint(want) {
			t.Fatalf("read model balances\n got %v\nwant %v", bal, want)
		}
		if n := len(rep.GetCreditApplications()); n != 3 {
			t.Fatalf("read model: %d credit applications, want 3", n)
		}
		for _, month := range []string{"2026-09", "2026-10"} {
			checkReplayEqualsLive(t, store, db, month)
		}
	})
}

// TestY2_APaymentAndACreditNoteRacingForOneInvoiceSettleItOnce: both are
// decided on the payer's receivable stream, so the loser conflicts, is
// decided again against the winner's allocation, and is refused: the invoice
// is settled exactly once, by one of them.
func TestY2_APaymentAndACreditNoteRacingForOneInvoiceSettleItOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		_, invMain, note := creditClose(t, store, p, clock)
		p2 := commands.New(newStore(), clock, commands.Options{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []struct {
			p   commands.Executor
			cmd any
		}{
			{p, &billingv1.RecordPayment{PaymentId: "pay-race", PayerAccountId: payerP, Amount: "21.93", Currency: "EUR", Method: "CARD",
				InvoiceIds: []string{invMain}}},
			{p2, apply(note, "", invMain)},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.p.Execute(context.Background(), "test", request(c.cmd))
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("payment: %v; credit: %v; want exactly one accepted", errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && (domain.CodeOf(err) != domain.CodeFailedPrecondition || !strings.Contains(err.Error(), "already paid")) {
				t.Fatalf("the loser: %v, want FAILED_PRECONDITION already paid", err)
			}
		}
		r, n := receivableNow(t, store)
		inv, _ := r.Invoice(invMain)
		cn, _ := r.Invoice(note)
		if inv.Paid() != "21.93" || inv.Outstanding() != "0.00" || n != 2 {
			t.Fatalf("invoice paid %s outstanding %s, %d receivable events; want settled once in 2 events", inv.Paid(), inv.Outstanding(), n)
		}
		if wantLeft := map[bool]string{true: "30.00", false: "8.07"}[errs[0] == nil]; cn.RemainingCredit() != wantLeft {
			t.Fatalf("credit note: %s left, want %s", cn.RemainingCredit(), wantLeft)
		}
	})
}
