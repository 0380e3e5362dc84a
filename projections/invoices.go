package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// The invoices and payments read models (DESIGN R1, X5, Y2, Y3). Two
// projections, one per stream family, so that each reads only its own
// streams (and neither reads the usage streams):
//
//   - Invoices (billing.month.<payer>.<M>): MonthClosed → a close;
//     InvoicesIssued (and InvoiceIssued, one per invoice, in closes written
//     before it) → invoices with their lines and taxes, stored as issued;
//     InvoiceLinesIssued → further lines of the invoice issued just before;
//   - Payments (billing.receivable.<payer>): InvoicesPosted (one per close,
//     several for a large one) → one receivable per invoice (issued = its
//     total, OPEN; a negative total is a credit note: nothing outstanding, all
//     its credit remaining, CREDIT); PaymentRecorded → the payment, its
//     allocations, and each allocated invoice's paid, outstanding and status
//     following the allocation's outstanding_after (EvolveReceivable);
//     PaymentRefunded → the refund, and the payment's unapplied credit (and
//     nothing else); CreditApplied → the application, its allocations (each
//     invoice evolves as for a payment), and the credit note's remaining
//     credit and status following the event's remaining_credit
//     (EvolveCreditNote).
//
// UsageMonthClosed (a marker on the usage streams) is read by neither. The
// queries join the two by invoice id. Both reflect the events as recorded:
// the domain decided them, so the projections do not judge the arithmetic
// again; what they refuse, stopping the runner, is a history they cannot make
// rows from (an invoice on another month's stream, an invoice or payment
// recorded twice, an allocation to an invoice never posted, credit applied
// from what is not a credit note, an amount that is not a decimal).

// Names and filters of the two projections.
const (
	// InvoicesName is the invoices projection's checkpoint key.
	InvoicesName = readmodel.InvoicesProjection
	// InvoicesFilter selects the month close streams (billing.month.<payer>.<YYYY-MM>).
	InvoicesFilter = "billing.month.>"
	// PaymentsName is the payments projection's checkpoint key.
	PaymentsName = readmodel.PaymentsProjection
	// PaymentsFilter selects the receivable streams (billing.receivable.<payer>).
	PaymentsFilter = "billing.receivable.>"
)

// MonthCloseFilter selects the close streams of one month, every payer
// (billing.month.*.<YYYY-MM>): what a replay of the month's invoices reads.
func MonthCloseFilter(month string) string { return "billing.month.*." + month }

// Invoices is the invoices projection: closes, invoices as issued, their
// lines and taxes. The zero value is ready to use.
type Invoices struct{}

var _ Projection = Invoices{}

// Name implements Projection.
func (Invoices) Name() string { return InvoicesName }

// Filter implements Projection.
func (Invoices) Filter() string { return InvoicesFilter }

// Apply implements Projection.
func (Invoices) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	switch p := rec.Event.GetPayload().(type) {
	case *billingv1.Event_MonthClosed:
		row, err := ClosedMonthOf(rec)
		if err != nil {
			return err
		}
		closed, err := readmodel.ClosedMonthExists(ctx, tx, row.PayerAccountID, row.Month)
		if err != nil {
			return err
		}
		if closed {
			return fmt.Errorf("invoices: month %s of payer %s closed twice", row.Month, row.PayerAccountID)
		}
		return readmodel.InsertClosedMonth(ctx, tx, row)
	case *billingv1.Event_InvoiceIssued:
		return applyInvoiceIssued(ctx, tx, rec, p.InvoiceIssued.GetInvoice())
	case *billingv1.Event_InvoicesIssued:
		if len(p.InvoicesIssued.GetInvoices()) == 0 {
			return fmt.Errorf("invoices: InvoicesIssued without invoices")
		}
		for _, inv := range p.InvoicesIssued.GetInvoices() {
			if err := applyInvoiceIssued(ctx, tx, rec, inv); err != nil {
				return err
			}
		}
	case *billingv1.Event_InvoiceLinesIssued:
		return applyInvoiceLinesIssued(ctx, tx, rec, p.InvoiceLinesIssued)
	}
	return nil
}

// applyInvoiceIssued stores one issued invoice (of an InvoiceIssued or an
// InvoicesIssued), as issued; further lines may follow in InvoiceLinesIssued.
func applyInvoiceIssued(ctx context.Context, tx *sql.Tx, rec eventstore.Record, inv *billingv1.Invoice) error {
	if err := CheckInvoice(rec.Event.GetStream(), inv); err != nil {
		return err
	}
	closed, err := readmodel.ClosedMonthExists(ctx, tx, inv.GetPayerAccountId(), inv.GetMonth())
	if err != nil {
		return err
	}
	if !closed {
		return fmt.Errorf("invoices: invoice %q issued for month %s of payer %s, which is not closed",
			inv.GetInvoiceId(), inv.GetMonth(), inv.GetPayerAccountId())
	}
	exists, err := readmodel.InvoiceExists(ctx, tx, inv.GetInvoiceId())
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("invoices: invoice %q issued twice", inv.GetInvoiceId())
	}
	return readmodel.InsertInvoice(ctx, tx, inv, rec.Position)
}

// applyInvoiceLinesIssued appends the continued lines of an invoice stored
// before, on the same close's stream, starting right after its last line.
func applyInvoiceLinesIssued(ctx context.Context, tx *sql.Tx, rec eventstore.Record, ev *billingv1.InvoiceLinesIssued) error {
	id := ev.GetInvoiceId()
	head, err := readmodel.GetInvoiceHead(ctx, tx, id)
	if err != nil {
		return err
	}
	if head == nil {
		return fmt.Errorf("invoices: lines of invoice %q, which was never issued", id)
	}
	if err := checkMonthStream(rec.Event.GetStream(), head.PayerAccountID, head.Month); err != nil {
		return fmt.Errorf("invoices: lines of invoice %q: %w", id, err)
	}
	if len(ev.GetLines()) == 0 {
		return fmt.Errorf("invoices: InvoiceLinesIssued for invoice %q without lines", id)
	}
	if want := head.Lines + 1; uint64(ev.GetFirstLine()) != want {
		return fmt.Errorf("invoices: lines of invoice %q start at line %d; the invoice has %d lines, so the next is %d",
			id, ev.GetFirstLine(), head.Lines, want)
	}
	for i, l := range ev.GetLines() {
		if want := uint64(ev.GetFirstLine()) + uint64(i); uint64(l.GetLineNumber()) != want {
			return fmt.Errorf("invoices: invoice %q: line %d of InvoiceLinesIssued is numbered %d, want %d", id, i+1, l.GetLineNumber(), want)
		}
		if err := checkInvoiceLine(id, l); err != nil {
			return err
		}
	}
	return readmodel.InsertInvoiceLines(ctx, tx, id, ev.GetLines())
}

// ClosedMonthOf is the close a MonthClosed records. It is pure; the event
// must be on its own stream, billing.month.<payer>.<month>, so that a replay
// of the month (which reads those streams only) sees it.
func ClosedMonthOf(rec eventstore.Record) (*readmodel.ClosedMonthRow, error) {
	mc := rec.Event.GetMonthClosed()
	if mc == nil {
		return nil, fmt.Errorf("invoices: %s is not a MonthClosed", payloadName(rec.Event))
	}
	if err := checkMonthStream(rec.Event.GetStream(), mc.GetPayerAccountId(), mc.GetMonth()); err != nil {
		return nil, fmt.Errorf("invoices: MonthClosed: %w", err)
	}
	if mc.GetInvoiceDate() == "" {
		return nil, fmt.Errorf("invoices: MonthClosed of %s by %s has no invoice_date", mc.GetMonth(), mc.GetPayerAccountId())
	}
	at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
	if err != nil {
		return nil, fmt.Errorf("invoices: MonthClosed: %w", err)
	}
	return &readmodel.ClosedMonthRow{
		PayerAccountID: mc.GetPayerAccountId(),
		Month:          mc.GetMonth(),
		InvoiceDate:    mc.GetInvoiceDate(),
		InvoiceCount:   uint64(domain.ClosedInvoiceCount(mc)), // counted or, in older closes, listed
		UsageRecords:   mc.GetUsageRecords(),
		ClosedAt:       at,
		Position:       rec.Position,
	}, nil
}

// checkMonthStream checks that stream is billing.month.<payer>.<month> for a
// valid payer and month.
func checkMonthStream(stream, payer, month string) error {
	if !domain.ValidAccountID(payer) {
		return fmt.Errorf("payer_account_id %q is not a 12-digit account id", payer)
	}
	if _, err := domain.ParseMonth(month); err != nil {
		return err
	}
	if want := domain.MonthStream(payer, month); stream != want {
		return fmt.Errorf("on stream %q, want %q", stream, want)
	}
	return nil
}

// CheckInvoice checks an issued invoice before it is stored: on its close's
// stream, with an id, a currency, and decimal amounts (subtotal, tax, total,
// every line's and tax's amounts). It is pure.
func CheckInvoice(stream string, inv *billingv1.Invoice) error {
	if inv == nil {
		return fmt.Errorf("invoices: InvoiceIssued without an invoice")
	}
	id := inv.GetInvoiceId()
	if id == "" {
		return fmt.Errorf("invoices: InvoiceIssued: invoice without invoice_id")
	}
	if err := checkMonthStream(stream, inv.GetPayerAccountId(), inv.GetMonth()); err != nil {
		return fmt.Errorf("invoices: invoice %q: %w", id, err)
	}
	if inv.GetCurrency() == "" || inv.GetSourceAccountId() == "" {
		return fmt.Errorf("invoices: invoice %q: currency %q and source_account_id %q must both be set",
			id, inv.GetCurrency(), inv.GetSourceAccountId())
	}
	check := func(what, v string, optional bool) error {
		if optional && v == "" {
			return nil
		}
		if _, err := domain.ParseDecimal(v); err != nil {
			return fmt.Errorf("invoices: invoice %q: %s: %w", id, what, err)
		}
		return nil
	}
	for _, f := range [...]struct{ what, v string }{{"subtotal", inv.GetSubtotal()}, {"tax", inv.GetTax()}, {"total", inv.GetTotal()}} {
		if err := check(f.what, f.v, false); err != nil {
			return err
		}
	}
	for _, l := range inv.GetLines() {
		if err := checkInvoiceLine(id, l); err != nil {
			return err
		}
	}
	for i, t := range inv.GetTaxes() {
		for _, f := range [...]struct {
			what, v  string
			optional bool
		}{{"taxable", t.GetTaxable(), false}, {"tax", t.GetTax(), false}, {"rate_percentage", t.GetRatePercentage(), true}} {
			if err := check(fmt.Sprintf("tax %d (%s) %s", i+1, t.GetJurisdiction(), f.what), f.v, f.optional); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkInvoiceLine checks one line of invoice id: numbered, with decimal
// amounts (the amount always; billed cost, rate and converted when set).
func checkInvoiceLine(id string, l *billingv1.InvoiceLine) error {
	n := l.GetLineNumber()
	if n == 0 {
		return fmt.Errorf("invoices: invoice %q: line without line_number", id)
	}
	for _, f := range [...]struct {
		what, v  string
		optional bool
	}{{"amount", l.GetAmount(), false}, {"billed_cost", l.GetBilledCost(), true}, {"fx_rate", l.GetFxRate(), true}, {"converted", l.GetConverted(), true}} {
		if f.optional && f.v == "" {
			continue
		}
		if _, err := domain.ParseDecimal(f.v); err != nil {
			return fmt.Errorf("invoices: invoice %q: line %d %s: %w", id, n, f.what, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Payments.

// Payments is the payments projection: receivables, payments, allocations
// and refunds. The zero value is ready to use.
type Payments struct{}

var _ Projection = Payments{}

// Name implements Projection.
func (Payments) Name() string { return PaymentsName }

// Filter implements Projection.
func (Payments) Filter() string { return PaymentsFilter }

// Apply implements Projection.
func (Payments) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	switch p := rec.Event.GetPayload().(type) {
	case *billingv1.Event_InvoicesPosted:
		return applyInvoicesPosted(ctx, tx, rec, p.InvoicesPosted)
	case *billingv1.Event_PaymentRecorded:
		return applyPaymentRecorded(ctx, tx, rec, p.PaymentRecorded)
	case *billingv1.Event_PaymentRefunded:
		return applyPaymentRefunded(ctx, tx, rec, p.PaymentRefunded)
	case *billingv1.Event_CreditApplied:
		return applyCreditApplied(ctx, tx, rec, p.CreditApplied)
	}
	return nil
}

// checkReceivableStream checks that stream is billing.receivable.<payer>.
func checkReceivableStream(stream, payer string) error {
	if !domain.ValidAccountID(payer) {
		return fmt.Errorf("payer_account_id %q is not a 12-digit account id", payer)
	}
	if want := domain.ReceivableStream(payer); stream != want {
		return fmt.Errorf("on stream %q, want %q", stream, want)
	}
	return nil
}

func applyInvoicesPosted(ctx context.Context, tx *sql.Tx, rec eventstore.Record, ev *billingv1.InvoicesPosted) error {
	payer := ev.GetPayerAccountId()
	if err := checkReceivableStream(rec.Event.GetStream(), payer); err != nil {
		return fmt.Errorf("payments: InvoicesPosted: %w", err)
	}
	for _, s := range ev.GetInvoices() {
		row, err := PostedReceivable(payer, ev.GetMonth(), s, rec.Position)
		if err != nil {
			return err
		}
		prev, err := readmodel.GetReceivable(ctx, tx, row.InvoiceID)
		if err != nil {
			return err
		}
		if prev != nil {
			return fmt.Errorf("payments: invoice %q posted twice (first at position %d)", row.InvoiceID, prev.PostedPosition)
		}
		if err := readmodel.PutReceivable(ctx, tx, row); err != nil {
			return err
		}
	}
	return nil
}

func applyPaymentRecorded(ctx context.Context, tx *sql.Tx, rec eventstore.Record, ev *billingv1.PaymentRecorded) error {
	payer, id := ev.GetPayerAccountId(), ev.GetPaymentId()
	if err := checkReceivableStream(rec.Event.GetStream(), payer); err != nil {
		return fmt.Errorf("payments: PaymentRecorded: %w", err)
	}
	p, err := RecordedPayment(rec)
	if err != nil {
		return err
	}
	prev, err := readmodel.GetPayment(ctx, tx, payer, id)
	if err != nil {
		return err
	}
	if prev != nil {
		return fmt.Errorf("payments: payment %q of payer %s recorded twice (first at position %d)", id, payer, prev.Position)
	}
	if err := readmodel.InsertPayment(ctx, tx, p); err != nil {
		return err
	}
	for i, a := range ev.GetAllocations() {
		if err := settleInvoice(ctx, tx, payer, a, rec.Position, fmt.Sprintf("payment %q", id), "allocates to", false); err != nil {
			return err
		}
		if err := readmodel.InsertAllocation(ctx, tx, &readmodel.AllocationRow{
			PayerAccountID: payer, PaymentID: id, Seq: uint64(i + 1), InvoiceID: a.GetInvoiceId(),
			BillSourceAccountID: a.GetBillSourceAccountId(), Amount: a.GetAmount(), OutstandingAfter: a.GetOutstandingAfter(),
			Position: rec.Position,
		}); err != nil {
			return err
		}
	}
	return nil
}

func applyCreditApplied(ctx context.Context, tx *sql.Tx, rec eventstore.Record, ev *billingv1.CreditApplied) error {
	payer, id := ev.GetPayerAccountId(), ev.GetCreditNoteId()
	if err := checkReceivableStream(rec.Event.GetStream(), payer); err != nil {
		return fmt.Errorf("payments: CreditApplied: %w", err)
	}
	at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
	if err != nil {
		return fmt.Errorf("payments: CreditApplied: %w", err)
	}
	note, err := readmodel.GetReceivable(ctx, tx, id)
	if err != nil {
		return err
	}
	if note == nil {
		return fmt.Errorf("payments: credit applied from %q, which was never posted", id)
	}
	if note.PayerAccountID != payer {
		return fmt.Errorf("payments: credit note %q of payer %s applied by payer %s", id, note.PayerAccountID, payer)
	}
	next, err := EvolveCreditNote(note, ev, rec.Position)
	if err != nil {
		return fmt.Errorf("payments: %w", err)
	}
	if err := readmodel.PutReceivable(ctx, tx, next); err != nil {
		return err
	}
	n, err := readmodel.CountCreditApplications(ctx, tx, payer, id)
	if err != nil {
		return err
	}
	seq := n + 1
	if err := readmodel.InsertCreditApplication(ctx, tx, &readmodel.CreditApplicationRow{
		PayerAccountID: payer, CreditNoteID: id, Seq: seq, BillSourceAccountID: ev.GetBillSourceAccountId(),
		Currency: ev.GetCurrency(), Amount: ev.GetAmount(), RemainingCredit: ev.GetRemainingCredit(), AppliedAt: at, Position: rec.Position,
	}); err != nil {
		return err
	}
	for i, a := range ev.GetAllocations() {
		if err := settleInvoice(ctx, tx, payer, a, rec.Position, fmt.Sprintf("credit note %q", id), "applied to", true); err != nil {
			return err
		}
		if err := readmodel.InsertCreditAllocation(ctx, tx, &readmodel.CreditAllocationRow{
			PayerAccountID: payer, CreditNoteID: id, ApplicationSeq: seq, Seq: uint64(i + 1), InvoiceID: a.GetInvoiceId(),
			BillSourceAccountID: a.GetBillSourceAccountId(), Amount: a.GetAmount(), OutstandingAfter: a.GetOutstandingAfter(),
			Position: rec.Position,
		}); err != nil {
			return err
		}
	}
	return nil
}

// settleInvoice applies one allocation of payer's payment or credit note
// (by, e.g. `payment "p-1"`, and verb name it in errors) to the invoice's
// receivable row; a credit note may not settle another credit note.
func settleInvoice(ctx context.Context, tx *sql.Tx, payer string, a *billingv1.PaymentAllocation, position uint64, by, verb string, fromCreditNote bool) error {
	r, err := readmodel.GetReceivable(ctx, tx, a.GetInvoiceId())
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("payments: %s %s invoice %q, which was never posted", by, verb, a.GetInvoiceId())
	}
	if r.PayerAccountID != payer {
		return fmt.Errorf("payments: %s of payer %s %s invoice %q of payer %s", by, payer, verb, a.GetInvoiceId(), r.PayerAccountID)
	}
	if fromCreditNote && r.Status.IsCreditNote() {
		return fmt.Errorf("payments: %s %s credit note %q", by, verb, a.GetInvoiceId())
	}
	next, err := EvolveReceivable(r, a, position)
	if err != nil {
		return fmt.Errorf("payments: %s: %w", by, err)
	}
	return readmodel.PutReceivable(ctx, tx, next)
}

func applyPaymentRefunded(ctx context.Context, tx *sql.Tx, rec eventstore.Record, ev *billingv1.PaymentRefunded) error {
	payer, id := ev.GetPayerAccountId(), ev.GetPaymentId()
	if err := checkReceivableStream(rec.Event.GetStream(), payer); err != nil {
		return fmt.Errorf("payments: PaymentRefunded: %w", err)
	}
	at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
	if err != nil {
		return fmt.Errorf("payments: PaymentRefunded: %w", err)
	}
	p, err := readmodel.GetPayment(ctx, tx, payer, id)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("payments: refund of payment %q of payer %s, which was never recorded", id, payer)
	}
	next, err := EvolvePaymentRefund(p, ev)
	if err != nil {
		return err
	}
	if err := readmodel.UpdatePaymentCredit(ctx, tx, payer, id, next.Unapplied, next.Refunded); err != nil {
		return err
	}
	n, err := readmodel.CountRefunds(ctx, tx, payer, id)
	if err != nil {
		return err
	}
	return readmodel.InsertRefund(ctx, tx, &readmodel.RefundRow{
		PayerAccountID: payer, PaymentID: id, Seq: n + 1, Amount: ev.GetAmount(), Currency: ev.GetCurrency(),
		UnappliedAfter: ev.GetUnappliedAfter(), RefundedAt: at, Position: rec.Position,
	})
}

// ReceivableStatus is the status of an invoice that was issued for issued and
// still owes outstanding (Y3): PAID when nothing is outstanding (an invoice of
// 0 is PAID when posted), OPEN when nothing is paid yet, else PARTIALLY_PAID.
// A credit note's status is CreditNoteStatus.
func ReceivableStatus(issued, outstanding *apd.Decimal) readmodel.InvoiceStatus {
	switch {
	case outstanding.Sign() <= 0:
		return readmodel.InvoicePaid
	case outstanding.Cmp(issued) >= 0:
		return readmodel.InvoiceOpen
	default:
		return readmodel.InvoicePartiallyPaid
	}
}

// CreditNoteStatus is the status of a credit note with remaining credit left:
// CREDIT while some is left, CREDIT_APPLIED once none is.
func CreditNoteStatus(remaining *apd.Decimal) readmodel.InvoiceStatus {
	if remaining.Sign() > 0 {
		return readmodel.InvoiceCredit
	}
	return readmodel.InvoiceCreditApplied
}

// paidOf is issued − outstanding, exactly, as text at their scale.
func paidOf(issued, outstanding *apd.Decimal) (string, error) {
	var paid apd.Decimal
	cond, err := moneyCtx.Sub(&paid, issued, outstanding)
	if err != nil {
		return "", err
	}
	if cond.Inexact() || cond.Rounded() {
		return "", fmt.Errorf("decimal difference %s − %s exceeds %d digits", issued, outstanding, moneyCtx.Precision)
	}
	if paid.IsZero() {
		paid.Negative = false
	}
	return paid.Text('f'), nil
}

// PostedReceivable is the receivable an InvoicesPosted creates for one of
// its invoices: issued = outstanding = the total, nothing paid; for a credit
// note (a negative total), nothing outstanding or paid, its credit (−total)
// all remaining, CREDIT. It is pure. month is the close's, used when the
// summary does not carry one.
func PostedReceivable(payer, month string, s *billingv1.InvoiceSummary, position uint64) (*readmodel.ReceivableRow, error) {
	id := s.GetInvoiceId()
	if id == "" {
		return nil, fmt.Errorf("payments: InvoicesPosted: invoice without invoice_id")
	}
	if s.GetMonth() != "" {
		month = s.GetMonth()
	}
	if _, err := domain.ParseMonth(month); err != nil {
		return nil, fmt.Errorf("payments: invoice %q: %w", id, err)
	}
	if s.GetCurrency() == "" || s.GetSourceAccountId() == "" {
		return nil, fmt.Errorf("payments: invoice %q: currency %q and source_account_id %q must both be set",
			id, s.GetCurrency(), s.GetSourceAccountId())
	}
	total, err := domain.ParseDecimal(s.GetTotal())
	if err != nil {
		return nil, fmt.Errorf("payments: invoice %q: total: %w", id, err)
	}
	paid, err := paidOf(total, total)
	if err != nil {
		return nil, fmt.Errorf("payments: invoice %q: %w", id, err)
	}
	outstanding := s.GetTotal()
	status := ReceivableStatus(total, total)
	var applied, remaining string
	if total.Sign() < 0 {
		// A credit note (credits above charges) owes nothing and takes no
		// payment; its credit, −total, is there to apply (ApplyCredit), as
		// the receivable decides (domain.ReceivableInvoice).
		zero, err := domain.RoundHalfUp(apd.New(0, 0), s.GetCurrency())
		if err != nil {
			return nil, fmt.Errorf("payments: invoice %q: %w", id, err)
		}
		var credit apd.Decimal
		credit.Neg(total)
		outstanding, paid, applied, remaining = zero.Text('f'), zero.Text('f'), zero.Text('f'), credit.Text('f')
		status = CreditNoteStatus(&credit)
	}
	return &readmodel.ReceivableRow{
		InvoiceID:       id,
		PayerAccountID:  payer,
		Month:           month,
		SourceAccountID: s.GetSourceAccountId(),
		InvoiceUnitID:   s.GetInvoiceUnitId(),
		Seller:          s.GetSeller(),
		Currency:        s.GetCurrency(),
		Issued:          s.GetTotal(),
		Paid:            paid,
		Outstanding:     outstanding,
		Status:          status,
		CreditApplied:   applied,
		RemainingCredit: remaining,
		PostedPosition:  position,
		UpdatedPosition: position,
	}, nil
}

// EvolveReceivable is the receivable after an allocation of a payment
// recorded at position: outstanding is the allocation's outstanding_after,
// paid = issued − outstanding, and the status follows (ReceivableStatus). It
// is pure: prev is not modified. An allocation to another invoice, amounts
// that are not decimals, or a position before the row's last are errors.
func EvolveReceivable(prev *readmodel.ReceivableRow, a *billingv1.PaymentAllocation, position uint64) (*readmodel.ReceivableRow, error) {
	if a.GetInvoiceId() != prev.InvoiceID {
		return nil, fmt.Errorf("allocation to invoice %q applied to invoice %q", a.GetInvoiceId(), prev.InvoiceID)
	}
	if prev.Status.IsCreditNote() {
		return nil, fmt.Errorf("allocation to credit note %q: a credit note owes nothing", prev.InvoiceID)
	}
	if position < prev.UpdatedPosition {
		return nil, fmt.Errorf("invoice %q: allocation at position %d is before the row's position %d (applied twice?)",
			prev.InvoiceID, position, prev.UpdatedPosition)
	}
	if _, err := domain.ParseDecimal(a.GetAmount()); err != nil {
		return nil, fmt.Errorf("invoice %q: allocation amount: %w", prev.InvoiceID, err)
	}
	outstanding, err := domain.ParseDecimal(a.GetOutstandingAfter())
	if err != nil {
		return nil, fmt.Errorf("invoice %q: outstanding_after: %w", prev.InvoiceID, err)
	}
	issued, err := domain.ParseDecimal(prev.Issued)
	if err != nil {
		return nil, fmt.Errorf("invoice %q: stored issued amount: %w", prev.InvoiceID, err)
	}
	paid, err := paidOf(issued, outstanding)
	if err != nil {
		return nil, fmt.Errorf("invoice %q: %w", prev.InvoiceID, err)
	}
	next := *prev
	next.Outstanding = a.GetOutstandingAfter()
	next.Paid = paid
	next.Status = ReceivableStatus(issued, outstanding)
	next.UpdatedPosition = position
	return &next, nil
}

// EvolveCreditNote is the credit note after an application of its credit
// recorded at position: remaining credit is the event's remaining_credit,
// credit applied = −issued − remaining, and the status follows
// (CreditNoteStatus). It is pure: prev is not modified. A row that is not a
// credit note, amounts that are not decimals, a remaining credit outside
// 0..−issued, or a position before the row's last are errors.
func EvolveCreditNote(prev *readmodel.ReceivableRow, ev *billingv1.CreditApplied, position uint64) (*readmodel.ReceivableRow, error) {
	id := prev.InvoiceID
	if ev.GetCreditNoteId() != id {
		return nil, fmt.Errorf("credit applied from %q applied to %q", ev.GetCreditNoteId(), id)
	}
	if !prev.Status.IsCreditNote() {
		return nil, fmt.Errorf("credit applied from invoice %q, which is not a credit note (issued %s, %s)", id, prev.Issued, prev.Status)
	}
	if position < prev.UpdatedPosition {
		return nil, fmt.Errorf("credit note %q: application at position %d is before the row's position %d (applied twice?)",
			id, position, prev.UpdatedPosition)
	}
	if ev.GetCurrency() != "" && ev.GetCurrency() != prev.Currency {
		return nil, fmt.Errorf("credit note %q in %s applied in %s", id, prev.Currency, ev.GetCurrency())
	}
	if _, err := domain.ParseDecimal(ev.GetAmount()); err != nil {
		return nil, fmt.Errorf("credit note %q: amount: %w", id, err)
	}
	remaining, err := domain.ParseDecimal(ev.GetRemainingCredit())
	if err != nil {
		return nil, fmt.Errorf("credit note %q: remaining_credit: %w", id, err)
	}
	issued, err := domain.ParseDecimal(prev.Issued)
	if err != nil {
		return nil, fmt.Errorf("credit note %q: stored issued amount: %w", id, err)
	}
	var credit apd.Decimal
	credit.Neg(issued)
	if remaining.Sign() < 0 || remaining.Cmp(&credit) > 0 {
		return nil, fmt.Errorf("credit note %q: remaining credit %s outside 0..%s", id, ev.GetRemainingCredit(), credit.Text('f'))
	}
	applied, err := paidOf(&credit, remaining)
	if err != nil {
		return nil, fmt.Errorf("credit note %q: %w", id, err)
	}
	next := *prev
	next.RemainingCredit = ev.GetRemainingCredit()
	next.CreditApplied = applied
	next.Status = CreditNoteStatus(remaining)
	next.UpdatedPosition = position
	return &next, nil
}

// RecordedPayment is the payment a PaymentRecorded records (before
// refunds): unapplied as recorded, nothing refunded. received_at defaults to
// the event's recorded_at. It is pure.
func RecordedPayment(rec eventstore.Record) (*readmodel.PaymentRecord, error) {
	ev := rec.Event.GetPaymentRecorded()
	if ev == nil {
		return nil, fmt.Errorf("payments: %s is not a PaymentRecorded", payloadName(rec.Event))
	}
	id := ev.GetPaymentId()
	if id == "" || ev.GetCurrency() == "" {
		return nil, fmt.Errorf("payments: PaymentRecorded: payment_id %q and currency %q must both be set", id, ev.GetCurrency())
	}
	amount, err := domain.ParseDecimal(ev.GetAmount())
	if err != nil {
		return nil, fmt.Errorf("payments: payment %q: amount: %w", id, err)
	}
	if _, err := domain.ParseDecimal(ev.GetUnapplied()); err != nil {
		return nil, fmt.Errorf("payments: payment %q: unapplied: %w", id, err)
	}
	received, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
	if err != nil {
		return nil, fmt.Errorf("payments: payment %q: %w", id, err)
	}
	if ev.GetReceivedAt() != nil {
		if received, err = requiredTime("received_at", ev.GetReceivedAt()); err != nil {
			return nil, fmt.Errorf("payments: payment %q: %w", id, err)
		}
	}
	refunded, err := paidOf(amount, amount)
	if err != nil {
		return nil, fmt.Errorf("payments: payment %q: %w", id, err)
	}
	return &readmodel.PaymentRecord{
		PayerAccountID: ev.GetPayerAccountId(),
		PaymentID:      id,
		Amount:         ev.GetAmount(),
		Currency:       ev.GetCurrency(),
		Method:         PaymentMethodName(ev.GetMethod()),
		Unapplied:      ev.GetUnapplied(),
		Refunded:       refunded,
		ReceivedAt:     received,
		Position:       rec.Position,
	}, nil
}

// PaymentMethodName is how a payment method is stored and shown: CARD,
// BANK_TRANSFER, DIRECT_DEBIT ("" when unspecified).
func PaymentMethodName(m billingv1.PaymentMethod) string {
	if m == billingv1.PaymentMethod_PAYMENT_METHOD_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(m.String(), "PAYMENT_METHOD_")
}

// EvolvePaymentRefund is the payment after a refund: unapplied is the
// refund's unapplied_after and refunded grows by its amount. Nothing else of
// the payment, and no invoice, changes. It is pure: prev is not modified.
func EvolvePaymentRefund(prev *readmodel.PaymentRecord, ev *billingv1.PaymentRefunded) (*readmodel.PaymentRecord, error) {
	amount, err := domain.ParseDecimal(ev.GetAmount())
	if err != nil {
		return nil, fmt.Errorf("payments: refund of payment %q: amount: %w", prev.PaymentID, err)
	}
	if _, err := domain.ParseDecimal(ev.GetUnappliedAfter()); err != nil {
		return nil, fmt.Errorf("payments: refund of payment %q: unapplied_after: %w", prev.PaymentID, err)
	}
	if ev.GetCurrency() != "" && ev.GetCurrency() != prev.Currency {
		return nil, fmt.Errorf("payments: refund of payment %q in %s, the payment is in %s", prev.PaymentID, ev.GetCurrency(), prev.Currency)
	}
	refunded, err := domain.ParseDecimal(prev.Refunded)
	if err != nil {
		return nil, fmt.Errorf("payments: payment %q: stored refunded amount: %w", prev.PaymentID, err)
	}
	sum, err := domain.AddDecimal(refunded, amount)
	if err != nil {
		return nil, fmt.Errorf("payments: payment %q: refunded: %w", prev.PaymentID, err)
	}
	next := *prev
	next.Unapplied = ev.GetUnappliedAfter()
	next.Refunded = sum.Text('f')
	return &next, nil
}
