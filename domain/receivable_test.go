package domain

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// receivableWorld: payer A (with member account A2) and organizations B and C
// registered. The month close is not built here: tests post invoices to the
// payer's receivable with postInvoices, as the close will (one InvoicesPosted
// per close).
func receivableWorld(t *testing.T) *scenario {
	t.Helper()
	return given(t).
		At("2026-10-05T09:00:00Z").
		Do(&billingv1.RegisterOrganization{ManagementAccountId: payerA, Name: "A", MemberAccountIds: []string{acctA2}}).
		Orgs(sourceB, orgC)
}

// postInvoices appends an InvoicesPosted event to the payer's receivable.
func postInvoices(s *scenario, payer, month string, invoices ...*billingv1.InvoiceSummary) *scenario {
	st := ReceivableStream(payer)
	s.w[st] = append(s.w[st], NewEvent(&billingv1.InvoicesPosted{PayerAccountId: payer, Month: month, Invoices: invoices}))
	return s
}

func invSummary(id, month, source, currency, total string) *billingv1.InvoiceSummary {
	return &billingv1.InvoiceSummary{InvoiceId: id, Month: month, SourceAccountId: source, Seller: awsU, Currency: currency, Total: total}
}

func payCmd(id, amount, currency string, invoices ...string) *billingv1.RecordPayment {
	return &billingv1.RecordPayment{PaymentId: id, PayerAccountId: payerA, Amount: amount, Currency: currency, Method: "BANK_TRANSFER", InvoiceIds: invoices}
}

func refundCmd(id, amount string) *billingv1.RefundPayment {
	return &billingv1.RefundPayment{PaymentId: id, PayerAccountId: payerA, Amount: amount}
}

func alloc(invoice, source, amount, after string) *billingv1.PaymentAllocation {
	return &billingv1.PaymentAllocation{InvoiceId: invoice, BillSourceAccountId: source, Amount: amount, OutstandingAfter: after}
}

// recorded is the PaymentRecorded change of a bank transfer by payer A at the
// receivableWorld clock.
func recorded(id, amount, currency, unapplied string, allocs ...*billingv1.PaymentAllocation) Change {
	return Change{Stream: ReceivableStream(payerA), Events: evs(&billingv1.PaymentRecorded{
		PaymentId: id, PayerAccountId: payerA, Amount: amount, Currency: currency,
		Method: billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER, Allocations: allocs, Unapplied: unapplied,
		ReceivedAt: ts("2026-10-05T09:00:00Z"),
	})}
}

func receivableOf(s *scenario, payer string) Receivable {
	return FoldReceivable(s.w[ReceivableStream(payer)])
}

// wantInvoice checks an invoice's paid, outstanding and status.
func wantInvoice(t *testing.T, r Receivable, id, paid, outstanding string, status InvoiceStatus) {
	t.Helper()
	inv, ok := r.Invoice(id)
	if !ok {
		t.Fatalf("invoice %s unknown", id)
	}
	if inv.Paid() != paid || inv.Outstanding() != outstanding || inv.Status() != status {
		t.Errorf("invoice %s: paid %s outstanding %s %s; want %s %s %s", id, inv.Paid(), inv.Outstanding(), inv.Status(), paid, outstanding, status)
	}
}

// wantStreamLen checks how many events the payer's receivable holds.
func wantStreamLen(t *testing.T, s *scenario, n int) {
	t.Helper()
	if got := len(s.w[ReceivableStream(payerA)]); got != n {
		t.Fatalf("receivable stream holds %d events, want %d", got, n)
	}
}

func oneInvoiceWorld(t *testing.T) *scenario {
	t.Helper()
	return postInvoices(receivableWorld(t), payerA, "2026-09", invSummary("INV-1", "2026-09", sourceB, "USD", "1000.00"))
}

func TestY2_APartialPaymentLeavesTheInvoicePartiallyPaid(t *testing.T) {
	s := oneInvoiceWorld(t)
	s.When(payCmd("pay-1", "400", "USD", "INV-1")).
		Then(recorded("pay-1", "400.00", "USD", "0.00", alloc("INV-1", sourceB, "400.00", "600.00")))
	wantStreamLen(t, s, 2)
	r := receivableOf(s, payerA)
	wantInvoice(t, r, "INV-1", "400.00", "600.00", InvoicePartiallyPaid)
	p, ok := r.Payment("pay-1")
	if !ok || p.Amount() != "400.00" || p.Applied() != "400.00" || p.Unapplied() != "0.00" || p.Method() != "BANK_TRANSFER" || p.Currency() != "USD" ||
		!p.ReceivedAt().Equal(at("2026-10-05T09:00:00Z")) {
		t.Fatalf("payment %+v", p)
	}
	if got := s.When(payCmd("pay-2", "10", "USD")).ThenOK(); got.AggregateID != "pay-2" || len(got.Changes) != 1 {
		t.Fatalf("outcome %+v", got)
	}
	wantInvoice(t, receivableOf(s, payerA), "INV-1", "410.00", "590.00", InvoicePartiallyPaid)
}

func TestY2_AnExactPaymentPaysTheInvoice(t *testing.T) {
	s := oneInvoiceWorld(t)
	wantInvoice(t, receivableOf(s, payerA), "INV-1", "0.00", "1000.00", InvoiceOpen)
	s.When(payCmd("pay-1", "1000.00", "USD")).
		Then(recorded("pay-1", "1000.00", "USD", "0.00", alloc("INV-1", sourceB, "1000.00", "0.00")))
	wantInvoice(t, receivableOf(s, payerA), "INV-1", "1000.00", "0.00", InvoicePaid)
	// A paid invoice cannot be named again; unnamed, the payment is credit.
	s.When(payCmd("pay-2", "5", "USD", "INV-1")).ThenError(CodeFailedPrecondition, "INV-1", "already paid")
	wantStreamLen(t, s, 2)
	s.When(payCmd("pay-2", "5", "USD")).Then(recorded("pay-2", "5.00", "USD", "5.00"))
}

func TestY2_AnOverPaymentStaysAsUnappliedCredit(t *testing.T) {
	s := oneInvoiceWorld(t)
	s.When(payCmd("pay-1", "1200.5", "USD", "INV-1")).
		Then(recorded("pay-1", "1200.50", "USD", "200.50", alloc("INV-1", sourceB, "1000.00", "0.00")))
	r := receivableOf(s, payerA)
	wantInvoice(t, r, "INV-1", "1000.00", "0.00", InvoicePaid)
	want := ReceivableBalance{Currency: "USD", Invoiced: "1000.00", Paid: "1000.00", Outstanding: "0.00", Unapplied: "200.50", Refunded: "0.00", CreditNotes: "0.00", Balance: "-200.50"}
	if diff := cmp.Diff([]ReceivableBalance{want}, r.Balances()); diff != "" {
		t.Fatalf("balances (-want +got):\n%s", diff)
	}
	if p, _ := r.Payment("pay-1"); p.Applied() != "1000.00" || p.Unapplied() != "200.50" {
		t.Fatalf("payment applied %s unapplied %s", p.Applied(), p.Unapplied())
	}
}

func TestY2_APayerWithoutInvoicesGetsTheWholePaymentAsCredit(t *testing.T) {
	s := receivableWorld(t)
	s.When(payCmd("pay-1", "5000", "JPY")).Then(recorded("pay-1", "5000", "JPY", "5000"))
	b := receivableOf(s, payerA).Balance("JPY")
	if b.Unapplied != "5000" || b.Outstanding != "0" || b.Balance != "-5000" {
		t.Fatalf("balance %+v", b)
	}
	if b := receivableOf(s, payerA).Balance("EUR"); b.Unapplied != "0.00" || b.Outstanding != "0.00" {
		t.Fatalf("empty balance %+v", b)
	}
}

func TestY2_ARefundGivesBackAllOrPartOfAPaymentsUnappliedCredit(t *testing.T) {
	s := oneInvoiceWorld(t).Do(payCmd("pay-1", "1200", "USD"))
	refunded := func(amount, after string) Change {
		return Change{Stream: ReceivableStream(payerA), Events: evs(&billingv1.PaymentRefunded{
			PaymentId: "pay-1", PayerAccountId: payerA, Amount: amount, Currency: "USD", UnappliedAfter: after})}
	}
	s.When(refundCmd("pay-1", "50")).Then(refunded("50.00", "150.00"))
	s.When(refundCmd("pay-1", "150.01")).ThenError(CodeFailedPrecondition, "150.01", "unapplied credit 150.00 USD", "pay-1")
	s.When(refundCmd("pay-1", "0.001")).ThenError(CodeInvalidArgument, "amount", "more than 2 decimals")
	s.When(refundCmd("pay-1", "0")).ThenError(CodeInvalidArgument, "amount", "> 0")
	s.When(refundCmd("pay-9", "")).ThenError(CodeNotFound, "pay-9")
	wantStreamLen(t, s, 3)
	// Empty amount: all that is left.
	s.When(refundCmd("pay-1", "")).Then(refunded("150.00", "0.00"))
	s.When(refundCmd("pay-1", "")).ThenError(CodeFailedPrecondition, "pay-1", "no unapplied credit")
	s.When(refundCmd("pay-1", "1")).ThenError(CodeFailedPrecondition, "no unapplied credit")
	wantStreamLen(t, s, 4)

	r := receivableOf(s, payerA)
	p, _ := r.Payment("pay-1")
	if p.Amount() != "1200.00" || p.Applied() != "1000.00" || p.Unapplied() != "0.00" || p.Refunded() != "200.00" {
		t.Fatalf("payment amount %s applied %s unapplied %s refunded %s", p.Amount(), p.Applied(), p.Unapplied(), p.Refunded())
	}
	if len(r.Refunds()) != 2 {
		t.Fatalf("%d refunds, want 2", len(r.Refunds()))
	}
	if b := r.Balance("USD"); b.Unapplied != "0.00" || b.Refunded != "200.00" || b.Balance != "0.00" {
		t.Fatalf("balance %+v", b)
	}
	// A payment that was wholly applied has nothing to refund.
	postInvoices(s, payerA, "2026-10", invSummary("INV-2", "2026-10", sourceB, "USD", "300.00")).Do(payCmd("pay-2", "300", "USD"))
	s.When(refundCmd("pay-2", "")).ThenError(CodeFailedPrecondition, "pay-2", "300.00 applied")
}

func TestY2_ACurrencyMismatchIsRejectedNamingBothCurrencies(t *testing.T) {
	s := postInvoices(receivableWorld(t), payerA, "2026-09",
		invSummary("INV-EUR", "2026-09", sourceB, "EUR", "80.00"),
		invSummary("INV-JPY", "2026-09", orgC, "JPY", "9000"))
	s.When(payCmd("pay-1", "80", "USD", "INV-EUR")).ThenError(CodeCurrencyMismatch, "INV-EUR", "EUR", "USD")
	// Oldest first, but no invoice was ever in that currency.
	s.When(payCmd("pay-1", "80", "USD")).ThenError(CodeCurrencyMismatch, "EUR, JPY", "USD")
	wantStreamLen(t, s, 1)
	s.When(payCmd("pay-1", "10000", "JPY")).Then(recorded("pay-1", "10000", "JPY", "1000", alloc("INV-JPY", orgC, "9000", "0")))
	wantInvoice(t, receivableOf(s, payerA), "INV-EUR", "0.00", "80.00", InvoiceOpen)
}

// twoMonthsWorld posts, for payer A, September (B and C in USD, C in EUR), then
// October, then a late August invoice: oldest first goes by month, then by
// posting order, whatever order the months were posted in.
func twoMonthsWorld(t *testing.T) *scenario {
	t.Helper()
	s := receivableWorld(t)
	postInvoices(s, payerA, "2026-09",
		invSummary("INV-09-B", "2026-09", sourceB, "USD", "100.00"),
		invSummary("INV-09-C-EUR", "2026-09", orgC, "EUR", "50.00"),
		invSummary("INV-09-C", "2026-09", orgC, "USD", "30.00"))
	postInvoices(s, payerA, "2026-10",
		invSummary("INV-10-C", "2026-10", orgC, "USD", "70.00"),
		invSummary("INV-10-B", "2026-10", sourceB, "USD", "20.00"))
	postInvoices(s, payerA, "2026-08", invSummary("INV-08-B", "2026-08", sourceB, "USD", "10.00"))
	return s
}

func TestY2_OldestFirstGoesByMonthThenPostingOrderAndSkipsOtherCurrencies(t *testing.T) {
	s := twoMonthsWorld(t)
	s.When(payCmd("pay-1", "150", "USD")).Then(recorded("pay-1", "150.00", "USD", "0.00",
		alloc("INV-08-B", sourceB, "10.00", "0.00"),
		alloc("INV-09-B", sourceB, "100.00", "0.00"),
		alloc("INV-09-C", orgC, "30.00", "0.00"),
		alloc("INV-10-C", orgC, "10.00", "60.00")))
	r := receivableOf(s, payerA)
	wantInvoice(t, r, "INV-08-B", "10.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-09-B", "100.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-09-C", "30.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-10-C", "10.00", "60.00", InvoicePartiallyPaid)
	wantInvoice(t, r, "INV-10-B", "0.00", "20.00", InvoiceOpen)
	wantInvoice(t, r, "INV-09-C-EUR", "0.00", "50.00", InvoiceOpen)

	// The next payment continues where this one stopped, and the rest is credit.
	s.When(payCmd("pay-2", "100", "USD")).Then(recorded("pay-2", "100.00", "USD", "20.00",
		alloc("INV-10-C", orgC, "60.00", "0.00"),
		alloc("INV-10-B", sourceB, "20.00", "0.00")))

	var ids []string
	for _, inv := range receivableOf(s, payerA).Invoices() {
		ids = append(ids, fmt.Sprintf("%s#%d", inv.ID(), inv.PostingOrder()))
	}
	if diff := cmp.Diff([]string{"INV-09-B#0", "INV-09-C-EUR#1", "INV-09-C#2", "INV-10-C#3", "INV-10-B#4", "INV-08-B#5"}, ids); diff != "" {
		t.Fatalf("posting order (-want +got):\n%s", diff)
	}
}

func TestY2_NamedInvoicesArePaidInTheGivenOrder(t *testing.T) {
	s := twoMonthsWorld(t)
	s.When(payCmd("pay-1", "50", "USD", "INV-10-B", "INV-09-B")).Then(recorded("pay-1", "50.00", "USD", "0.00",
		alloc("INV-10-B", sourceB, "20.00", "0.00"),
		alloc("INV-09-B", sourceB, "30.00", "70.00")))
	// A payment that runs out leaves the later named invoices untouched.
	s.When(payCmd("pay-2", "15", "USD", "INV-09-C", "INV-08-B")).Then(recorded("pay-2", "15.00", "USD", "0.00",
		alloc("INV-09-C", orgC, "15.00", "15.00")))
	// Named invoices take no more than they owe; the rest is credit.
	s.When(payCmd("pay-3", "40", "USD", "INV-08-B")).Then(recorded("pay-3", "40.00", "USD", "30.00",
		alloc("INV-08-B", sourceB, "10.00", "0.00")))
	r := receivableOf(s, payerA)
	wantInvoice(t, r, "INV-10-B", "20.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-09-B", "30.00", "70.00", InvoicePartiallyPaid)
	wantInvoice(t, r, "INV-09-C", "15.00", "15.00", InvoicePartiallyPaid)
	wantInvoice(t, r, "INV-08-B", "10.00", "0.00", InvoicePaid)
	wantInvoice(t, r, "INV-10-C", "0.00", "70.00", InvoiceOpen)
}

func TestY2_AnUnknownInvoiceIsNotFoundAndNothingIsAllocated(t *testing.T) {
	s := twoMonthsWorld(t)
	s.When(payCmd("pay-1", "50", "USD", "INV-09-B", "INV-NOPE")).ThenError(CodeNotFound, "INV-NOPE", payerA)
	// Another payer's invoice is not this payer's.
	postInvoices(s, orgC, "2026-09", invSummary("INV-C", "2026-09", sourceB, "USD", "5.00"))
	s.When(payCmd("pay-1", "5", "USD", "INV-C")).ThenError(CodeNotFound, "INV-C")
	wantStreamLen(t, s, 3)
	wantInvoice(t, receivableOf(s, payerA), "INV-09-B", "0.00", "100.00", InvoiceOpen)
}

func TestY2_APaymentIdIsRecordedOncePerPayer(t *testing.T) {
	s := oneInvoiceWorld(t).Do(payCmd("pay-1", "100", "USD"))
	s.When(payCmd("pay-1", "100", "USD")).ThenError(CodeAlreadyExists, "pay-1", payerA)
	s.When(payCmd("pay-1", "7", "EUR")).ThenError(CodeAlreadyExists, "pay-1")
	wantStreamLen(t, s, 2)
	// Payment ids are per payer: C may use the same id.
	other := payCmd("pay-1", "100", "USD")
	other.PayerAccountId = orgC
	out := s.When(other).ThenOK()
	if len(out.Changes) != 1 || out.Changes[0].Stream != ReceivableStream(orgC) || len(out.Changes[0].Events) != 1 {
		t.Fatalf("changes %+v", out.Changes)
	}
}

func TestY2_PaymentCommandsAreValidated(t *testing.T) {
	ok := payCmd("pay-1", "10.00", "USD", "INV-1")
	for name, tc := range map[string]struct {
		cmd       *billingv1.RecordPayment
		code      Code
		fragments []string
	}{
		"payment id missing":  {mod(ok, func(c *billingv1.RecordPayment) { c.PaymentId = "" }), CodeInvalidArgument, []string{"payment_id is required"}},
		"payment id bad":      {mod(ok, func(c *billingv1.RecordPayment) { c.PaymentId = "pay 1" }), CodeInvalidArgument, []string{"payment_id", `"pay 1"`}},
		"payment id too long": {mod(ok, func(c *billingv1.RecordPayment) { c.PaymentId = fmt.Sprintf("%065d", 1) }), CodeInvalidArgument, []string{"payment_id"}},
		"payer bad":           {mod(ok, func(c *billingv1.RecordPayment) { c.PayerAccountId = "1" }), CodeInvalidArgument, []string{"payer_account_id"}},
		"payer unregistered":  {mod(ok, func(c *billingv1.RecordPayment) { c.PayerAccountId = orgD }), CodeNotFound, []string{"payer organization " + orgD}},
		"payer a member":      {mod(ok, func(c *billingv1.RecordPayment) { c.PayerAccountId = acctA2 }), CodeInvalidArgument, []string{acctA2, "not a management account"}},
		"amount missing":      {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "" }), CodeInvalidArgument, []string{"amount is required"}},
		"amount not a number": {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "ten" }), CodeInvalidArgument, []string{"amount", `"ten"`}},
		"amount zero":         {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "0.00" }), CodeInvalidArgument, []string{"amount 0.00 must be > 0"}},
		"amount negative":     {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "-5" }), CodeInvalidArgument, []string{"amount -5 must be > 0"}},
		"amount exponent":     {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "1e3" }), CodeInvalidArgument, []string{"amount", `"1e3"`, "digits"}},
		"amount too large":    {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "1234567890123456" }), CodeInvalidArgument, []string{"amount", "15 digits"}},
		"amount 3 decimals":   {mod(ok, func(c *billingv1.RecordPayment) { c.Amount = "10.001" }), CodeInvalidArgument, []string{"amount 10.001", "more than 2 decimals", "USD"}},
		"amount JPY decimals": {mod(ok, func(c *billingv1.RecordPayment) { c.Amount, c.Currency = "10.5", "JPY" }), CodeInvalidArgument, []string{"amount 10.5", "more than 0 decimals", "JPY"}},
		"currency missing":    {mod(ok, func(c *billingv1.RecordPayment) { c.Currency = "" }), CodeInvalidArgument, []string{"currency is required"}},
		"currency unknown":    {mod(ok, func(c *billingv1.RecordPayment) { c.Currency = "BTC" }), CodeInvalidArgument, []string{"currency", "BTC"}},
		"method missing":      {mod(ok, func(c *billingv1.RecordPayment) { c.Method = "" }), CodeInvalidArgument, []string{"method is required"}},
		"method unknown":      {mod(ok, func(c *billingv1.RecordPayment) { c.Method = "CHEQUE" }), CodeInvalidArgument, []string{"method", `"CHEQUE"`, "CARD, BANK_TRANSFER, DIRECT_DEBIT"}},
		"invoice listed twice": {mod(ok, func(c *billingv1.RecordPayment) { c.InvoiceIds = []string{"INV-1", "INV-1"} }),
			CodeInvalidArgument, []string{"invoice_ids lists INV-1 twice"}},
		"invoice id bad": {mod(ok, func(c *billingv1.RecordPayment) { c.InvoiceIds = []string{"INV 1"} }), CodeInvalidArgument, []string{"invoice_ids", `"INV 1"`}},
	} {
		t.Run(name, func(t *testing.T) {
			s := oneInvoiceWorld(t)
			s.When(tc.cmd).ThenError(tc.code, tc.fragments...)
			wantStreamLen(t, s, 1)
		})
	}
	// The valid command, and the trailing-zero and minor-unit spellings of it.
	for _, amount := range []string{"10.00", "10", "10.0", "10.000", "010.00"} {
		s := oneInvoiceWorld(t)
		s.When(mod(ok, func(c *billingv1.RecordPayment) { c.Amount = amount })).
			Then(recorded("pay-1", "10.00", "USD", "0.00", alloc("INV-1", sourceB, "10.00", "990.00")))
	}
	// Refunds validate their ids and payer too.
	for name, tc := range map[string]struct {
		cmd       *billingv1.RefundPayment
		code      Code
		fragments []string
	}{
		"payment id missing": {&billingv1.RefundPayment{PayerAccountId: payerA}, CodeInvalidArgument, []string{"payment_id is required"}},
		"payer bad":          {&billingv1.RefundPayment{PaymentId: "pay-1", PayerAccountId: "x"}, CodeInvalidArgument, []string{"payer_account_id"}},
		"payer unregistered": {&billingv1.RefundPayment{PaymentId: "pay-1", PayerAccountId: orgD}, CodeNotFound, []string{orgD}},
		"amount bad":         {refundCmd("pay-1", "1,5"), CodeInvalidArgument, []string{"amount", `"1,5"`}},
	} {
		t.Run("refund "+name, func(t *testing.T) {
			s := oneInvoiceWorld(t).Do(payCmd("pay-1", "1500", "USD"))
			s.When(tc.cmd).ThenError(tc.code, tc.fragments...)
			wantStreamLen(t, s, 2)
		})
	}
}

// checkReceivableInvariants checks, on the fold of a receivable: per currency,
// the sources' outstanding amounts and credit notes add up to the payer's (Y3),
// and the balance is outstanding − credit notes − unapplied credit; each
// payment's allocations, unapplied credit and refunds add up to its amount;
// each credit note's applications and remaining credit add up to its credit;
// what invoices have settled is what payments and credit notes allocated; and
// the events' running figures agree with the fold.
func checkReceivableInvariants(t *testing.T, events []*billingv1.Event) {
	t.Helper()
	r := FoldReceivable(events)
	sumBy, creditBy := map[string]string{}, map[string]string{}
	plus := func(m map[string]string, cur, v string) {
		prev, ok := m[cur]
		if !ok {
			prev = "0"
		}
		m[cur] = CanonicalDecimal(amountPlus(mustDec(prev), mustDec(v)))
	}
	for _, sb := range r.SourceBalances() {
		plus(sumBy, sb.Currency, sb.Outstanding)
		plus(creditBy, sb.Currency, sb.CreditNotes)
		if want := minorUnitText(amountMinus(mustDec(sb.Outstanding), mustDec(sb.CreditNotes)), sb.Currency); sb.Balance != want {
			t.Errorf("%s %s: source balance %s, want %s", sb.SourceAccountID, sb.Currency, sb.Balance, want)
		}
	}
	for _, b := range r.Balances() {
		for _, c := range []struct{ what, got string }{{"outstanding", b.Outstanding}, {"credit notes", b.CreditNotes}} {
			m := sumBy
			if c.what == "credit notes" {
				m = creditBy
			}
			want, ok := m[b.Currency]
			if !ok {
				want = "0"
			}
			if CanonicalDecimal(mustDec(c.got)) != want {
				t.Errorf("%s: payer %s %s, sources add up to %s", b.Currency, c.what, c.got, want)
			}
		}
		if want := minorUnitText(amountMinus(amountMinus(mustDec(b.Outstanding), mustDec(b.CreditNotes)), mustDec(b.Unapplied)), b.Currency); b.Balance != want {
			t.Errorf("%s: balance %s, want outstanding − credit notes − unapplied = %s", b.Currency, b.Balance, want)
		}
		var out int
		for _, i := range r.Invoices() {
			if i.Currency() == b.Currency && (i.Status() == InvoiceOpen || i.Status() == InvoicePartiallyPaid) {
				out++
			}
		}
		if out != b.OpenInvoices {
			t.Errorf("%s: %d open invoices, balance says %d", b.Currency, out, b.OpenInvoices)
		}
	}
	settled, allocated := map[string]string{}, map[string]string{}
	for _, i := range r.Invoices() {
		plus(settled, i.Currency(), i.Paid())
		if i.IsCreditNote() != (i.Status() == InvoiceCredit || i.Status() == InvoiceCreditApplied) || (i.IsCreditNote() && (i.Paid() != minorUnitText(mustDec("0"), i.Currency()))) {
			t.Errorf("invoice %s (total %s): status %s, paid %s", i.ID(), i.Total(), i.Status(), i.Paid())
		}
		if mustDec(i.RemainingCredit()).Sign() < 0 || amountPlus(mustDec(i.CreditApplied()), mustDec(i.RemainingCredit())).Cmp(mustDec(i.Credit())) != 0 {
			t.Errorf("credit note %s: credit %s, applied %s + remaining %s", i.ID(), i.Credit(), i.CreditApplied(), i.RemainingCredit())
		}
	}
	for _, p := range r.Payments() {
		for _, a := range p.Allocations() {
			plus(allocated, p.Currency(), a.GetAmount())
		}
	}
	appliedBy := map[string]string{}
	for _, c := range r.CreditApplications() {
		sum := mustDec("0")
		for _, a := range c.GetAllocations() {
			plus(allocated, c.GetCurrency(), a.GetAmount())
			sum = amountPlus(sum, mustDec(a.GetAmount()))
		}
		if sum.Cmp(mustDec(c.GetAmount())) != 0 || sum.Sign() <= 0 {
			t.Errorf("credit note %s: applied %s, allocations add up to %s", c.GetCreditNoteId(), c.GetAmount(), sum)
		}
		plus(appliedBy, c.GetCreditNoteId(), c.GetAmount())
	}
	for cur, v := range settled {
		if w, ok := allocated[cur]; (ok && w != v) || (!ok && mustDec(v).Sign() != 0) {
			t.Errorf("%s: invoices settled %s, payments and credit notes allocated %s", cur, v, w)
		}
	}
	for id, v := range appliedBy {
		if inv, _ := r.Invoice(id); CanonicalDecimal(mustDec(inv.CreditApplied())) != v {
			t.Errorf("credit note %s: applied %s, its applications add up to %s", id, inv.CreditApplied(), v)
		}
	}
	for _, p := range r.Payments() {
		total := amountPlus(mustDec(p.Unapplied()), mustDec(p.Refunded()))
		for _, a := range p.Allocations() {
			total = amountPlus(total, mustDec(a.GetAmount()))
		}
		if total.Cmp(mustDec(p.Amount())) != 0 || mustDec(p.Unapplied()).Sign() < 0 {
			t.Errorf("payment %s: amount %s, allocated + unapplied + refunded = %s", p.ID(), p.Amount(), total)
		}
	}
	// Replaying event by event, each allocation's outstanding_after is the
	// invoice's outstanding once the payment is applied.
	var step Receivable
	for _, e := range events {
		step = EvolveReceivable(step, e)
		if ca := e.GetCreditApplied(); ca != nil {
			note, _ := step.Invoice(ca.GetCreditNoteId())
			if ca.GetRemainingCredit() != note.RemainingCredit() || ca.GetBillSourceAccountId() != note.SourceAccountID() || ca.GetCurrency() != note.Currency() {
				t.Errorf("credit note %s: event says remaining %s (source %s, %s), fold %s (source %s, %s)", ca.GetCreditNoteId(),
					ca.GetRemainingCredit(), ca.GetBillSourceAccountId(), ca.GetCurrency(), note.RemainingCredit(), note.SourceAccountID(), note.Currency())
			}
			for _, a := range ca.GetAllocations() {
				inv, _ := step.Invoice(a.GetInvoiceId())
				if a.GetOutstandingAfter() != inv.Outstanding() || a.GetBillSourceAccountId() != inv.SourceAccountID() || inv.IsCreditNote() {
					t.Errorf("credit note %s on %s: event says outstanding %s (source %s), fold %s (source %s)", ca.GetCreditNoteId(),
						a.GetInvoiceId(), a.GetOutstandingAfter(), a.GetBillSourceAccountId(), inv.Outstanding(), inv.SourceAccountID())
				}
			}
		}
		if pr := e.GetPaymentRecorded(); pr != nil {
			for _, a := range pr.GetAllocations() {
				inv, _ := step.Invoice(a.GetInvoiceId())
				if a.GetOutstandingAfter() != inv.Outstanding() || a.GetBillSourceAccountId() != inv.SourceAccountID() {
					t.Errorf("payment %s on %s: event says outstanding %s (source %s), fold %s (source %s)", pr.GetPaymentId(),
						a.GetInvoiceId(), a.GetOutstandingAfter(), a.GetBillSourceAccountId(), inv.Outstanding(), inv.SourceAccountID())
				}
			}
		}
	}
}

func TestY3_SourceOutstandingAddsUpToThePayersOutstandingPerCurrency(t *testing.T) {
	s := twoMonthsWorld(t).Do(
		payCmd("pay-1", "105.5", "USD"),
		payCmd("pay-2", "20", "EUR", "INV-09-C-EUR"),
		payCmd("pay-3", "35", "USD", "INV-10-C"))
	r := receivableOf(s, payerA)
	want := []SourceBalance{
		{SourceAccountID: sourceB, Currency: "USD", Invoiced: "130.00", Paid: "105.50", Outstanding: "24.50", CreditNotes: "0.00", Balance: "24.50", OpenInvoices: 2},
		{SourceAccountID: orgC, Currency: "EUR", Invoiced: "50.00", Paid: "20.00", Outstanding: "30.00", CreditNotes: "0.00", Balance: "30.00", OpenInvoices: 1},
		{SourceAccountID: orgC, Currency: "USD", Invoiced: "100.00", Paid: "35.00", Outstanding: "65.00", CreditNotes: "0.00", Balance: "65.00", OpenInvoices: 2},
	}
	if diff := cmp.Diff(want, r.SourceBalances()); diff != "" {
		t.Fatalf("source balances (-want +got):\n%s", diff)
	}
	wantB := []ReceivableBalance{
		{Currency: "EUR", Invoiced: "50.00", Paid: "20.00", Outstanding: "30.00", Unapplied: "0.00", Refunded: "0.00", CreditNotes: "0.00", Balance: "30.00", OpenInvoices: 1},
		{Currency: "USD", Invoiced: "230.00", Paid: "140.50", Outstanding: "89.50", Unapplied: "0.00", Refunded: "0.00", CreditNotes: "0.00", Balance: "89.50", OpenInvoices: 4},
	}
	if diff := cmp.Diff(wantB, r.Balances()); diff != "" {
		t.Fatalf("balances (-want +got):\n%s", diff)
	}
	checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
}

// TestY2_ASeededRunOfPaymentsAndRefundsKeepsTheReceivableConsistent drives
// random posts (credit notes among them), payments, refunds and credit note
// applications, and checks the invariants after each accepted command; a
// failure prints the seed.
func TestY2_ASeededRunOfPaymentsAndRefundsKeepsTheReceivableConsistent(t *testing.T) {
	var paid, refunded, allocations, credited int
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			s := receivableWorld(t)
			currencies := []string{"USD", "EUR", "JPY"}
			sources := []string{sourceB, orgC}
			var invoices, payments []string
			amount := func(cur string) string {
				if cur == "JPY" {
					return fmt.Sprint(1 + rng.IntN(20000))
				}
				return fmt.Sprintf("%d.%02d", rng.IntN(200), rng.IntN(100))
			}
			for step := 0; step < 60; step++ {
				n := len(s.w[ReceivableStream(payerA)])
				switch k := rng.IntN(12); {
				case k < 2:
					month := fmt.Sprintf("2026-%02d", 1+rng.IntN(9))
					var sums []*billingv1.InvoiceSummary
					for i := 0; i < 1+rng.IntN(3); i++ {
						id := fmt.Sprintf("INV-%d", len(invoices))
						cur := currencies[rng.IntN(len(currencies))]
						total := amount(cur)
						if rng.IntN(4) == 0 {
							total = "-" + total // a credit note
						}
						sums = append(sums, invSummary(id, month, sources[rng.IntN(2)], cur, total))
						invoices = append(invoices, id)
					}
					postInvoices(s, payerA, month, sums...)
				case k < 8:
					cur := currencies[rng.IntN(len(currencies))]
					c := payCmd(fmt.Sprintf("pay-%d", step), amount(cur), cur)
					if len(invoices) > 0 && rng.IntN(2) == 0 {
						c.InvoiceIds = []string{invoices[rng.IntN(len(invoices))]}
					}
					if _, err := Decide(s.w, c, s.env()); err == nil {
						s.Do(c)
						payments = append(payments, c.GetPaymentId())
						paid++
					} else if code := CodeOf(err); code != CodeCurrencyMismatch && code != CodeFailedPrecondition && code != CodeInvalidArgument {
						t.Fatalf("seed %d: payment %v: %v", seed, c, err)
					}
				case k < 10:
					if len(payments) == 0 {
						continue
					}
					c := refundCmd(payments[rng.IntN(len(payments))], "")
					if _, err := Decide(s.w, c, s.env()); err == nil {
						s.Do(c)
						refunded++
					} else if CodeOf(err) != CodeFailedPrecondition {
						t.Fatalf("seed %d: refund %v: %v", seed, c, err)
					}
				default:
					if len(invoices) == 0 {
						continue
					}
					var notes []string
					for _, inv := range receivableOf(s, payerA).Invoices() {
						if inv.IsCreditNote() {
							notes = append(notes, inv.ID())
						}
					}
					if len(notes) == 0 {
						continue
					}
					c := applyCmd(notes[rng.IntN(len(notes))], "")
					if rng.IntN(2) == 0 {
						c.Amount = amount("JPY")[:1]
					}
					if rng.IntN(3) == 0 {
						c.InvoiceIds = []string{invoices[rng.IntN(len(invoices))]}
					}
					if _, err := Decide(s.w, c, s.env()); err == nil {
						s.Do(c)
						credited++
					} else if code := CodeOf(err); code != CodeCurrencyMismatch && code != CodeFailedPrecondition && code != CodeInvalidArgument {
						t.Fatalf("seed %d: apply credit %v: %v", seed, c, err)
					}
				}
				if got := len(s.w[ReceivableStream(payerA)]); got > n+1 {
					t.Fatalf("seed %d: one command appended %d events", seed, got-n)
				}
				checkReceivableInvariants(t, s.w[ReceivableStream(payerA)])
				if t.Failed() {
					t.Fatalf("seed %d failed at step %d", seed, step)
				}
			}
			for _, p := range receivableOf(s, payerA).Payments() {
				allocations += len(p.Allocations())
			}
		})
	}
	// The run must exercise what it checks.
	if paid < 100 || refunded < 20 || allocations < 100 || credited < 20 {
		t.Fatalf("too little exercised: %d payments, %d refunds, %d allocations, %d credit note applications", paid, refunded, allocations, credited)
	}
	t.Logf("%d payments, %d refunds, %d allocations, %d credit note applications", paid, refunded, allocations, credited)
}

func TestY2_EvolveLeavesTheGivenReceivableUnchanged(t *testing.T) {
	s := oneInvoiceWorld(t)
	before := receivableOf(s, payerA)
	out := s.When(payCmd("pay-1", "250", "USD")).ThenOK()
	after := EvolveReceivable(before, out.Changes[0].Events[0])
	wantInvoice(t, before, "INV-1", "0.00", "1000.00", InvoiceOpen)
	if _, ok := before.Payment("pay-1"); ok {
		t.Fatal("the earlier state sees the payment")
	}
	wantInvoice(t, after, "INV-1", "250.00", "750.00", InvoicePartiallyPaid)
	if diff := cmp.Diff(receivableOf(s, payerA).Payments()[0].Allocations(), after.Payments()[0].Allocations(), protocmp.Transform()); diff != "" {
		t.Fatalf("evolve and fold differ:\n%s", diff)
	}
}
