package domain

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Accounts receivable (Y2, Y3): one aggregate per payer, the stream
// billing.receivable.<payer>. The month close posts its invoices there
// (InvoicesPosted); payments, refunds and credit note applications are decided
// against the fold of the same stream and appended to it. The stream's version
// therefore guards every allocation: two payments (or a payment and a credit
// note) racing for one invoice write the same stream, so the loser conflicts
// and is decided again against the winner's allocations.
//
// Credit notes. An invoice whose total is negative (its source organization's
// credits exceed its charges) is a credit note: it owes nothing, and its
// credit, −total, in its currency, belongs to its bill source organization.
// ApplyCredit settles invoices with it (CreditApplied); what remains counts
// against the payer's balance (and its source's) until it is applied.
//
// Amounts. Every amount the receivable records or renders carries exactly the
// currency's minor unit ("150.00", "0.00", "1234" for JPY), the form invoice
// totals already have (M1). Arithmetic is exact decimal (apd); a payment is
// never rounded, so a command amount with more decimals than the minor unit is
// rejected rather than rounded.

// InvoiceStatus is how much of a posted invoice is paid (Y3).
type InvoiceStatus string

// Invoice statuses (Y3). Stable names: read models and the API show them.
const (
	// InvoiceOpen: nothing paid yet.
	InvoiceOpen InvoiceStatus = "OPEN"
	// InvoicePartiallyPaid: something paid, something still outstanding.
	InvoicePartiallyPaid InvoiceStatus = "PARTIALLY_PAID"
	// InvoicePaid: nothing outstanding.
	InvoicePaid InvoiceStatus = "PAID"
	// InvoiceCredit: a credit note (total < 0) with credit left to apply.
	InvoiceCredit InvoiceStatus = "CREDIT"
	// InvoiceCreditApplied: a credit note whose credit is all applied.
	InvoiceCreditApplied InvoiceStatus = "CREDIT_APPLIED"
)

// maxPaymentInvoices bounds the invoices one RecordPayment or ApplyCredit names.
const maxPaymentInvoices = 1000

// amountRe is how a command writes an amount: plain digits, an optional
// fraction, no sign or exponent, at most 15 integer digits.
var amountRe = regexp.MustCompile(`^[0-9]{1,15}(\.[0-9]+)?$`)

// ReceivableInvoice is a posted invoice as the receivable sees it. Amounts are
// immutable decimals; accessors render them with the currency's minor unit.
type ReceivableInvoice struct {
	id       string
	month    string
	source   string
	unit     string
	seller   string
	currency string
	total    *apd.Decimal
	paid     *apd.Decimal // settled: by payments and credit notes
	applied  *apd.Decimal // credit notes: credit applied to invoices
	order    int
}

// ID is the invoice id.
func (i ReceivableInvoice) ID() string { return i.id }

// Month is the billing month of the invoice (YYYY-MM).
func (i ReceivableInvoice) Month() string { return i.month }

// SourceAccountID is the bill source organization the invoice belongs to; every
// allocation to it carries this id (Y2).
func (i ReceivableInvoice) SourceAccountID() string { return i.source }

// InvoiceUnitID is the invoice unit ("" for none).
func (i ReceivableInvoice) InvoiceUnitID() string { return i.unit }

// Seller is the seller of record.
func (i ReceivableInvoice) Seller() string { return i.seller }

// Currency is the invoice currency.
func (i ReceivableInvoice) Currency() string { return i.currency }

// Total is the amount invoiced.
func (i ReceivableInvoice) Total() string { return minorUnitText(i.total, i.currency) }

// Paid is what is settled on the invoice: the payments and the credit notes
// applied to it.
func (i ReceivableInvoice) Paid() string { return minorUnitText(i.paid, i.currency) }

// Outstanding is what is still owed: total − paid, never below zero (an invoice
// whose total is zero or negative owes nothing).
func (i ReceivableInvoice) Outstanding() string { return minorUnitText(i.outstanding(), i.currency) }

// IsCreditNote reports whether the invoice is a credit note: its total is
// negative, so it owes nothing and carries credit (−total) to apply.
func (i ReceivableInvoice) IsCreditNote() bool { return i.total.Sign() < 0 }

// Credit is a credit note's credit, −total (0 for an invoice).
func (i ReceivableInvoice) Credit() string { return minorUnitText(i.credit(), i.currency) }

// CreditApplied is the part of a credit note's credit applied to invoices (0
// for an invoice).
func (i ReceivableInvoice) CreditApplied() string {
	return minorUnitText(i.creditApplied(), i.currency)
}

// RemainingCredit is a credit note's credit not applied yet (0 for an invoice).
func (i ReceivableInvoice) RemainingCredit() string {
	return minorUnitText(i.remainingCredit(), i.currency)
}

// PostingOrder is the 0-based position of the invoice in the payer's stream:
// oldest-first allocation orders invoices by month, then by this.
func (i ReceivableInvoice) PostingOrder() int { return i.order }

// Status is OPEN, PARTIALLY_PAID or PAID (Y3); a credit note's is CREDIT while
// credit remains, then CREDIT_APPLIED.
func (i ReceivableInvoice) Status() InvoiceStatus {
	switch {
	case i.IsCreditNote() && i.remainingCredit().Sign() > 0:
		return InvoiceCredit
	case i.IsCreditNote():
		return InvoiceCreditApplied
	case i.outstanding().Sign() <= 0:
		return InvoicePaid
	case i.paid.Sign() > 0:
		return InvoicePartiallyPaid
	default:
		return InvoiceOpen
	}
}

func (i ReceivableInvoice) outstanding() *apd.Decimal {
	o := amountMinus(i.total, i.paid)
	if o.Sign() < 0 {
		return apd.New(0, 0)
	}
	return o
}

func (i ReceivableInvoice) credit() *apd.Decimal {
	if !i.IsCreditNote() {
		return apd.New(0, 0)
	}
	return amountMinus(apd.New(0, 0), i.total)
}

func (i ReceivableInvoice) creditApplied() *apd.Decimal {
	if i.applied == nil {
		return apd.New(0, 0)
	}
	return i.applied
}

func (i ReceivableInvoice) remainingCredit() *apd.Decimal {
	return amountMinus(i.credit(), i.creditApplied())
}

// ReceivablePayment is a recorded payment: its allocations and what is left of it.
type ReceivablePayment struct {
	id          string
	currency    string
	method      billingv1.PaymentMethod
	amount      *apd.Decimal
	unapplied   *apd.Decimal
	refunded    *apd.Decimal
	allocations []*billingv1.PaymentAllocation
	receivedAt  time.Time
}

// ID is the payment id (unique per payer).
func (p ReceivablePayment) ID() string { return p.id }

// Currency is the payment currency.
func (p ReceivablePayment) Currency() string { return p.currency }

// Method is the stable method name: CARD, BANK_TRANSFER or DIRECT_DEBIT.
func (p ReceivablePayment) Method() string {
	return strings.TrimPrefix(p.method.String(), "PAYMENT_METHOD_")
}

// Amount is the amount paid.
func (p ReceivablePayment) Amount() string { return minorUnitText(p.amount, p.currency) }

// Applied is the part of the payment applied to invoices.
func (p ReceivablePayment) Applied() string {
	return minorUnitText(amountMinus(amountMinus(p.amount, p.unapplied), p.refunded), p.currency)
}

// Unapplied is the payer's credit left on this payment: not applied to any
// invoice and not refunded.
func (p ReceivablePayment) Unapplied() string { return minorUnitText(p.unapplied, p.currency) }

// Refunded is the part of the payment given back.
func (p ReceivablePayment) Refunded() string { return minorUnitText(p.refunded, p.currency) }

// Allocations are the payment's allocations in order (copies).
func (p ReceivablePayment) Allocations() []*billingv1.PaymentAllocation {
	out := make([]*billingv1.PaymentAllocation, len(p.allocations))
	for i, a := range p.allocations {
		out[i] = proto.Clone(a).(*billingv1.PaymentAllocation)
	}
	return out
}

// ReceivedAt is when the payment was recorded (the ledger clock).
func (p ReceivablePayment) ReceivedAt() time.Time { return p.receivedAt }

// ReceivableBalance is a payer's position in one currency (Y3).
type ReceivableBalance struct {
	// Currency of every amount below.
	Currency string
	// Invoiced is the sum of the invoice totals (credit notes' negative totals
	// included).
	Invoiced string
	// Paid is the sum settled on invoices, by payments and by credit notes.
	Paid string
	// Outstanding is the sum of what is still owed on invoices.
	Outstanding string
	// Unapplied is the payer's credit from payments: neither applied nor refunded.
	Unapplied string
	// Refunded is the sum of refunds.
	Refunded string
	// CreditNotes is the remaining credit of the credit notes: not applied yet.
	CreditNotes string
	// Balance is Outstanding − CreditNotes − Unapplied: what the payer owes net
	// of its credit (negative when in credit).
	Balance string
	// OpenInvoices counts the invoices with something outstanding.
	OpenInvoices int
}

// SourceBalance is what one bill source organization's invoices of a payer
// stand at in one currency (Y3). Unapplied payment credit is the payer's, not
// a source's; a credit note's credit is its source's.
type SourceBalance struct {
	// SourceAccountID is the source organization.
	SourceAccountID string
	// Currency of every amount below.
	Currency string
	// Invoiced is the sum of the source's invoice totals (credit notes included).
	Invoiced string
	// Paid is the sum settled on them, by payments and credit notes.
	Paid string
	// Outstanding is what is still owed on them.
	Outstanding string
	// CreditNotes is the remaining credit of the source's credit notes.
	CreditNotes string
	// Balance is Outstanding − CreditNotes (negative when the source is in credit).
	Balance string
	// OpenInvoices counts the source's invoices with something outstanding.
	OpenInvoices int
}

// Receivable is a payer's accounts receivable (Y2, Y3): every posted invoice
// and credit note, every payment, refund and credit note application of the
// stream billing.receivable.<payer>.
type Receivable struct {
	payer      string
	invoices   []ReceivableInvoice // posting order
	invoiceIdx map[string]int
	payments   []ReceivablePayment // recording order
	paymentIdx map[string]int
	refunds    []*billingv1.PaymentRefunded
	credits    []*billingv1.CreditApplied
}

// Payer is the payer whose receivable this is ("" before its first event).
func (r Receivable) Payer() string { return r.payer }

// Invoices lists the posted invoices in posting order.
func (r Receivable) Invoices() []ReceivableInvoice { return slices.Clone(r.invoices) }

// Invoice returns a posted invoice by id.
func (r Receivable) Invoice(id string) (ReceivableInvoice, bool) {
	i, ok := r.invoiceIdx[id]
	if !ok {
		return ReceivableInvoice{}, false
	}
	return r.invoices[i], true
}

// Payments lists the recorded payments in recording order.
func (r Receivable) Payments() []ReceivablePayment { return slices.Clone(r.payments) }

// Payment returns a recorded payment by id.
func (r Receivable) Payment(id string) (ReceivablePayment, bool) {
	i, ok := r.paymentIdx[id]
	if !ok {
		return ReceivablePayment{}, false
	}
	return r.payments[i], true
}

// Refunds lists the refunds in order (copies).
func (r Receivable) Refunds() []*billingv1.PaymentRefunded {
	out := make([]*billingv1.PaymentRefunded, len(r.refunds))
	for i, x := range r.refunds {
		out[i] = proto.Clone(x).(*billingv1.PaymentRefunded)
	}
	return out
}

// CreditApplications lists the credit note applications in order (copies).
func (r Receivable) CreditApplications() []*billingv1.CreditApplied {
	out := make([]*billingv1.CreditApplied, len(r.credits))
	for i, x := range r.credits {
		out[i] = proto.Clone(x).(*billingv1.CreditApplied)
	}
	return out
}

// InvoiceCurrencies lists the currencies of the posted invoices, sorted.
func (r Receivable) InvoiceCurrencies() []string {
	set := map[string]bool{}
	for _, inv := range r.invoices {
		set[inv.currency] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Balances gives the payer's position per currency, for every currency with an
// invoice or a payment, sorted by currency.
func (r Receivable) Balances() []ReceivableBalance {
	type sums struct{ invoiced, paid, outstanding, unapplied, refunded, credit *apd.Decimal }
	by := map[string]*sums{}
	get := func(cur string) *sums {
		s, ok := by[cur]
		if !ok {
			z := apd.New(0, 0)
			s = &sums{z, z, z, z, z, z}
			by[cur] = s
		}
		return s
	}
	open := map[string]int{}
	for _, inv := range r.invoices {
		s := get(inv.currency)
		s.invoiced = amountPlus(s.invoiced, inv.total)
		s.paid = amountPlus(s.paid, inv.paid)
		s.outstanding = amountPlus(s.outstanding, inv.outstanding())
		s.credit = amountPlus(s.credit, inv.remainingCredit())
		if inv.outstanding().Sign() > 0 {
			open[inv.currency]++
		}
	}
	for _, p := range r.payments {
		s := get(p.currency)
		s.unapplied = amountPlus(s.unapplied, p.unapplied)
		s.refunded = amountPlus(s.refunded, p.refunded)
	}
	out := make([]ReceivableBalance, 0, len(by))
	for _, cur := range slices.Sorted(maps.Keys(by)) {
		s := by[cur]
		out = append(out, ReceivableBalance{
			Currency:     cur,
			Invoiced:     minorUnitText(s.invoiced, cur),
			Paid:         minorUnitText(s.paid, cur),
			Outstanding:  minorUnitText(s.outstanding, cur),
			Unapplied:    minorUnitText(s.unapplied, cur),
			Refunded:     minorUnitText(s.refunded, cur),
			CreditNotes:  minorUnitText(s.credit, cur),
			Balance:      minorUnitText(amountMinus(amountMinus(s.outstanding, s.credit), s.unapplied), cur),
			OpenInvoices: open[cur],
		})
	}
	return out
}

// Balance gives the payer's position in one currency (zero amounts when it has
// neither invoices nor payments in it).
func (r Receivable) Balance(currency string) ReceivableBalance {
	for _, b := range r.Balances() {
		if b.Currency == currency {
			return b
		}
	}
	z := minorUnitText(apd.New(0, 0), currency)
	return ReceivableBalance{Currency: currency, Invoiced: z, Paid: z, Outstanding: z, Unapplied: z, Refunded: z, CreditNotes: z, Balance: z}
}

// SourceBalances gives, per source organization and currency, what its invoices
// and credit notes stand at, sorted by source then currency. Per currency, the
// outstanding amounts add up to the payer's Balance(currency).Outstanding, and
// the credit notes to its CreditNotes.
func (r Receivable) SourceBalances() []SourceBalance {
	type key struct{ source, currency string }
	type sums struct {
		invoiced, paid, outstanding, credit *apd.Decimal
		open                                int
	}
	by := map[key]*sums{}
	for _, inv := range r.invoices {
		k := key{inv.source, inv.currency}
		s, ok := by[k]
		if !ok {
			z := apd.New(0, 0)
			s = &sums{invoiced: z, paid: z, outstanding: z, credit: z}
			by[k] = s
		}
		s.invoiced = amountPlus(s.invoiced, inv.total)
		s.paid = amountPlus(s.paid, inv.paid)
		s.outstanding = amountPlus(s.outstanding, inv.outstanding())
		s.credit = amountPlus(s.credit, inv.remainingCredit())
		if inv.outstanding().Sign() > 0 {
			s.open++
		}
	}
	keys := slices.SortedFunc(maps.Keys(by), func(a, b key) int {
		if c := strings.Compare(a.source, b.source); c != 0 {
			return c
		}
		return strings.Compare(a.currency, b.currency)
	})
	out := make([]SourceBalance, 0, len(keys))
	for _, k := range keys {
		s := by[k]
		out = append(out, SourceBalance{
			SourceAccountID: k.source, Currency: k.currency,
			Invoiced:     minorUnitText(s.invoiced, k.currency),
			Paid:         minorUnitText(s.paid, k.currency),
			Outstanding:  minorUnitText(s.outstanding, k.currency),
			CreditNotes:  minorUnitText(s.credit, k.currency),
			Balance:      minorUnitText(amountMinus(s.outstanding, s.credit), k.currency),
			OpenInvoices: s.open,
		})
	}
	return out
}

// openInvoices returns the indexes of the invoices in a currency with something
// outstanding, oldest first: by month, then posting order (Y2). A credit note
// owes nothing, so it is never among them.
func (r Receivable) openInvoices(currency string) []int {
	var out []int
	for i, inv := range r.invoices {
		if inv.currency == currency && inv.outstanding().Sign() > 0 {
			out = append(out, i)
		}
	}
	slices.SortStableFunc(out, func(a, b int) int {
		if c := strings.Compare(r.invoices[a].month, r.invoices[b].month); c != 0 {
			return c
		}
		return r.invoices[a].order - r.invoices[b].order
	})
	return out
}

// EvolveReceivable folds one event into a receivable. It never changes r: the
// result owns its own slices and maps.
func EvolveReceivable(r Receivable, ev *billingv1.Event) Receivable {
	r.invoices = slices.Clone(r.invoices)
	r.invoiceIdx = maps.Clone(r.invoiceIdx)
	r.payments = slices.Clone(r.payments)
	r.paymentIdx = maps.Clone(r.paymentIdx)
	r.refunds = slices.Clone(r.refunds)
	r.credits = slices.Clone(r.credits)
	r.apply(ev)
	return r
}

// FoldReceivable folds a payer's receivable stream. It applies the events to a
// value it owns, so a long stream folds in linear time.
func FoldReceivable(events []*billingv1.Event) Receivable {
	var r Receivable
	for _, ev := range events {
		r.apply(ev)
	}
	return r
}

// apply mutates r in place; only FoldReceivable and EvolveReceivable (on its
// copy) call it. Decimals are never mutated, only replaced, so copies that share
// them stay unchanged. An amount is recomputed from the allocations rather
// than taken from the event's running figures (outstanding_after, unapplied),
// which the decision derived the same way.
func (r *Receivable) apply(ev *billingv1.Event) {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_InvoicesPosted:
		e := p.InvoicesPosted
		if r.payer == "" {
			r.payer = e.GetPayerAccountId()
		}
		for _, s := range e.GetInvoices() {
			if _, dup := r.invoiceIdx[s.GetInvoiceId()]; dup {
				continue // an invoice is posted once; ignore a repeat
			}
			if r.invoiceIdx == nil {
				r.invoiceIdx = map[string]int{}
			}
			r.invoiceIdx[s.GetInvoiceId()] = len(r.invoices)
			r.invoices = append(r.invoices, ReceivableInvoice{
				id: s.GetInvoiceId(), month: s.GetMonth(), source: s.GetSourceAccountId(), unit: s.GetInvoiceUnitId(),
				seller: s.GetSeller(), currency: s.GetCurrency(), total: amountOf(s.GetTotal()), paid: apd.New(0, 0),
				order: len(r.invoices),
			})
		}
	case *billingv1.Event_PaymentRecorded:
		e := p.PaymentRecorded
		if r.payer == "" {
			r.payer = e.GetPayerAccountId()
		}
		if _, dup := r.paymentIdx[e.GetPaymentId()]; dup {
			return
		}
		amount := amountOf(e.GetAmount())
		unapplied := amount
		allocs := make([]*billingv1.PaymentAllocation, len(e.GetAllocations()))
		for k, a := range e.GetAllocations() {
			allocs[k] = proto.Clone(a).(*billingv1.PaymentAllocation)
			applied := amountOf(a.GetAmount())
			unapplied = amountMinus(unapplied, applied)
			if i, ok := r.invoiceIdx[a.GetInvoiceId()]; ok {
				r.invoices[i].paid = amountPlus(r.invoices[i].paid, applied)
			}
		}
		if r.paymentIdx == nil {
			r.paymentIdx = map[string]int{}
		}
		r.paymentIdx[e.GetPaymentId()] = len(r.payments)
		r.payments = append(r.payments, ReceivablePayment{
			id: e.GetPaymentId(), currency: e.GetCurrency(), method: e.GetMethod(), amount: amount,
			unapplied: unapplied, refunded: apd.New(0, 0), allocations: allocs, receivedAt: e.GetReceivedAt().AsTime(),
		})
	case *billingv1.Event_PaymentRefunded:
		e := p.PaymentRefunded
		i, ok := r.paymentIdx[e.GetPaymentId()]
		if !ok {
			return
		}
		amount := amountOf(e.GetAmount())
		r.payments[i].unapplied = amountMinus(r.payments[i].unapplied, amount)
		r.payments[i].refunded = amountPlus(r.payments[i].refunded, amount)
		r.refunds = append(r.refunds, proto.Clone(e).(*billingv1.PaymentRefunded))
	case *billingv1.Event_CreditApplied:
		e := p.CreditApplied
		if r.payer == "" {
			r.payer = e.GetPayerAccountId()
		}
		applied := apd.New(0, 0)
		for _, a := range e.GetAllocations() {
			amount := amountOf(a.GetAmount())
			applied = amountPlus(applied, amount)
			if i, ok := r.invoiceIdx[a.GetInvoiceId()]; ok {
				r.invoices[i].paid = amountPlus(r.invoices[i].paid, amount)
			}
		}
		if i, ok := r.invoiceIdx[e.GetCreditNoteId()]; ok {
			r.invoices[i].applied = amountPlus(r.invoices[i].creditApplied(), applied)
		}
		r.credits = append(r.credits, proto.Clone(e).(*billingv1.CreditApplied))
	}
}

// ---------------------------------------------------------------------------
// Decisions (Y2).

// decideRecordPayment records a payment and allocates it: to the named invoices
// in the given order, or else to the payer's open invoices in the payment
// currency, oldest first. What is left stays as the payer's unapplied credit.
func decideRecordPayment(v View, c *billingv1.RecordPayment, env Env) (Outcome, error) {
	pid, payer, currency := c.GetPaymentId(), c.GetPayerAccountId(), c.GetCurrency()
	if err := checkID("payment_id", pid); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("payer_account_id", payer); err != nil {
		return Outcome{}, err
	}
	if err := checkCurrency("currency", currency); err != nil {
		return Outcome{}, err
	}
	amount, err := checkAmount("amount", c.GetAmount(), currency)
	if err != nil {
		return Outcome{}, err
	}
	method, err := checkMethod("method", c.GetMethod())
	if err != nil {
		return Outcome{}, err
	}
	named := c.GetInvoiceIds()
	r, err := loadReceivable(v, payer, named, "payment")
	if err != nil {
		return Outcome{}, err
	}
	if p, ok := r.Payment(pid); ok {
		return Outcome{}, Reject(CodeAlreadyExists, "payment %s of payer %s is already recorded (%s %s); use a new payment id", pid, payer, p.Amount(), p.currency)
	}

	var targets []int
	if len(named) > 0 {
		for _, id := range named {
			i, ok := r.invoiceIdx[id]
			if !ok {
				return Outcome{}, Reject(CodeNotFound, "invoice %s is not a posted invoice of payer %s", id, payer)
			}
			inv := r.invoices[i]
			if inv.IsCreditNote() {
				return Outcome{}, Reject(CodeFailedPrecondition, "invoice %s is a credit note; apply it with ApplyCredit (credit %s %s, %s remaining)",
					id, inv.Credit(), inv.currency, inv.RemainingCredit())
			}
			if inv.currency != currency {
				return Outcome{}, Reject(CodeCurrencyMismatch, "invoice %s is in %s but the payment is in %s; an invoice is paid in its own currency (Y2)", id, inv.currency, currency)
			}
			if inv.outstanding().Sign() <= 0 {
				return Outcome{}, Reject(CodeFailedPrecondition, "invoice %s is already paid (total %s %s, nothing outstanding)", id, inv.Total(), inv.currency)
			}
			targets = append(targets, i)
		}
	} else {
		if have := r.InvoiceCurrencies(); len(have) > 0 && !slices.Contains(have, currency) {
			return Outcome{}, Reject(CodeCurrencyMismatch, "payer %s has invoices only in %s, none in %s; record the payment in an invoice currency (Y2)", payer, strings.Join(have, ", "), currency)
		}
		targets = r.openInvoices(currency)
	}

	allocs, remaining := r.allocate(targets, amount, currency)
	recorded := &billingv1.PaymentRecorded{
		PaymentId:      pid,
		PayerAccountId: payer,
		Amount:         minorUnitText(amount, currency),
		Currency:       currency,
		Method:         method,
		Allocations:    allocs,
		Unapplied:      minorUnitText(remaining, currency),
		ReceivedAt:     timestamppb.New(env.Now),
	}
	return Outcome{AggregateID: pid, Changes: []Change{{Stream: ReceivableStream(payer), Events: one(ev(recorded))}}}, nil
}

// allocate spreads amount over the invoices at targets, in order: each takes
// at most its outstanding. It returns the allocations and what is left.
func (r Receivable) allocate(targets []int, amount *apd.Decimal, currency string) ([]*billingv1.PaymentAllocation, *apd.Decimal) {
	remaining := amount
	var allocs []*billingv1.PaymentAllocation
	for _, i := range targets {
		if remaining.Sign() <= 0 {
			break
		}
		inv := r.invoices[i]
		out := inv.outstanding()
		applied := out
		if remaining.Cmp(out) < 0 {
			applied = remaining
		}
		remaining = amountMinus(remaining, applied)
		allocs = append(allocs, &billingv1.PaymentAllocation{
			InvoiceId:           inv.id,
			BillSourceAccountId: inv.source,
			Amount:              minorUnitText(applied, currency),
			OutstandingAfter:    minorUnitText(amountMinus(out, applied), currency),
		})
	}
	return allocs, remaining
}

// decideApplyCredit applies a credit note's remaining credit (all of it, or
// the amount given) to the named invoices in the given order, or else to the
// payer's open invoices in the credit note's currency, oldest first, as a
// payment would be (Y2). Each invoice takes at most its outstanding; what the
// invoices do not need stays on the credit note.
// loadReceivable checks the invoice ids a payment or credit application
// (per) names, and that payer is a registered organization, then folds its
// receivable.
func loadReceivable(v View, payer string, named []string, per string) (Receivable, error) {
	if len(named) > maxPaymentInvoices {
		return Receivable{}, Reject(CodeInvalidArgument, "invoice_ids names %d invoices; at most %d per %s", len(named), maxPaymentInvoices, per)
	}
	if err := uniqueIDs("invoice_ids", named, checkID); err != nil {
		return Receivable{}, err
	}
	if _, err := loadManagementOrg(v, "payer", payer); err != nil {
		return Receivable{}, err
	}
	evs, err := v.Events(ReceivableStream(payer))
	if err != nil {
		return Receivable{}, err
	}
	return FoldReceivable(evs), nil
}

func decideApplyCredit(v View, c *billingv1.ApplyCredit) (Outcome, error) {
	payer, noteID := c.GetPayerAccountId(), c.GetCreditNoteId()
	if err := checkAccountID("payer_account_id", payer); err != nil {
		return Outcome{}, err
	}
	if err := checkID("credit_note_id", noteID); err != nil {
		return Outcome{}, err
	}
	named := c.GetInvoiceIds()
	r, err := loadReceivable(v, payer, named, "application")
	if err != nil {
		return Outcome{}, err
	}
	ni, ok := r.invoiceIdx[noteID]
	if !ok {
		return Outcome{}, Reject(CodeNotFound, "credit note %s is not a posted invoice of payer %s", noteID, payer)
	}
	note := r.invoices[ni]
	currency := note.currency
	if !note.IsCreditNote() {
		return Outcome{}, Reject(CodeFailedPrecondition, "invoice %s is not a credit note (total %s %s); only an invoice whose total is negative carries credit",
			noteID, note.Total(), currency)
	}
	left := note.remainingCredit()
	if left.Sign() <= 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "credit note %s has no credit left (credit %s %s, all applied)", noteID, note.Credit(), currency)
	}
	amount := left
	if c.GetAmount() != "" {
		if amount, err = checkAmount("amount", c.GetAmount(), currency); err != nil {
			return Outcome{}, err
		}
		if amount.Cmp(left) > 0 {
			return Outcome{}, Reject(CodeInvalidArgument, "amount %s is more than the remaining credit %s %s of credit note %s",
				minorUnitText(amount, currency), note.RemainingCredit(), currency, noteID)
		}
	}

	var targets []int
	if len(named) > 0 {
		for _, id := range named {
			i, ok := r.invoiceIdx[id]
			if !ok {
				return Outcome{}, Reject(CodeNotFound, "invoice %s is not a posted invoice of payer %s", id, payer)
			}
			inv := r.invoices[i]
			if inv.IsCreditNote() {
				return Outcome{}, Reject(CodeFailedPrecondition, "invoice %s is itself a credit note; a credit note settles invoices, not credit notes", id)
			}
			if inv.currency != currency {
				return Outcome{}, Reject(CodeCurrencyMismatch, "invoice %s is in %s but credit note %s is in %s; credit settles invoices of its own currency (Y2)",
					id, inv.currency, noteID, currency)
			}
			if inv.outstanding().Sign() <= 0 {
				return Outcome{}, Reject(CodeFailedPrecondition, "invoice %s is already paid (total %s %s, nothing outstanding)", id, inv.Total(), inv.currency)
			}
			targets = append(targets, i)
		}
	} else {
		targets = r.openInvoices(currency)
		if len(targets) == 0 {
			return Outcome{}, Reject(CodeFailedPrecondition, "payer %s has no open invoice in %s for credit note %s to settle; its credit %s %s stays",
				payer, currency, noteID, note.RemainingCredit(), currency)
		}
	}

	allocs, unused := r.allocate(targets, amount, currency)
	applied := amountMinus(amount, unused)
	credited := &billingv1.CreditApplied{
		PayerAccountId:      payer,
		CreditNoteId:        noteID,
		BillSourceAccountId: note.source,
		Currency:            currency,
		Amount:              minorUnitText(applied, currency),
		Allocations:         allocs,
		RemainingCredit:     minorUnitText(amountMinus(left, applied), currency),
	}
	return Outcome{AggregateID: noteID, Changes: []Change{{Stream: ReceivableStream(payer), Events: one(ev(credited))}}}, nil
}

// decideRefundPayment gives back all or part of a payment's unapplied credit.
func decideRefundPayment(v View, c *billingv1.RefundPayment, env Env) (Outcome, error) {
	pid, payer := c.GetPaymentId(), c.GetPayerAccountId()
	if err := checkID("payment_id", pid); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("payer_account_id", payer); err != nil {
		return Outcome{}, err
	}
	if _, err := loadManagementOrg(v, "payer", payer); err != nil {
		return Outcome{}, err
	}
	evs, err := v.Events(ReceivableStream(payer))
	if err != nil {
		return Outcome{}, err
	}
	p, ok := FoldReceivable(evs).Payment(pid)
	if !ok {
		return Outcome{}, Reject(CodeNotFound, "payment %s of payer %s is not recorded", pid, payer)
	}
	if p.unapplied.Sign() <= 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "payment %s has no unapplied credit to refund (amount %s %s: %s applied, %s refunded)",
			pid, p.Amount(), p.currency, p.Applied(), p.Refunded())
	}
	amount := p.unapplied
	if c.GetAmount() != "" {
		if amount, err = checkAmount("amount", c.GetAmount(), p.currency); err != nil {
			return Outcome{}, err
		}
		if amount.Cmp(p.unapplied) > 0 {
			return Outcome{}, Reject(CodeFailedPrecondition, "amount %s is more than the unapplied credit %s %s of payment %s",
				minorUnitText(amount, p.currency), p.Unapplied(), p.currency, pid)
		}
	}
	refunded := &billingv1.PaymentRefunded{
		PaymentId:      pid,
		PayerAccountId: payer,
		Amount:         minorUnitText(amount, p.currency),
		Currency:       p.currency,
		UnappliedAfter: minorUnitText(amountMinus(p.unapplied, amount), p.currency),
	}
	return Outcome{AggregateID: pid, Changes: []Change{{Stream: ReceivableStream(payer), Events: one(ev(refunded))}}}, nil
}

// checkAmount parses a command's money amount: a plain decimal > 0 with at most
// the currency's minor unit of decimals (M1: a payment is never rounded).
func checkAmount(field, s, currency string) (*apd.Decimal, error) {
	if s == "" {
		return nil, Reject(CodeInvalidArgument, "%s is required (a decimal > 0 in %s)", field, currency)
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return nil, Reject(CodeInvalidArgument, "%s: %v", field, err)
	}
	if d.Sign() <= 0 {
		return nil, Reject(CodeInvalidArgument, "%s %s must be > 0", field, s)
	}
	if !amountRe.MatchString(s) {
		return nil, Reject(CodeInvalidArgument, "%s %q must be written as digits with an optional decimal point (at most 15 digits before it, no sign or exponent)", field, s)
	}
	var r apd.Decimal
	r.Reduce(d)
	if minor := Currencies[currency]; r.Exponent < -int32(minor) {
		return nil, Reject(CodeInvalidArgument, "%s %s has more than %d decimals, the minor unit of %s (M1)", field, s, minor, currency)
	}
	return d, nil
}

// checkMethod parses a payment method, naming the command's field.
func checkMethod(field, s string) (billingv1.PaymentMethod, error) {
	m, err := parsePaymentMethod(s)
	if err == nil {
		return m, nil
	}
	if s == "" {
		return 0, Reject(CodeInvalidArgument, "%s is required: CARD, BANK_TRANSFER or DIRECT_DEBIT", field)
	}
	return 0, Reject(CodeInvalidArgument, "%s %q is not one of CARD, BANK_TRANSFER, DIRECT_DEBIT", field, s)
}

// ---------------------------------------------------------------------------
// Amount arithmetic. Amounts are bounded far below the 60 digits of
// decimalCtx, so sums and differences are exact.

// amountOf parses an amount recorded in an event; events are written by the
// decisions above and the close, so a malformed one cannot occur and reads as 0.
func amountOf(s string) *apd.Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		return apd.New(0, 0)
	}
	return d
}

func amountPlus(a, b *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	_, _ = decimalCtx.Add(&r, a, b)
	return &r
}

func amountMinus(a, b *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	_, _ = decimalCtx.Sub(&r, a, b)
	return &r
}

// minorUnitText renders an amount with exactly the currency's minor unit
// ("150.00", "0.00", "1234" for JPY): the one rendering of the receivable.
func minorUnitText(d *apd.Decimal, currency string) string {
	minor, ok := Currencies[currency]
	if !ok {
		return CanonicalDecimal(d)
	}
	var q apd.Decimal
	if _, err := decimalCtx.Quantize(&q, d, -int32(minor)); err != nil {
		return CanonicalDecimal(d)
	}
	if q.IsZero() {
		q.Negative = false
	}
	return q.Text('f')
}
