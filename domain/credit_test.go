package domain

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Credit notes (Y2, Y3): an invoice whose total is negative owes nothing and
// carries credit (−total) of its source organization, which ApplyCredit
// applies to the payer's open invoices of its currency.

func applyCmd(note, amount string, invoices ...string) *billingv1.ApplyCredit {
	return &billingv1.ApplyCredit{PayerAccountId: payerA, CreditNoteId: note, Amount: amount, InvoiceIds: invoices}
}

// applied is the CreditApplied change of payer A's credit note.
func applied(note, source, currency, amount, remaining string, allocs ...*billingv1.PaymentAllocation) Change {
	return Change{Stream: ReceivableStream(payerA), Events: evs(&billingv1.CreditApplied{
		PayerAccountId: payerA, CreditNoteId: note, BillSourceAccountId: source, Currency: currency,
		Amount: amount, Allocations: allocs, RemainingCredit: remaining,
	})}
}

// creditWorld: payer A's September close issues a credit note of −30.00 EUR
// (organization C's credits exceed its charges) and two invoices, B's 12.00
// EUR and A's own 10.00 EUR, in that order.
func creditWorld(t *testing.T) *scenario {
	t.Helper()
	return postInvoices(receivableWorld(t), payerA, "2026-09",
		invSummary("INV-09-B", "2026-09", sourceB, "EUR", "12.00"),
		invSummary("CN-09-C", "2026-09", orgC, "EUR", "-30.00"),
		invSummary("INV-09-A", "2026-09", payerA, "EUR", "10.00"))
}

// wantCreditNote checks a credit note's figures and status.
func wantCreditNote(t *testing.T, r Receivable, id, credit, applied, remaining string, status InvoiceStatus) {
	t.Helper()
	inv, ok := r.Invoice(id)
	if !ok {
		t.Fatalf("credit note %s unknown", id)
	}
	if !inv.IsCreditNote() || inv.Credit() != credit || inv.CreditApplied() != applied || inv.RemainingCredit() != remaining ||
		inv.Status() != status || inv.Outstanding() != "0.00" || inv.Paid() != "0.00" {
		t.Errorf("credit note %s: credit note %v, credit %s applied %s remaining %s %s (outstanding %s, paid %s); want %s %s %s %s, nothing outstanding or paid",
			id, inv.IsCreditNote(), inv.Credit(), inv.CreditApplied(), inv.RemainingCredit(), inv.Status(), inv.Outstanding(), inv.Paid(),
			credit, applied, remaining, status)
	}
}

func TestY2_ACreditNoteIsAppliedOldestFirstAndTheRestStays(t *testing.T) {
	s := creditWorld(t)
	r := receivableOf(s, payerA)
	wantCreditNote(t, r, "CN-09-C", "30.00", "0.00", "30.00", InvoiceCredit)
	wantInvoice(t, r, "INV-09-B", "0.00", "12.00", InvoiceOpen)

	// All the credit, oldest first: the two invoices take 22.00, 8.00 stays.
	s.When(applyCmd("CN-09-C", "")).Then(applied("CN-09-C", orgC, "EUR", "22.00", "8.00",
		alloc("INV-09-B", sourceB, "12.00", "0.00"),
		alloc("INV-09-A", payerA, "10.00", "0.00")))
	r = receivableOf(s, payerA)
	wantCreditNote(t, r, "CN-09-C", "30.00", "22.00", "8.00", InvoiceCredit)
	wantInvoice(t, r, "INV-09-B", "12.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-09-A", "10.00", "0.00", InvoicePaid)
	if got := r.CreditApplications(); len(got) != 1 || got[0].GetAmount() != "22.00" {
		t.Fatalf("credit applications %v", got)
	}

	// Nothing left to settle: the credit stays, nothing is appended.
	s.When(applyCmd("CN-09-C", "")).ThenError(CodeFailedPrecondition, payerA, "no open invoice in EUR", "CN-09-C", "8.00 EUR stays")
	wantStreamLen(t, s, 2)

	// October's invoice takes the rest; the credit note is then all applied.
	postInvoices(s, payerA, "2026-10", invSummary("INV-10-B", "2026-10", sourceB, "EUR", "20.00"))
	s.When(applyCmd("CN-09-C", "")).Then(applied("CN-09-C", orgC, "EUR", "8.00", "0.00",
		alloc("INV-10-B", sourceB, "8.00", "12.00")))
	r = receivableOf(s, payerA)
	wantCreditNote(t, r, "CN-09-C", "30.00", "30.00", "0.00", InvoiceCreditApplied)
	wantInvoice(t, r, "INV-10-B", "8.00", "12.00", InvoicePartiallyPaid)
	s.When(applyCmd("CN-09-C", "")).ThenError(CodeFailedPrecondition, "CN-09-C", "no credit left", "30.00 EUR")
	wantStreamLen(t, s, 4)
	checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
}

func TestY2_ACreditNoteSettlesNamedInvoicesInTheGivenOrderUpToTheAmount(t *testing.T) {
	s := creditWorld(t)
	// 15.00 of the credit: A's invoice first, then part of B's.
	s.When(applyCmd("CN-09-C", "15", "INV-09-A", "INV-09-B")).Then(applied("CN-09-C", orgC, "EUR", "15.00", "15.00",
		alloc("INV-09-A", payerA, "10.00", "0.00"),
		alloc("INV-09-B", sourceB, "5.00", "7.00")))
	// A named invoice takes no more than it owes; the rest of the amount stays.
	s.When(applyCmd("CN-09-C", "12.5", "INV-09-B")).Then(applied("CN-09-C", orgC, "EUR", "7.00", "8.00",
		alloc("INV-09-B", sourceB, "7.00", "0.00")))
	r := receivableOf(s, payerA)
	wantCreditNote(t, r, "CN-09-C", "30.00", "22.00", "8.00", InvoiceCredit)
	wantInvoice(t, r, "INV-09-A", "10.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-09-B", "12.00", "0.00", InvoicePaid)
	checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
}

func TestY3_BalancesIncludeCreditNotes(t *testing.T) {
	s := creditWorld(t)
	wantBalances := func(step string, payer ReceivableBalance, sources ...SourceBalance) {
		t.Helper()
		r := receivableOf(s, payerA)
		if diff := cmp.Diff([]ReceivableBalance{payer}, r.Balances()); diff != "" {
			t.Errorf("%s: payer balances (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(sources, r.SourceBalances()); diff != "" {
			t.Errorf("%s: source balances (-want +got):\n%s", step, diff)
		}
		checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
	}
	// Before: the payer owes 22.00 and holds 30.00 of credit: in credit by 8.00.
	wantBalances("before",
		ReceivableBalance{Currency: "EUR", Invoiced: "-8.00", Paid: "0.00", Outstanding: "22.00", Unapplied: "0.00", Refunded: "0.00",
			CreditNotes: "30.00", Balance: "-8.00", OpenInvoices: 2},
		SourceBalance{SourceAccountID: payerA, Currency: "EUR", Invoiced: "10.00", Paid: "0.00", Outstanding: "10.00", CreditNotes: "0.00", Balance: "10.00", OpenInvoices: 1},
		SourceBalance{SourceAccountID: sourceB, Currency: "EUR", Invoiced: "12.00", Paid: "0.00", Outstanding: "12.00", CreditNotes: "0.00", Balance: "12.00", OpenInvoices: 1},
		SourceBalance{SourceAccountID: orgC, Currency: "EUR", Invoiced: "-30.00", Paid: "0.00", Outstanding: "0.00", CreditNotes: "30.00", Balance: "-30.00", OpenInvoices: 0})

	// Partly applied: 5.00 to A's invoice. The payer's balance does not move;
	// A's outstanding and C's credit both drop by 5.00.
	s.Do(applyCmd("CN-09-C", "5.00", "INV-09-A"))
	wantBalances("after 5.00 applied",
		ReceivableBalance{Currency: "EUR", Invoiced: "-8.00", Paid: "5.00", Outstanding: "17.00", Unapplied: "0.00", Refunded: "0.00",
			CreditNotes: "25.00", Balance: "-8.00", OpenInvoices: 2},
		SourceBalance{SourceAccountID: payerA, Currency: "EUR", Invoiced: "10.00", Paid: "5.00", Outstanding: "5.00", CreditNotes: "0.00", Balance: "5.00", OpenInvoices: 1},
		SourceBalance{SourceAccountID: sourceB, Currency: "EUR", Invoiced: "12.00", Paid: "0.00", Outstanding: "12.00", CreditNotes: "0.00", Balance: "12.00", OpenInvoices: 1},
		SourceBalance{SourceAccountID: orgC, Currency: "EUR", Invoiced: "-30.00", Paid: "0.00", Outstanding: "0.00", CreditNotes: "25.00", Balance: "-25.00", OpenInvoices: 0})

	// A payment of 20.00, oldest first, skips the credit note: 12.00 to B,
	// 5.00 to A, 3.00 unapplied.
	s.When(payCmd("pay-1", "20", "EUR")).Then(recorded("pay-1", "20.00", "EUR", "3.00",
		alloc("INV-09-B", sourceB, "12.00", "0.00"),
		alloc("INV-09-A", payerA, "5.00", "0.00")))
	wantBalances("after the payment",
		ReceivableBalance{Currency: "EUR", Invoiced: "-8.00", Paid: "22.00", Outstanding: "0.00", Unapplied: "3.00", Refunded: "0.00",
			CreditNotes: "25.00", Balance: "-28.00", OpenInvoices: 0},
		SourceBalance{SourceAccountID: payerA, Currency: "EUR", Invoiced: "10.00", Paid: "10.00", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00", OpenInvoices: 0},
		SourceBalance{SourceAccountID: sourceB, Currency: "EUR", Invoiced: "12.00", Paid: "12.00", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00", OpenInvoices: 0},
		SourceBalance{SourceAccountID: orgC, Currency: "EUR", Invoiced: "-30.00", Paid: "0.00", Outstanding: "0.00", CreditNotes: "25.00", Balance: "-25.00", OpenInvoices: 0})

	// Fully applied: C's October invoice of 40.00 takes the 25.00 left.
	postInvoices(s, payerA, "2026-10", invSummary("INV-10-C", "2026-10", orgC, "EUR", "40.00"))
	s.When(applyCmd("CN-09-C", "")).Then(applied("CN-09-C", orgC, "EUR", "25.00", "0.00", alloc("INV-10-C", orgC, "25.00", "15.00")))
	wantCreditNote(t, receivableOf(s, payerA), "CN-09-C", "30.00", "30.00", "0.00", InvoiceCreditApplied)
	wantBalances("after all of it applied",
		ReceivableBalance{Currency: "EUR", Invoiced: "32.00", Paid: "47.00", Outstanding: "15.00", Unapplied: "3.00", Refunded: "0.00",
			CreditNotes: "0.00", Balance: "12.00", OpenInvoices: 1},
		SourceBalance{SourceAccountID: payerA, Currency: "EUR", Invoiced: "10.00", Paid: "10.00", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00", OpenInvoices: 0},
		SourceBalance{SourceAccountID: sourceB, Currency: "EUR", Invoiced: "12.00", Paid: "12.00", Outstanding: "0.00", CreditNotes: "0.00", Balance: "0.00", OpenInvoices: 0},
		SourceBalance{SourceAccountID: orgC, Currency: "EUR", Invoiced: "10.00", Paid: "25.00", Outstanding: "15.00", CreditNotes: "0.00", Balance: "15.00", OpenInvoices: 1})
}

func TestY2_APaymentNeverSettlesACreditNote(t *testing.T) {
	s := creditWorld(t)
	s.When(payCmd("pay-1", "10", "EUR", "CN-09-C")).ThenError(CodeFailedPrecondition, "CN-09-C", "is a credit note; apply it with ApplyCredit")
	s.When(payCmd("pay-1", "10", "EUR", "INV-09-A", "CN-09-C")).ThenError(CodeFailedPrecondition, "CN-09-C", "is a credit note")
	wantStreamLen(t, s, 1)
	// Oldest first goes past it.
	s.When(payCmd("pay-1", "50", "EUR")).Then(recorded("pay-1", "50.00", "EUR", "28.00",
		alloc("INV-09-B", sourceB, "12.00", "0.00"),
		alloc("INV-09-A", payerA, "10.00", "0.00")))
	wantCreditNote(t, receivableOf(s, payerA), "CN-09-C", "30.00", "0.00", "30.00", InvoiceCredit)

	// A payer whose only invoice in a currency is a credit note may still pay
	// in it: the payment is all unapplied credit.
	postInvoices(s, payerA, "2026-10", invSummary("CN-10-B", "2026-10", sourceB, "JPY", "-500"))
	s.When(payCmd("pay-2", "700", "JPY")).Then(recorded("pay-2", "700", "JPY", "700"))
	if b := receivableOf(s, payerA).Balance("JPY"); b.CreditNotes != "500" || b.Unapplied != "700" || b.Balance != "-1200" || b.Outstanding != "0" {
		t.Fatalf("JPY balance %+v", b)
	}
	checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
}

func TestY2_AZeroInvoiceStaysPaidAndIsNoCreditNote(t *testing.T) {
	s := postInvoices(receivableWorld(t), payerA, "2026-09", invSummary("INV-0", "2026-09", sourceB, "USD", "0.00"))
	r := receivableOf(s, payerA)
	wantInvoice(t, r, "INV-0", "0.00", "0.00", InvoicePaid)
	if inv, _ := r.Invoice("INV-0"); inv.IsCreditNote() || inv.RemainingCredit() != "0.00" {
		t.Fatalf("a zero invoice is a credit note: %v, credit %s", inv.IsCreditNote(), inv.RemainingCredit())
	}
	if b := r.Balance("USD"); b.CreditNotes != "0.00" || b.Balance != "0.00" || b.OpenInvoices != 0 {
		t.Fatalf("balance %+v", b)
	}
	s.When(applyCmd("INV-0", "")).ThenError(CodeFailedPrecondition, "INV-0", "is not a credit note", "0.00 USD")
	wantStreamLen(t, s, 1)
}

func TestY2_ApplyCreditRejectionsNameWhatIsWrongAndAppendNothing(t *testing.T) {
	// creditWorld, plus a paid EUR invoice, a USD invoice, a second credit note
	// and one all applied.
	world := func(t *testing.T) *scenario {
		s := creditWorld(t)
		postInvoices(s, payerA, "2026-10",
			invSummary("INV-10-PAID", "2026-10", sourceB, "EUR", "4.00"),
			invSummary("INV-10-USD", "2026-10", sourceB, "USD", "50.00"),
			invSummary("CN-10-B", "2026-10", sourceB, "EUR", "-6.00"),
			invSummary("CN-10-USED", "2026-10", orgC, "EUR", "-2.00"))
		return s.Do(payCmd("pay-1", "4", "EUR", "INV-10-PAID"), applyCmd("CN-10-USED", "", "INV-09-A"))
	}
	for name, tc := range map[string]struct {
		cmd       *billingv1.ApplyCredit
		code      Code
		fragments []string
	}{
		"credit note unknown":           {applyCmd("CN-NOPE", ""), CodeNotFound, []string{"credit note CN-NOPE", payerA}},
		"credit note of another payer":  {mod(applyCmd("CN-09-C", ""), func(c *billingv1.ApplyCredit) { c.PayerAccountId = orgC }), CodeNotFound, []string{"CN-09-C", orgC}},
		"not a credit note":             {applyCmd("INV-09-B", ""), CodeFailedPrecondition, []string{"INV-09-B", "is not a credit note", "12.00 EUR"}},
		"no credit left":                {applyCmd("CN-10-USED", ""), CodeFailedPrecondition, []string{"CN-10-USED", "no credit left"}},
		"invoice unknown":               {applyCmd("CN-09-C", "", "INV-09-B", "INV-NOPE"), CodeNotFound, []string{"INV-NOPE", payerA}},
		"invoice already paid":          {applyCmd("CN-09-C", "", "INV-10-PAID"), CodeFailedPrecondition, []string{"INV-10-PAID", "already paid"}},
		"invoice is a credit note":      {applyCmd("CN-09-C", "", "CN-10-B"), CodeFailedPrecondition, []string{"CN-10-B", "is itself a credit note"}},
		"invoice is the credit note":    {applyCmd("CN-09-C", "", "CN-09-C"), CodeFailedPrecondition, []string{"CN-09-C", "is itself a credit note"}},
		"invoice in another currency":   {applyCmd("CN-09-C", "", "INV-10-USD"), CodeCurrencyMismatch, []string{"INV-10-USD", "USD", "EUR", "CN-09-C"}},
		"amount zero":                   {applyCmd("CN-09-C", "0"), CodeInvalidArgument, []string{"amount 0 must be > 0"}},
		"amount negative":               {applyCmd("CN-09-C", "-5"), CodeInvalidArgument, []string{"amount -5 must be > 0"}},
		"amount not a number":           {applyCmd("CN-09-C", "ten"), CodeInvalidArgument, []string{"amount", `"ten"`}},
		"amount more than remaining":    {applyCmd("CN-09-C", "30.01"), CodeInvalidArgument, []string{"30.01", "more than the remaining credit 30.00 EUR", "CN-09-C"}},
		"amount more decimals than EUR": {applyCmd("CN-09-C", "1.001"), CodeInvalidArgument, []string{"amount 1.001", "more than 2 decimals", "EUR"}},
		"credit note id missing":        {applyCmd("", ""), CodeInvalidArgument, []string{"credit_note_id is required"}},
		"payer bad":                     {mod(applyCmd("CN-09-C", ""), func(c *billingv1.ApplyCredit) { c.PayerAccountId = "1" }), CodeInvalidArgument, []string{"payer_account_id"}},
		"payer unregistered":            {mod(applyCmd("CN-09-C", ""), func(c *billingv1.ApplyCredit) { c.PayerAccountId = orgD }), CodeNotFound, []string{"payer organization " + orgD}},
		"payer a member":                {mod(applyCmd("CN-09-C", ""), func(c *billingv1.ApplyCredit) { c.PayerAccountId = acctA2 }), CodeInvalidArgument, []string{acctA2, "not a management account"}},
		"invoice listed twice":          {applyCmd("CN-09-C", "", "INV-09-A", "INV-09-A"), CodeInvalidArgument, []string{"invoice_ids lists INV-09-A twice"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := world(t)
			n := len(s.w[ReceivableStream(payerA)])
			s.When(tc.cmd).ThenError(tc.code, tc.fragments...)
			if got := len(s.w[ReceivableStream(payerA)]); got != n {
				t.Fatalf("the rejected command appended %d events", got-n)
			}
		})
	}
	// A credit note in JPY takes no decimals.
	s := postInvoices(receivableWorld(t), payerA, "2026-09",
		invSummary("CN-JPY", "2026-09", orgC, "JPY", "-900"), invSummary("INV-JPY", "2026-09", sourceB, "JPY", "1000"))
	s.When(applyCmd("CN-JPY", "10.5")).ThenError(CodeInvalidArgument, "amount 10.5", "more than 0 decimals", "JPY")
	s.When(applyCmd("CN-JPY", "100")).Then(applied("CN-JPY", orgC, "JPY", "100", "800", alloc("INV-JPY", sourceB, "100", "900")))
}

// TestY2_ApplyCreditIsOneEventOnTheReceivableStream: the application is
// decided on the payer's receivable, like a payment, so the stream's version
// guards it (one stream, optimistic concurrency).
func TestY2_ApplyCreditIsOneEventOnTheReceivableStream(t *testing.T) {
	out := creditWorld(t).When(applyCmd("CN-09-C", "1")).ThenOK()
	if out.AggregateID != "CN-09-C" || len(out.Changes) != 1 || out.Changes[0].Stream != ReceivableStream(payerA) || len(out.Changes[0].Events) != 1 {
		t.Fatalf("outcome %+v", out)
	}
	before := receivableOf(creditWorld(t), payerA)
	after := EvolveReceivable(before, out.Changes[0].Events[0])
	wantCreditNote(t, before, "CN-09-C", "30.00", "0.00", "30.00", InvoiceCredit)
	wantCreditNote(t, after, "CN-09-C", "30.00", "1.00", "29.00", InvoiceCredit)
	wantInvoice(t, after, "INV-09-B", "1.00", "11.00", InvoicePartiallyPaid)
	if len(before.CreditApplications()) != 0 || len(after.CreditApplications()) != 1 {
		t.Fatalf("applications before %d, after %d", len(before.CreditApplications()), len(after.CreditApplications()))
	}
	party, err := CommandParty(world{}, applyCmd("CN-09-C", ""))
	if err != nil || party.Role != PartyPayer || party.Account != payerA {
		t.Fatalf("party %+v %v", party, err)
	}
}
