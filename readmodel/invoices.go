package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The invoices and payments read models (DESIGN R1, X5, Y2, Y3) as stored.
// Two projections write them, one per stream family, so that neither reads
// the other's events (nor every usage event):
//
//   - the invoices projection (billing.month.<payer>.<M>) writes
//     closed_months, invoices, invoice_lines and invoice_taxes, exactly as
//     MonthClosed, InvoicesIssued (InvoiceIssued in older closes) and
//     InvoiceLinesIssued carry them;
//   - the payments projection (billing.receivable.<payer>) writes receivables
//     (one per posted invoice: issued, paid, outstanding, status; for a credit
//     note, its credit applied and remaining), payments, payment_allocations,
//     payment_refunds, credit_applications and credit_allocations.
//
// The queries join them by invoice id (invoices_query.go). Amounts are
// exact decimals as the events carry them (the currency's minor unit, "12.30"),
// or computed with apd at the same scale; SQL never adds them.

// Checkpoint keys of the two projections; the queries report them as the
// positions they reflect.
const (
	// InvoicesProjection writes closed_months, invoices, invoice_lines and invoice_taxes.
	InvoicesProjection = "invoices"
	// PaymentsProjection writes receivables, payments, payment_allocations,
	// payment_refunds, credit_applications and credit_allocations.
	PaymentsProjection = "payments"
)

// InvoiceStatus is the payment status of an invoice (Y3), as stored and shown.
type InvoiceStatus string

// The invoice statuses. Never rename one.
const (
	// InvoiceOpen: nothing paid yet.
	InvoiceOpen InvoiceStatus = "OPEN"
	// InvoicePartiallyPaid: something paid, something outstanding.
	InvoicePartiallyPaid InvoiceStatus = "PARTIALLY_PAID"
	// InvoicePaid: nothing outstanding.
	InvoicePaid InvoiceStatus = "PAID"
	// InvoiceCredit: a credit note (issued < 0) with credit left to apply.
	InvoiceCredit InvoiceStatus = "CREDIT"
	// InvoiceCreditApplied: a credit note whose credit is all applied.
	InvoiceCreditApplied InvoiceStatus = "CREDIT_APPLIED"
)

// IsCreditNote reports whether s is a credit note's status.
func (s InvoiceStatus) IsCreditNote() bool { return s == InvoiceCredit || s == InvoiceCreditApplied }

// ---------------------------------------------------------------------------
// Invoices projection.

// ClosedMonthRow is one close (MonthClosed, X5).
type ClosedMonthRow struct {
	// PayerAccountID is the payer that closed the month.
	PayerAccountID string
	// Month is the month closed (YYYY-MM).
	Month string
	// InvoiceDate is the invoice date (YYYY-MM-DD).
	InvoiceDate string
	// InvoiceCount is the number of invoices the close issued.
	InvoiceCount uint64
	// UsageRecords is the number of usage records of the payer booked into the month.
	UsageRecords uint64
	// ClosedAt is the event's recorded_at.
	ClosedAt time.Time
	// Position is the event's store position.
	Position uint64
}

// ClosedMonthExists reports whether payer has closed month (inside tx).
func ClosedMonthExists(ctx context.Context, tx *sql.Tx, payer, month string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM closed_months WHERE payer_account_id = $1 AND month = $2`,
		payer, month).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("readmodel: read close of %s by %s: %w", month, payer, err)
	}
	return n > 0, nil
}

// InsertClosedMonth records a close inside tx.
func InsertClosedMonth(ctx context.Context, tx *sql.Tx, r *ClosedMonthRow) error {
	count, err := toDBInt("invoice_count", r.InvoiceCount)
	if err != nil {
		return err
	}
	records, err := toDBInt("usage_records", r.UsageRecords)
	if err != nil {
		return err
	}
	pos, err := toDBInt("position", r.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO closed_months (payer_account_id, month, invoice_date,
			invoice_count, usage_records, closed_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.PayerAccountID, r.Month, r.InvoiceDate, count, records, FormatStoredTime(r.ClosedAt), pos); err != nil {
		return fmt.Errorf("readmodel: record close of %s by %s: %w", r.Month, r.PayerAccountID, err)
	}
	return nil
}

// InvoiceExists reports whether an invoice with id is stored (inside tx).
func InvoiceExists(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM invoices WHERE invoice_id = $1`, id).Scan(&n); err != nil {
		return false, fmt.Errorf("readmodel: read invoice %q: %w", id, err)
	}
	return n > 0, nil
}

// InsertInvoice stores an issued invoice, its lines and its taxes inside tx,
// exactly as the issuing event carries them; position is the event's. Taxes are
// numbered 1, 2, … in the invoice's order.
func InsertInvoice(ctx context.Context, tx *sql.Tx, inv *billingv1.Invoice, position uint64) error {
	pos, err := toDBInt("position", position)
	if err != nil {
		return err
	}
	id := inv.GetInvoiceId()
	if _, err := tx.ExecContext(ctx, `INSERT INTO invoices (invoice_id, payer_account_id, month, source_account_id,
			invoice_unit_id, invoice_unit_name, receiver_account_id, seller, currency, invoice_date, bill_to_legal_name,
			bill_to_tax_registration_number, payment_method, subtotal, tax, total, position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		id, inv.GetPayerAccountId(), inv.GetMonth(), inv.GetSourceAccountId(), inv.GetInvoiceUnitId(),
		inv.GetInvoiceUnitName(), inv.GetReceiverAccountId(), inv.GetSeller(), inv.GetCurrency(), inv.GetInvoiceDate(),
		inv.GetBillToLegalName(), inv.GetBillToTaxRegistrationNumber(), inv.GetPaymentMethod(),
		plainAmount(inv.GetSubtotal()), plainAmount(inv.GetTax()), plainAmount(inv.GetTotal()), pos); err != nil {
		return fmt.Errorf("readmodel: write invoice %q: %w", id, err)
	}
	if err := InsertInvoiceLines(ctx, tx, id, inv.GetLines()); err != nil {
		return err
	}
	for i, t := range inv.GetTaxes() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO invoice_taxes (invoice_id, seq, jurisdiction, reason,
				rate_percentage, rate_effective_from, taxable, tax) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			id, i+1, t.GetJurisdiction(), t.GetReason(), optionalAmount(tx, t.GetRatePercentage()), t.GetRateEffectiveFrom(),
			plainAmount(t.GetTaxable()), plainAmount(t.GetTax())); err != nil {
			return fmt.Errorf("readmodel: write tax %d of invoice %q: %w", i+1, id, err)
		}
	}
	return nil
}

// InsertInvoiceLines stores lines of the invoice id inside tx, exactly as
// the event carries them: the lines of InsertInvoice's invoice, or the lines
// an InvoiceLinesIssued continues it with.
func InsertInvoiceLines(ctx context.Context, tx *sql.Tx, id string, lines []*billingv1.InvoiceLine) error {
	if len(lines) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO invoice_lines (invoice_id, line_number, account_id, service,
			charge_month, charge_class, usage_currency, billed_cost, fx_rate, fx_effective_date, converted, amount,
			jurisdiction, tax_reason, usage_records, charge_period_start, charge_period_end)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`)
	if err != nil {
		return fmt.Errorf("readmodel: prepare invoice line: %w", err)
	}
	defer func() { _ = st.Close() }()
	for _, l := range lines {
		records, err := toDBInt("usage_records", l.GetUsageRecords())
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(ctx, id, int64(l.GetLineNumber()), l.GetAccountId(), l.GetService(),
			l.GetChargeMonth(), l.GetChargeClass(), l.GetUsageCurrency(), optionalAmount(tx, l.GetBilledCost()),
			optionalAmount(tx, l.GetFxRate()), l.GetFxEffectiveDate(), optionalAmount(tx, l.GetConverted()), plainAmount(l.GetAmount()),
			l.GetJurisdiction(), l.GetTaxReason(), records,
			storedTimestamp(l.GetChargePeriodStart()), storedTimestamp(l.GetChargePeriodEnd())); err != nil {
			return fmt.Errorf("readmodel: write line %d of invoice %q: %w", l.GetLineNumber(), id, err)
		}
	}
	return nil
}

// InvoiceHead is what the invoices projection needs to know of a stored
// invoice to continue its lines.
type InvoiceHead struct {
	// PayerAccountID is the invoice's payer.
	PayerAccountID string
	// Month is the invoice's billing month.
	Month string
	// Lines is the number of its lines stored so far.
	Lines uint64
}

// GetInvoiceHead reads the payer, month and line count of the invoice id
// inside tx; nil and no error when no such invoice is stored.
func GetInvoiceHead(ctx context.Context, tx *sql.Tx, id string) (*InvoiceHead, error) {
	var h InvoiceHead
	var lines int64
	err := tx.QueryRowContext(ctx, `SELECT payer_account_id, month,
			(SELECT COUNT(*) FROM invoice_lines l WHERE l.invoice_id = i.invoice_id)
		FROM invoices i WHERE invoice_id = $1`, id).Scan(&h.PayerAccountID, &h.Month, &lines)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: read invoice %q: %w", id, err)
	}
	if h.Lines, err = fromDBInt("lines", lines); err != nil {
		return nil, err
	}
	return &h, nil
}

// ---------------------------------------------------------------------------
// Payments projection.

// ReceivableRow is the payment state of one posted invoice (Y3).
type ReceivableRow struct {
	// InvoiceID is the invoice.
	InvoiceID string
	// PayerAccountID is the payer.
	PayerAccountID string
	// Month is the invoice's billing month.
	Month string
	// SourceAccountID is the invoice's source organization.
	SourceAccountID string
	// InvoiceUnitID is the invoice's unit ("" = none).
	InvoiceUnitID string
	// Seller is the seller of record.
	Seller string
	// Currency is the invoice currency.
	Currency string
	// Issued is the invoice total (negative for a credit note).
	Issued string
	// Paid is Issued − Outstanding (the currency's zero for a credit note).
	Paid string
	// Outstanding is what is left to pay (zero for a credit note).
	Outstanding string
	// Status follows Outstanding; a credit note's follows RemainingCredit.
	Status InvoiceStatus
	// CreditApplied is, for a credit note, the part of its credit (−Issued)
	// applied to invoices; "" (NULL) for an invoice.
	CreditApplied string
	// RemainingCredit is, for a credit note, the credit left; "" for an invoice.
	RemainingCredit string
	// PostedPosition is the position of the InvoicesPosted that created the row.
	PostedPosition uint64
	// UpdatedPosition is the position of the last event that changed it.
	UpdatedPosition uint64
}

// GetReceivable reads the receivable of an invoice inside tx; nil and no
// error when the invoice was never posted.
func GetReceivable(ctx context.Context, tx *sql.Tx, invoiceID string) (*ReceivableRow, error) {
	r := ReceivableRow{InvoiceID: invoiceID}
	var status string
	var posted, updated int64
	err := tx.QueryRowContext(ctx, `SELECT payer_account_id, month, source_account_id, invoice_unit_id, seller,
			currency, issued, paid, outstanding, status, credit_applied, remaining_credit, posted_position, updated_position
		FROM receivables WHERE invoice_id = $1`, invoiceID).
		Scan(&r.PayerAccountID, &r.Month, &r.SourceAccountID, &r.InvoiceUnitID, &r.Seller, &r.Currency,
			&r.Issued, &r.Paid, &r.Outstanding, &status, orEmpty{&r.CreditApplied}, orEmpty{&r.RemainingCredit}, &posted, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: read receivable %q: %w", invoiceID, err)
	}
	r.Status = InvoiceStatus(status)
	if r.PostedPosition, err = fromDBInt("posted_position", posted); err != nil {
		return nil, err
	}
	if r.UpdatedPosition, err = fromDBInt("updated_position", updated); err != nil {
		return nil, err
	}
	return &r, nil
}

// PutReceivable inserts or replaces r inside tx.
func PutReceivable(ctx context.Context, tx *sql.Tx, r *ReceivableRow) error {
	posted, err := toDBInt("posted_position", r.PostedPosition)
	if err != nil {
		return err
	}
	updated, err := toDBInt("updated_position", r.UpdatedPosition)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO receivables (invoice_id, payer_account_id, month,
			source_account_id, invoice_unit_id, seller, currency, issued, paid, outstanding, status,
			credit_applied, remaining_credit, posted_position, updated_position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (invoice_id) DO UPDATE SET payer_account_id = excluded.payer_account_id,
			month = excluded.month, source_account_id = excluded.source_account_id,
			invoice_unit_id = excluded.invoice_unit_id, seller = excluded.seller, currency = excluded.currency,
			issued = excluded.issued, paid = excluded.paid, outstanding = excluded.outstanding,
			status = excluded.status, credit_applied = excluded.credit_applied,
			remaining_credit = excluded.remaining_credit, posted_position = excluded.posted_position,
			updated_position = excluded.updated_position`,
		r.InvoiceID, r.PayerAccountID, r.Month, r.SourceAccountID, r.InvoiceUnitID, r.Seller, r.Currency,
		plainAmount(r.Issued), plainAmount(r.Paid), plainAmount(r.Outstanding), string(r.Status),
		nullableAmount(r.CreditApplied), nullableAmount(r.RemainingCredit), posted, updated); err != nil {
		return fmt.Errorf("readmodel: write receivable %q: %w", r.InvoiceID, err)
	}
	return nil
}

// PaymentRecord is one recorded payment as stored (Y2).
type PaymentRecord struct {
	// PayerAccountID is the payer.
	PayerAccountID string
	// PaymentID is the payment id, unique per payer.
	PaymentID string
	// Amount is the amount paid.
	Amount string
	// Currency is its currency.
	Currency string
	// Method is CARD, BANK_TRANSFER or DIRECT_DEBIT.
	Method string
	// Unapplied is the credit left: not allocated, not refunded.
	Unapplied string
	// Refunded is the sum of the refunds.
	Refunded string
	// ReceivedAt is when the payment was received.
	ReceivedAt time.Time
	// Position is the PaymentRecorded's store position.
	Position uint64
}

// GetPayment reads a payment inside tx; nil and no error when there is none.
func GetPayment(ctx context.Context, tx *sql.Tx, payer, paymentID string) (*PaymentRecord, error) {
	p := PaymentRecord{PayerAccountID: payer, PaymentID: paymentID}
	var received string
	var pos int64
	err := tx.QueryRowContext(ctx, `SELECT amount, currency, method, unapplied, refunded, received_at, position
		FROM payments WHERE payer_account_id = $1 AND payment_id = $2`, payer, paymentID).
		Scan(&p.Amount, &p.Currency, &p.Method, &p.Unapplied, &p.Refunded, &received, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("readmodel: read payment %q of %s: %w", paymentID, payer, err)
	}
	if p.ReceivedAt, err = ParseStoredTime(received); err != nil {
		return nil, err
	}
	if p.Position, err = fromDBInt("position", pos); err != nil {
		return nil, err
	}
	return &p, nil
}

// InsertPayment stores a new payment inside tx.
func InsertPayment(ctx context.Context, tx *sql.Tx, p *PaymentRecord) error {
	pos, err := toDBInt("position", p.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments (payer_account_id, payment_id, amount, currency, method,
			unapplied, refunded, received_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.PayerAccountID, p.PaymentID, plainAmount(p.Amount), p.Currency, p.Method, plainAmount(p.Unapplied), plainAmount(p.Refunded),
		FormatStoredTime(p.ReceivedAt), pos); err != nil {
		return fmt.Errorf("readmodel: write payment %q of %s: %w", p.PaymentID, p.PayerAccountID, err)
	}
	return nil
}

// UpdatePaymentCredit sets a payment's unapplied credit and refunded sum inside tx.
func UpdatePaymentCredit(ctx context.Context, tx *sql.Tx, payer, paymentID, unapplied, refunded string) error {
	res, err := tx.ExecContext(ctx, `UPDATE payments SET unapplied = $1, refunded = $2
		WHERE payer_account_id = $3 AND payment_id = $4`, plainAmount(unapplied), plainAmount(refunded), payer, paymentID)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("readmodel: write payment %q of %s: %w", paymentID, payer, err)
	}
	return nil
}

// AllocationRow is the part of a payment applied to one invoice (Y2).
type AllocationRow struct {
	// PayerAccountID and PaymentID name the payment.
	PayerAccountID, PaymentID string
	// Seq is the allocation's 1-based place in the payment.
	Seq uint64
	// InvoiceID is the invoice paid.
	InvoiceID string
	// BillSourceAccountID is the invoice's source organization.
	BillSourceAccountID string
	// Amount is the amount applied.
	Amount string
	// OutstandingAfter is what the invoice still owed after it.
	OutstandingAfter string
	// Position is the PaymentRecorded's store position.
	Position uint64
}

// InsertAllocation stores an allocation inside tx.
func InsertAllocation(ctx context.Context, tx *sql.Tx, a *AllocationRow) error {
	seq, err := toDBInt("seq", a.Seq)
	if err != nil {
		return err
	}
	pos, err := toDBInt("position", a.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payment_allocations (payer_account_id, payment_id, seq, invoice_id,
			bill_source_account_id, amount, outstanding_after, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		a.PayerAccountID, a.PaymentID, seq, a.InvoiceID, a.BillSourceAccountID, plainAmount(a.Amount), plainAmount(a.OutstandingAfter), pos); err != nil {
		return fmt.Errorf("readmodel: write allocation %d of payment %q: %w", a.Seq, a.PaymentID, err)
	}
	return nil
}

// RefundRow is one refund of a payment's unapplied credit.
type RefundRow struct {
	// PayerAccountID and PaymentID name the payment.
	PayerAccountID, PaymentID string
	// Seq is the refund's 1-based place among the payment's refunds.
	Seq uint64
	// Amount is the amount refunded.
	Amount string
	// Currency is its currency.
	Currency string
	// UnappliedAfter is the payment's credit left after it.
	UnappliedAfter string
	// RefundedAt is the event's recorded_at.
	RefundedAt time.Time
	// Position is the event's store position.
	Position uint64
}

// CountRefunds returns the number of refunds of a payment (inside tx).
func CountRefunds(ctx context.Context, tx *sql.Tx, payer, paymentID string) (uint64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM payment_refunds WHERE payer_account_id = $1 AND payment_id = $2`,
		payer, paymentID).Scan(&n); err != nil {
		return 0, fmt.Errorf("readmodel: count refunds of payment %q: %w", paymentID, err)
	}
	return fromDBInt("refund count", n)
}

// InsertRefund stores a refund inside tx.
func InsertRefund(ctx context.Context, tx *sql.Tx, r *RefundRow) error {
	seq, err := toDBInt("seq", r.Seq)
	if err != nil {
		return err
	}
	pos, err := toDBInt("position", r.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payment_refunds (payer_account_id, payment_id, seq, amount, currency,
			unapplied_after, refunded_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.PayerAccountID, r.PaymentID, seq, plainAmount(r.Amount), r.Currency, plainAmount(r.UnappliedAfter), FormatStoredTime(r.RefundedAt), pos); err != nil {
		return fmt.Errorf("readmodel: write refund %d of payment %q: %w", r.Seq, r.PaymentID, err)
	}
	return nil
}

// nullableAmount is the value of a nullable AMOUNT column: NULL for "", else
// plainAmount(s).
func nullableAmount(s string) any {
	if s == "" {
		return nil
	}
	return plainAmount(s)
}

// CreditApplicationRow is one application of a credit note's credit
// (CreditApplied, Y2).
type CreditApplicationRow struct {
	// PayerAccountID and CreditNoteID name the credit note.
	PayerAccountID, CreditNoteID string
	// Seq is the application's 1-based place among the credit note's.
	Seq uint64
	// BillSourceAccountID is the credit note's source organization.
	BillSourceAccountID string
	// Currency of the credit note.
	Currency string
	// Amount is the credit applied: the sum of the allocations.
	Amount string
	// RemainingCredit is the credit note's credit left after it.
	RemainingCredit string
	// AppliedAt is the event's recorded_at.
	AppliedAt time.Time
	// Position is the event's store position.
	Position uint64
}

// CountCreditApplications returns the number of applications of a credit note (inside tx).
func CountCreditApplications(ctx context.Context, tx *sql.Tx, payer, creditNoteID string) (uint64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM credit_applications WHERE payer_account_id = $1 AND credit_note_id = $2`,
		payer, creditNoteID).Scan(&n); err != nil {
		return 0, fmt.Errorf("readmodel: count applications of credit note %q: %w", creditNoteID, err)
	}
	return fromDBInt("application count", n)
}

// InsertCreditApplication stores an application of a credit note inside tx.
func InsertCreditApplication(ctx context.Context, tx *sql.Tx, c *CreditApplicationRow) error {
	seq, err := toDBInt("seq", c.Seq)
	if err != nil {
		return err
	}
	pos, err := toDBInt("position", c.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO credit_applications (payer_account_id, credit_note_id, seq,
			bill_source_account_id, currency, amount, remaining_credit, applied_at, position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.PayerAccountID, c.CreditNoteID, seq, c.BillSourceAccountID, c.Currency, plainAmount(c.Amount),
		plainAmount(c.RemainingCredit), FormatStoredTime(c.AppliedAt), pos); err != nil {
		return fmt.Errorf("readmodel: write application %d of credit note %q: %w", c.Seq, c.CreditNoteID, err)
	}
	return nil
}

// CreditAllocationRow is the part of a credit note application applied to
// one invoice.
type CreditAllocationRow struct {
	// PayerAccountID and CreditNoteID name the credit note.
	PayerAccountID, CreditNoteID string
	// ApplicationSeq is the application's Seq.
	ApplicationSeq uint64
	// Seq is the allocation's 1-based place in the application.
	Seq uint64
	// InvoiceID is the invoice settled.
	InvoiceID string
	// BillSourceAccountID is the invoice's source organization.
	BillSourceAccountID string
	// Amount is the credit applied to it.
	Amount string
	// OutstandingAfter is what the invoice still owed after it.
	OutstandingAfter string
	// Position is the CreditApplied's store position.
	Position uint64
}

// InsertCreditAllocation stores an allocation of a credit note application inside tx.
func InsertCreditAllocation(ctx context.Context, tx *sql.Tx, a *CreditAllocationRow) error {
	app, err := toDBInt("application_seq", a.ApplicationSeq)
	if err != nil {
		return err
	}
	seq, err := toDBInt("seq", a.Seq)
	if err != nil {
		return err
	}
	pos, err := toDBInt("position", a.Position)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO credit_allocations (payer_account_id, credit_note_id, application_seq,
			seq, invoice_id, bill_source_account_id, amount, outstanding_after, position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		a.PayerAccountID, a.CreditNoteID, app, seq, a.InvoiceID, a.BillSourceAccountID, plainAmount(a.Amount),
		plainAmount(a.OutstandingAfter), pos); err != nil {
		return fmt.Errorf("readmodel: write allocation %d of application %d of credit note %q: %w", a.Seq, a.ApplicationSeq, a.CreditNoteID, err)
	}
	return nil
}
