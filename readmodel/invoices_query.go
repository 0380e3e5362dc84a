package readmodel

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The invoices, payments and tax queries (R1, X5, Y2, Y3) and their digests
// (R2). Amounts are read as the events wrote them and added with apd, per
// currency: sums start at the currency's zero ("0.00" for USD, "0" for JPY),
// so a total keeps the minor unit of its invoices.

// where builds the WHERE clause of a query from optional equality filters.
type where struct {
	clauses []string
	args    []any
}

// eq adds "col = value" unless value is "".
func (w *where) eq(col, value string) {
	if value == "" {
		return
	}
	w.args = append(w.args, value)
	w.clauses = append(w.clauses, col+" = $"+strconv.Itoa(len(w.args)))
}

func (w *where) sql() string {
	if len(w.clauses) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.clauses, " AND ")
}

// storedTimestamp stores an optional event time ("" when absent).
func storedTimestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return FormatStoredTime(ts.AsTime())
}

// apiTimestamp reads back a time stored by storedTimestamp (nil for "").
func apiTimestamp(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, err := ParseStoredTime(s)
	if err != nil {
		return nil, err
	}
	return timestamppb.New(t), nil
}

// zeroAmount is the zero of currency at its minor unit ("0.00", "0").
func zeroAmount(currency string) *apd.Decimal {
	if minor, ok := domain.Currencies[currency]; ok {
		return apd.New(0, -int32(minor))
	}
	return apd.New(0, 0)
}

// amountSums adds named amounts per currency.
type amountSums map[string]map[string]*apd.Decimal

// add adds value (a decimal string) to the sum name of currency.
func (s amountSums) add(currency, name, value string) error {
	d, err := domain.ParseDecimal(value)
	if err != nil {
		return fmt.Errorf("%s of a %s amount: %w", name, currency, err)
	}
	m := s[currency]
	if m == nil {
		m = map[string]*apd.Decimal{}
		s[currency] = m
	}
	sum := m[name]
	if sum == nil {
		sum = zeroAmount(currency)
	}
	if m[name], err = domain.AddDecimal(sum, d); err != nil {
		return fmt.Errorf("%s of %s amounts: %w", name, currency, err)
	}
	return nil
}

// get returns the sum name of currency as text ("0.00" when nothing was added).
func (s amountSums) get(currency, name string) string {
	if d := s[currency][name]; d != nil {
		return d.Text('f')
	}
	return zeroAmount(currency).Text('f')
}

// difference is a − b − c − … of decimal strings, exact, as text ("0.00",
// never "-0.00").
func difference(a string, bs ...string) (string, error) {
	d, err := domain.ParseDecimal(a)
	if err != nil {
		return "", err
	}
	for _, b := range bs {
		x, err := domain.ParseDecimal(b)
		if err != nil {
			return "", err
		}
		var neg apd.Decimal
		neg.Neg(x)
		if d, err = domain.AddDecimal(d, &neg); err != nil {
			return "", err
		}
	}
	if d.IsZero() {
		d.Negative = false
	}
	return d.Text('f'), nil
}

// currencies lists the currencies summed, sorted.
func (s amountSums) currencies() []string {
	out := make([]string, 0, len(s))
	for c := range s {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// Reading invoices.

// readInvoiceRows reads the invoices of month (of payer and/or source when
// set) with their lines and taxes, in report order. With payments, paid,
// outstanding and status come from the receivables (an invoice not posted
// yet shows what was issued as outstanding, OPEN, and a credit note nothing
// outstanding, CREDIT); without, they are left empty (the invoices digest
// covers the invoices projection only).
func readInvoiceRows(ctx context.Context, q querier, month, payer, source string, payments bool) ([]*billingv1.InvoiceRow, error) {
	w := &where{}
	w.eq("i.month", month)
	w.eq("i.payer_account_id", payer)
	w.eq("i.source_account_id", source)
	query := `SELECT i.invoice_id, i.payer_account_id, i.month, i.seller, i.currency, i.source_account_id,
			i.invoice_unit_id, i.invoice_unit_name, i.receiver_account_id, i.invoice_date, i.bill_to_legal_name,
			i.bill_to_tax_registration_number, i.payment_method, i.subtotal, i.tax, i.total,
			r.paid, r.outstanding, r.status
		FROM invoices i LEFT JOIN receivables r ON r.invoice_id = i.invoice_id` + w.sql() + `
		ORDER BY i.payer_account_id, i.source_account_id, i.invoice_unit_id, i.seller, i.invoice_id`
	rows, err := q.QueryContext(ctx, query, w.args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read invoices of %s: %w", month, err)
	}
	defer rows.Close()
	out := []*billingv1.InvoiceRow{}
	byID := map[string]*billingv1.InvoiceRow{}
	for rows.Next() {
		var r billingv1.InvoiceRow
		var paid, outstanding, status sql.NullString
		if err := rows.Scan(&r.InvoiceId, &r.PayerAccountId, &r.Month, &r.Seller, &r.Currency, &r.SourceAccountId,
			&r.InvoiceUnitId, &r.InvoiceUnitName, &r.ReceiverAccountId, &r.InvoiceDate, &r.BillToLegalName,
			&r.BillToTaxRegistrationNumber, &r.PaymentMethod, &r.Subtotal, &r.Tax, &r.Total,
			&paid, &outstanding, &status); err != nil {
			return nil, fmt.Errorf("readmodel: read invoices of %s: %w", month, err)
		}
		if payments {
			if status.Valid {
				r.Paid, r.Outstanding, r.Status = paid.String, outstanding.String, status.String
			} else {
				total, err := domain.ParseDecimal(r.Total)
				if err != nil {
					return nil, fmt.Errorf("readmodel: total of invoice %q: %w", r.InvoiceId, err)
				}
				zero := apd.New(0, min(total.Exponent, 0)).Text('f')
				r.Paid, r.Outstanding, r.Status = zero, r.Total, string(InvoiceOpen)
				if total.Sign() < 0 {
					// A credit note owes nothing (Y2), as the payments projection will say.
					r.Outstanding, r.Status = zero, string(InvoiceCredit)
				}
			}
		}
		r.Lines, r.Taxes = []*billingv1.InvoiceLine{}, []*billingv1.InvoiceTax{}
		out = append(out, &r)
		byID[r.InvoiceId] = &r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read invoices of %s: %w", month, err)
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	if err := readInvoiceLines(ctx, q, w, byID); err != nil {
		return nil, fmt.Errorf("readmodel: read invoice lines of %s: %w", month, err)
	}
	taxes, err := readTaxRows(ctx, q, w)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read invoice taxes of %s: %w", month, err)
	}
	for _, t := range taxes {
		inv := byID[t.GetInvoiceId()]
		if inv == nil {
			continue
		}
		inv.Taxes = append(inv.Taxes, &billingv1.InvoiceTax{
			Jurisdiction: t.GetJurisdiction(), Reason: t.GetReason(), RatePercentage: t.GetRatePercentage(),
			RateEffectiveFrom: t.GetRateEffectiveFrom(), Taxable: t.GetTaxable(), Tax: t.GetTax(),
		})
	}
	return out, nil
}

// readInvoiceLines attaches the lines of the invoices w selects (on alias i).
func readInvoiceLines(ctx context.Context, q querier, w *where, byID map[string]*billingv1.InvoiceRow) error {
	rows, err := q.QueryContext(ctx, `SELECT l.invoice_id, l.line_number, l.account_id, l.service, l.charge_month,
			l.charge_class, l.usage_currency, l.billed_cost, l.fx_rate, l.fx_effective_date, l.converted, l.amount,
			l.jurisdiction, l.tax_reason, l.usage_records, l.charge_period_start, l.charge_period_end
		FROM invoice_lines l JOIN invoices i ON i.invoice_id = l.invoice_id`+w.sql()+`
		ORDER BY l.invoice_id, l.line_number`, w.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l           billingv1.InvoiceLine
			id          string
			number      int64
			records     int64
			start, stop string
		)
		if err := rows.Scan(&id, &number, &l.AccountId, &l.Service, &l.ChargeMonth, &l.ChargeClass, &l.UsageCurrency,
			orEmpty{&l.BilledCost}, orEmpty{&l.FxRate}, &l.FxEffectiveDate, orEmpty{&l.Converted}, &l.Amount, &l.Jurisdiction, &l.TaxReason,
			&records, &start, &stop); err != nil {
			return err
		}
		if number <= 0 || number > 1<<32-1 {
			return fmt.Errorf("invoice %q: line number %d out of range", id, number)
		}
		l.LineNumber = uint32(number)
		if l.UsageRecords, err = fromDBInt("usage_records", records); err != nil {
			return err
		}
		if l.ChargePeriodStart, err = apiTimestamp(start); err != nil {
			return err
		}
		if l.ChargePeriodEnd, err = apiTimestamp(stop); err != nil {
			return err
		}
		if inv := byID[id]; inv != nil {
			inv.Lines = append(inv.Lines, &l)
		}
	}
	return rows.Err()
}

// readTaxRows reads the taxes of the invoices w selects (on alias i), in
// report order: payer, source, invoice, then as on the invoice.
func readTaxRows(ctx context.Context, q querier, w *where) ([]*billingv1.TaxRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT t.invoice_id, i.payer_account_id, i.source_account_id, i.currency,
			t.jurisdiction, t.reason, t.rate_percentage, t.rate_effective_from, t.taxable, t.tax
		FROM invoice_taxes t JOIN invoices i ON i.invoice_id = t.invoice_id`+w.sql()+`
		ORDER BY i.payer_account_id, i.source_account_id, t.invoice_id, t.seq`, w.args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*billingv1.TaxRow{}
	for rows.Next() {
		var t billingv1.TaxRow
		if err := rows.Scan(&t.InvoiceId, &t.PayerAccountId, &t.SourceAccountId, &t.Currency, &t.Jurisdiction,
			&t.Reason, orEmpty{&t.RatePercentage}, &t.RateEffectiveFrom, &t.Taxable, &t.Tax); err != nil {
			return nil, err
		}
		out = append(out, &t)
	}
	return out, rows.Err()
}

// minCheckpoint reads the checkpoints of names and returns the lowest: the
// position every one of them reflects.
func minCheckpoint(ctx context.Context, q querier, names ...string) (uint64, error) {
	var low uint64
	for i, n := range names {
		cp, err := readCheckpoint(ctx, q, n)
		if err != nil {
			return 0, err
		}
		if i == 0 || cp < low {
			low = cp
		}
	}
	return low, nil
}

// ReportInvoices reads the invoices of req.month (X5), optionally of one
// payer and/or one source organization, with lines, taxes and payment state
// (Y3), and totals per currency. Checkpoint is the lower of the invoices and
// payments projections' positions, read in the same snapshot. Bad filter
// values return an error wrapping ErrInvalidFilter.
func (db *DB) ReportInvoices(ctx context.Context, req *billingv1.ReportInvoicesRequest) (*billingv1.ReportInvoicesResponse, error) {
	month, payer, source := req.GetMonth(), req.GetPayerAccountId(), req.GetSourceAccountId()
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	if err := checkAccounts("payer_account_id", payer, "source_account_id", source); err != nil {
		return nil, err
	}
	resp := &billingv1.ReportInvoicesResponse{Totals: []*billingv1.CurrencyTotals{}}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if resp.Rows, err = readInvoiceRows(ctx, tx, month, payer, source, true); err != nil {
			return err
		}
		resp.Checkpoint, err = minCheckpoint(ctx, tx, InvoicesProjection, PaymentsProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	sums := amountSums{}
	count := map[string]uint64{}
	for _, r := range resp.Rows {
		for _, f := range [...]struct{ name, v string }{{"subtotal", r.GetSubtotal()}, {"tax", r.GetTax()},
			{"total", r.GetTotal()}, {"paid", r.GetPaid()}, {"outstanding", r.GetOutstanding()}} {
			if err := sums.add(r.GetCurrency(), f.name, f.v); err != nil {
				return nil, fmt.Errorf("readmodel: invoice totals of %s: invoice %q: %w", month, r.GetInvoiceId(), err)
			}
		}
		count[r.GetCurrency()]++
	}
	for _, c := range sums.currencies() {
		resp.Totals = append(resp.Totals, &billingv1.CurrencyTotals{
			Currency: c, Invoices: count[c], Subtotal: sums.get(c, "subtotal"), Tax: sums.get(c, "tax"),
			Total: sums.get(c, "total"), Paid: sums.get(c, "paid"), Outstanding: sums.get(c, "outstanding"),
		})
	}
	return resp, nil
}

// ReportTax reads the tax view (R1) of req.month, optionally of one payer:
// one row per invoice and jurisdiction (and treatment), with totals per
// currency. Checkpoint is the invoices projection's position.
func (db *DB) ReportTax(ctx context.Context, req *billingv1.ReportTaxRequest) (*billingv1.ReportTaxResponse, error) {
	month, payer := req.GetMonth(), req.GetPayerAccountId()
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	if err := checkAccounts("payer_account_id", payer); err != nil {
		return nil, err
	}
	resp := &billingv1.ReportTaxResponse{Totals: []*billingv1.TaxTotals{}}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		w := &where{}
		w.eq("i.month", month)
		w.eq("i.payer_account_id", payer)
		var err error
		if resp.Rows, err = readTaxRows(ctx, tx, w); err != nil {
			return fmt.Errorf("readmodel: read taxes of %s: %w", month, err)
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, InvoicesProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	sums := amountSums{}
	for _, r := range resp.Rows {
		if err := sums.add(r.GetCurrency(), "taxable", r.GetTaxable()); err != nil {
			return nil, fmt.Errorf("readmodel: tax totals of %s: invoice %q: %w", month, r.GetInvoiceId(), err)
		}
		if err := sums.add(r.GetCurrency(), "tax", r.GetTax()); err != nil {
			return nil, fmt.Errorf("readmodel: tax totals of %s: invoice %q: %w", month, r.GetInvoiceId(), err)
		}
	}
	for _, c := range sums.currencies() {
		resp.Totals = append(resp.Totals, &billingv1.TaxTotals{Currency: c, Taxable: sums.get(c, "taxable"), Tax: sums.get(c, "tax")})
	}
	return resp, nil
}

// checkAccounts validates optional account id filters given as name, value pairs.
func checkAccounts(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if v := pairs[i+1]; v != "" && !isAccountID(v) {
			return invalidFilter("%s %q is not a 12-digit account id", pairs[i], v)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Payments.

// readReceivables reads the receivables w selects (on alias r), ordered by
// payer, month, source, invoice. An invoice's credit_applied and
// remaining_credit (stored NULL) read as the currency's zero.
func readReceivables(ctx context.Context, q querier, w *where) ([]*billingv1.InvoicePayment, error) {
	rows, err := q.QueryContext(ctx, `SELECT r.invoice_id, r.payer_account_id, r.month, r.source_account_id,
			r.invoice_unit_id, r.seller, r.currency, r.issued, r.paid, r.outstanding, r.status,
			r.credit_applied, r.remaining_credit
		FROM receivables r`+w.sql()+`
		ORDER BY r.payer_account_id, r.month, r.source_account_id, r.invoice_id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read receivables: %w", err)
	}
	defer rows.Close()
	out := []*billingv1.InvoicePayment{}
	for rows.Next() {
		var r billingv1.InvoicePayment
		if err := rows.Scan(&r.InvoiceId, &r.PayerAccountId, &r.Month, &r.SourceAccountId, &r.InvoiceUnitId,
			&r.Seller, &r.Currency, &r.Issued, &r.Paid, &r.Outstanding, &r.Status,
			orEmpty{&r.CreditApplied}, orEmpty{&r.RemainingCredit}); err != nil {
			return nil, fmt.Errorf("readmodel: read receivables: %w", err)
		}
		if r.CreditApplied == "" {
			r.CreditApplied = zeroAmount(r.Currency).Text('f')
		}
		if r.RemainingCredit == "" {
			r.RemainingCredit = zeroAmount(r.Currency).Text('f')
		}
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read receivables: %w", err)
	}
	return out, nil
}

// allocationRow is an allocation as the queries read it.
type allocationRow struct {
	payer, payment string
	seq            int64
	alloc          *billingv1.PaymentAllocation
}

// readAllocations reads the allocations to the receivables w selects (on
// alias r), ordered by payer, payment and seq.
func readAllocations(ctx context.Context, q querier, w *where) ([]allocationRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.payer_account_id, a.payment_id, a.seq, a.invoice_id,
			a.bill_source_account_id, a.amount, a.outstanding_after
		FROM payment_allocations a JOIN receivables r ON r.invoice_id = a.invoice_id`+w.sql()+`
		ORDER BY a.payer_account_id, a.payment_id, a.seq`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read allocations: %w", err)
	}
	defer rows.Close()
	var out []allocationRow
	for rows.Next() {
		a := allocationRow{alloc: &billingv1.PaymentAllocation{}}
		if err := rows.Scan(&a.payer, &a.payment, &a.seq, &a.alloc.InvoiceId, &a.alloc.BillSourceAccountId,
			&a.alloc.Amount, &a.alloc.OutstandingAfter); err != nil {
			return nil, fmt.Errorf("readmodel: read allocations: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read allocations: %w", err)
	}
	return out, nil
}

// creditAllocationRow is an allocation of a credit note application as the
// queries read it, with the months of the invoice and of the credit note.
type creditAllocationRow struct {
	payer, note             string
	app, seq                int64
	invoiceMonth, noteMonth string
	alloc                   *billingv1.PaymentAllocation
}

// readCreditAllocations reads the allocations of credit note applications
// that cond selects (a WHERE clause on aliases a, r the invoice and n the
// credit note, with its args), ordered by payer, credit note, application
// and seq.
func readCreditAllocations(ctx context.Context, q querier, cond string, args ...any) ([]creditAllocationRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.payer_account_id, a.credit_note_id, a.application_seq, a.seq, a.invoice_id,
			a.bill_source_account_id, a.amount, a.outstanding_after, r.month, n.month
		FROM credit_allocations a JOIN receivables r ON r.invoice_id = a.invoice_id
			JOIN receivables n ON n.invoice_id = a.credit_note_id`+cond+`
		ORDER BY a.payer_account_id, a.credit_note_id, a.application_seq, a.seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read credit allocations: %w", err)
	}
	defer rows.Close()
	var out []creditAllocationRow
	for rows.Next() {
		a := creditAllocationRow{alloc: &billingv1.PaymentAllocation{}}
		if err := rows.Scan(&a.payer, &a.note, &a.app, &a.seq, &a.alloc.InvoiceId, &a.alloc.BillSourceAccountId,
			&a.alloc.Amount, &a.alloc.OutstandingAfter, &a.invoiceMonth, &a.noteMonth); err != nil {
			return nil, fmt.Errorf("readmodel: read credit allocations: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read credit allocations: %w", err)
	}
	return out, nil
}

// readCreditApplications reads the credit note applications (of payer when
// set), ordered by payer, applied_at, credit note and seq.
func readCreditApplications(ctx context.Context, q querier, payer string) ([]*billingv1.CreditApplicationRow, error) {
	w := &where{}
	w.eq("payer_account_id", payer)
	rows, err := q.QueryContext(ctx, `SELECT payer_account_id, credit_note_id, seq, bill_source_account_id, currency,
			amount, remaining_credit, applied_at FROM credit_applications`+w.sql()+`
		ORDER BY payer_account_id, applied_at, credit_note_id, seq`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read credit applications: %w", err)
	}
	defer rows.Close()
	out := []*billingv1.CreditApplicationRow{}
	for rows.Next() {
		var c billingv1.CreditApplicationRow
		var seq int64
		var at string
		if err := rows.Scan(&c.PayerAccountId, &c.CreditNoteId, &seq, &c.BillSourceAccountId, &c.Currency,
			&c.Amount, &c.RemainingCredit, &at); err != nil {
			return nil, fmt.Errorf("readmodel: read credit applications: %w", err)
		}
		if c.Seq, err = fromDBInt("seq", seq); err != nil {
			return nil, err
		}
		t, err := ParseStoredTime(at)
		if err != nil {
			return nil, err
		}
		c.AppliedAt = FormatAPITime(t)
		c.Allocations = []*billingv1.PaymentAllocation{}
		out = append(out, &c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read credit applications: %w", err)
	}
	return out, nil
}

// readPayments reads payments (of payer when set), ordered by payer,
// received_at and payment id.
func readPayments(ctx context.Context, q querier, payer string) ([]*billingv1.PaymentRow, error) {
	w := &where{}
	w.eq("payer_account_id", payer)
	rows, err := q.QueryContext(ctx, `SELECT payer_account_id, payment_id, amount, currency, method, received_at,
			unapplied, refunded FROM payments`+w.sql()+`
		ORDER BY payer_account_id, received_at, payment_id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read payments: %w", err)
	}
	defer rows.Close()
	out := []*billingv1.PaymentRow{}
	for rows.Next() {
		var p billingv1.PaymentRow
		var received string
		if err := rows.Scan(&p.PayerAccountId, &p.PaymentId, &p.Amount, &p.Currency, &p.Method, &received,
			&p.Unapplied, &p.Refunded); err != nil {
			return nil, fmt.Errorf("readmodel: read payments: %w", err)
		}
		t, err := ParseStoredTime(received)
		if err != nil {
			return nil, err
		}
		p.ReceivedAt = FormatAPITime(t)
		p.Allocations = []*billingv1.PaymentAllocation{}
		out = append(out, &p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read payments: %w", err)
	}
	return out, nil
}

// paymentKey names a payment.
type paymentKey struct{ payer, id string }

// ReportPayments reads the payments read model (Y2, Y3), optionally of one
// payer, one source organization and/or one month:
//
//   - invoices: the payment state of every posted invoice (and credit note)
//     matching the filters;
//   - source_balances and payer_balances: issued, paid, outstanding and the
//     credit notes' remaining credit summed over those invoices per (payer,
//     source, currency) and (payer, currency); a payer balance also holds the
//     payer's unapplied credit in the currency, over all its payments (payment
//     credit belongs to no month or source), and balance = outstanding −
//     credit_notes − unapplied_credit (a source's: outstanding − credit_notes);
//   - payments: with a month or source filter, the payments applied to a
//     listed invoice, showing only those allocations; else every payment of
//     the payer (or of everyone), with every allocation;
//   - credit_applications: likewise, with a filter, the applications of a
//     listed credit note (every allocation) or applied to a listed invoice
//     (those allocations); else every one.
//
// Checkpoint is the payments projection's position.
func (db *DB) ReportPayments(ctx context.Context, req *billingv1.ReportPaymentsRequest) (*billingv1.ReportPaymentsResponse, error) {
	payer, source, month := req.GetPayerAccountId(), req.GetSourceAccountId(), req.GetMonth()
	if month != "" {
		if err := checkMonth(month); err != nil {
			return nil, err
		}
	}
	if err := checkAccounts("payer_account_id", payer, "source_account_id", source); err != nil {
		return nil, err
	}
	narrowed := month != "" || source != ""
	w := &where{}
	w.eq("r.payer_account_id", payer)
	w.eq("r.source_account_id", source)
	w.eq("r.month", month)
	resp := &billingv1.ReportPaymentsResponse{
		PayerBalances: []*billingv1.PayerBalance{}, SourceBalances: []*billingv1.SourceBalance{},
	}
	var (
		allocs       []allocationRow
		payments     []*billingv1.PaymentRow
		applications []*billingv1.CreditApplicationRow
		creditAllocs []creditAllocationRow
	)
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if resp.Invoices, err = readReceivables(ctx, tx, w); err != nil {
			return err
		}
		if allocs, err = readAllocations(ctx, tx, w); err != nil {
			return err
		}
		if payments, err = readPayments(ctx, tx, payer); err != nil {
			return err
		}
		if applications, err = readCreditApplications(ctx, tx, payer); err != nil {
			return err
		}
		aw := &where{}
		aw.eq("a.payer_account_id", payer)
		if creditAllocs, err = readCreditAllocations(ctx, tx, aw.sql(), aw.args...); err != nil {
			return err
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, PaymentsProjection)
		return err
	})
	if err != nil {
		return nil, err
	}

	// Balances over the listed invoices.
	type payerCur struct{ payer, currency string }
	type sourceCur struct{ payer, source, currency string }
	payerSums, sourceSums := map[payerCur]amountSums{}, map[sourceCur]amountSums{}
	addAll := func(s amountSums, r *billingv1.InvoicePayment) error {
		for _, f := range [...]struct{ name, v string }{{"issued", r.GetIssued()}, {"paid", r.GetPaid()},
			{"outstanding", r.GetOutstanding()}, {"credit_notes", r.GetRemainingCredit()}} {
			if err := s.add(r.GetCurrency(), f.name, f.v); err != nil {
				return fmt.Errorf("readmodel: balances: invoice %q: %w", r.GetInvoiceId(), err)
			}
		}
		return nil
	}
	listed := make(map[string]bool, len(resp.Invoices))
	for _, r := range resp.Invoices {
		listed[r.GetInvoiceId()] = true
		pk := payerCur{r.GetPayerAccountId(), r.GetCurrency()}
		sk := sourceCur{r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetCurrency()}
		if payerSums[pk] == nil {
			payerSums[pk] = amountSums{}
		}
		if sourceSums[sk] == nil {
			sourceSums[sk] = amountSums{}
		}
		if err := addAll(payerSums[pk], r); err != nil {
			return nil, err
		}
		if err := addAll(sourceSums[sk], r); err != nil {
			return nil, err
		}
	}

	// Payments: attach the allocations read (those to listed invoices).
	byKey := make(map[paymentKey]*billingv1.PaymentRow, len(payments))
	for _, p := range payments {
		byKey[paymentKey{p.GetPayerAccountId(), p.GetPaymentId()}] = p
	}
	applied := map[paymentKey]bool{}
	for _, a := range allocs {
		k := paymentKey{a.payer, a.payment}
		if p := byKey[k]; p != nil {
			p.Allocations = append(p.Allocations, a.alloc)
			applied[k] = true
		}
	}
	credit := map[payerCur]amountSums{}
	resp.Payments = []*billingv1.PaymentRow{}
	for _, p := range payments {
		pk := payerCur{p.GetPayerAccountId(), p.GetCurrency()}
		if credit[pk] == nil {
			credit[pk] = amountSums{}
		}
		if err := credit[pk].add(p.GetCurrency(), "unapplied", p.GetUnapplied()); err != nil {
			return nil, fmt.Errorf("readmodel: unapplied credit: payment %q: %w", p.GetPaymentId(), err)
		}
		if narrowed && !applied[paymentKey{p.GetPayerAccountId(), p.GetPaymentId()}] {
			continue
		}
		resp.Payments = append(resp.Payments, p)
		if payerSums[pk] == nil {
			payerSums[pk] = amountSums{}
		}
	}

	// Credit note applications: attach their allocations (with a filter,
	// those of a listed credit note, or to a listed invoice).
	type appKey struct {
		payer, note string
		seq         uint64
	}
	byApp := make(map[appKey]*billingv1.CreditApplicationRow, len(applications))
	for _, c := range applications {
		byApp[appKey{c.GetPayerAccountId(), c.GetCreditNoteId(), c.GetSeq()}] = c
	}
	for _, a := range creditAllocs {
		if narrowed && !listed[a.note] && !listed[a.alloc.GetInvoiceId()] {
			continue
		}
		if c := byApp[appKey{a.payer, a.note, uint64(a.app)}]; c != nil {
			c.Allocations = append(c.Allocations, a.alloc)
		}
	}
	resp.CreditApplications = []*billingv1.CreditApplicationRow{}
	for _, c := range applications {
		if narrowed && !listed[c.GetCreditNoteId()] && len(c.GetAllocations()) == 0 {
			continue
		}
		resp.CreditApplications = append(resp.CreditApplications, c)
	}

	pks := make([]payerCur, 0, len(payerSums))
	for k := range payerSums {
		pks = append(pks, k)
	}
	slices.SortFunc(pks, func(a, b payerCur) int {
		return cmp.Or(cmp.Compare(a.payer, b.payer), cmp.Compare(a.currency, b.currency))
	})
	for _, k := range pks {
		s, c := payerSums[k], k.currency
		b := &billingv1.PayerBalance{
			PayerAccountId: k.payer, Currency: c, Issued: s.get(c, "issued"), Paid: s.get(c, "paid"),
			Outstanding: s.get(c, "outstanding"), UnappliedCredit: credit[k].get(c, "unapplied"),
			CreditNotes: s.get(c, "credit_notes"),
		}
		var err error
		if b.Balance, err = difference(b.Outstanding, b.CreditNotes, b.UnappliedCredit); err != nil {
			return nil, fmt.Errorf("readmodel: balance of payer %s in %s: %w", k.payer, c, err)
		}
		resp.PayerBalances = append(resp.PayerBalances, b)
	}
	sks := make([]sourceCur, 0, len(sourceSums))
	for k := range sourceSums {
		sks = append(sks, k)
	}
	slices.SortFunc(sks, func(a, b sourceCur) int {
		return cmp.Or(cmp.Compare(a.payer, b.payer), cmp.Compare(a.source, b.source), cmp.Compare(a.currency, b.currency))
	})
	for _, k := range sks {
		s, c := sourceSums[k], k.currency
		b := &billingv1.SourceBalance{
			PayerAccountId: k.payer, SourceAccountId: k.source, Currency: c,
			Issued: s.get(c, "issued"), Paid: s.get(c, "paid"), Outstanding: s.get(c, "outstanding"),
			CreditNotes: s.get(c, "credit_notes"),
		}
		var err error
		if b.Balance, err = difference(b.Outstanding, b.CreditNotes); err != nil {
			return nil, fmt.Errorf("readmodel: balance of source %s of payer %s in %s: %w", k.source, k.payer, c, err)
		}
		resp.SourceBalances = append(resp.SourceBalances, b)
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Digests (R2).

// Read model names of the invoices and payments projections in digests.
const (
	// DigestInvoices is the invoices of a month as issued, with its closes.
	DigestInvoices = "invoices"
	// DigestTax is the tax view of a month.
	DigestTax = "tax"
	// DigestPayments is the payment state of a month's invoices and credit
	// notes, the payment allocations to them, and the credit note allocations
	// to or from them.
	DigestPayments = "payments"
)

const (
	invoicesDigestHeader = "billing.v1 invoices digest 1\n"
	taxDigestHeader      = "billing.v1 tax digest 1\n"
	paymentsDigestHeader = "billing.v1 payments digest 2\n"
)

// canonicalizer writes decimals canonically for digests; a value that does
// not parse is hashed as written and counted (only a corrupt table has one).
type canonicalizer struct{ invalid uint64 }

func (c *canonicalizer) dec(s string) string {
	d, err := domain.ParseDecimal(s)
	if err != nil {
		c.invalid++
		return s
	}
	return domain.CanonicalDecimal(d)
}

// sumTotals adds amounts into totals as "<name>_<currency>" (canonical).
func sumTotals(totals map[string]string, sums amountSums) {
	for currency, m := range sums {
		for name, d := range m {
			totals[name+"_"+currency] = domain.CanonicalDecimal(d)
		}
	}
}

// monthClose is a close as the invoices digest sees it.
type monthClose struct {
	payer, date    string
	count, records int64
}

// invoiceDigests fingerprints a month: "invoices" (its closes, the invoices'
// headers and lines), "tax" (the tax rows) and "payments" (the receivables of
// the month's invoices and credit notes, the payment allocations to them and
// the credit note allocations to or from them). Every field is hashed,
// decimals canonical; the totals are exact sums per currency.
func invoiceDigests(closes []monthClose, invoices []*billingv1.InvoiceRow, taxes []*billingv1.TaxRow,
	receivables []*billingv1.InvoicePayment, allocs []allocationRow, creditAllocs []creditAllocationRow) ([]*billingv1.ReadModelDigest, error) {
	var c canonicalizer

	slices.SortFunc(closes, func(a, b monthClose) int { return cmp.Compare(a.payer, b.payer) })
	invs := slices.Clone(invoices)
	slices.SortFunc(invs, func(a, b *billingv1.InvoiceRow) int { return cmp.Compare(a.GetInvoiceId(), b.GetInvoiceId()) })
	h := newDigest(invoicesDigestHeader)
	var lines uint64
	sums := amountSums{}
	for _, m := range closes {
		h.add("close", m.payer, m.date, strconv.FormatInt(m.count, 10), strconv.FormatInt(m.records, 10))
	}
	for _, r := range invs {
		h.add("invoice", r.GetInvoiceId(), r.GetPayerAccountId(), r.GetMonth(), r.GetSeller(), r.GetCurrency(),
			r.GetSourceAccountId(), r.GetInvoiceUnitId(), r.GetInvoiceUnitName(), r.GetReceiverAccountId(),
			r.GetInvoiceDate(), r.GetBillToLegalName(), r.GetBillToTaxRegistrationNumber(), r.GetPaymentMethod(),
			c.dec(r.GetSubtotal()), c.dec(r.GetTax()), c.dec(r.GetTotal()))
		for _, l := range r.GetLines() {
			lines++
			h.add("line", r.GetInvoiceId(), strconv.FormatUint(uint64(l.GetLineNumber()), 10), l.GetAccountId(),
				l.GetService(), l.GetChargeMonth(), l.GetChargeClass(), l.GetUsageCurrency(), c.dec(l.GetBilledCost()),
				c.dec(l.GetFxRate()), l.GetFxEffectiveDate(), c.dec(l.GetConverted()), c.dec(l.GetAmount()),
				l.GetJurisdiction(), l.GetTaxReason(), strconv.FormatUint(l.GetUsageRecords(), 10),
				storedTimestamp(l.GetChargePeriodStart()), storedTimestamp(l.GetChargePeriodEnd()))
		}
		for _, f := range [...]struct{ name, v string }{{"subtotal", r.GetSubtotal()}, {"tax", r.GetTax()}, {"total", r.GetTotal()}} {
			if _, err := domain.ParseDecimal(f.v); err == nil {
				if err := sums.add(r.GetCurrency(), f.name, f.v); err != nil {
					return nil, err
				}
			}
		}
	}
	inv := &billingv1.ReadModelDigest{Name: DigestInvoices, Digest: h.sum(), Rows: uint64(len(invs)), Totals: map[string]string{
		"closes": strconv.Itoa(len(closes)), "invoices": strconv.Itoa(len(invs)), "lines": strconv.FormatUint(lines, 10),
	}}
	sumTotals(inv.Totals, sums)

	// Tax rows come per invoice in the invoice's order; order the invoices by id.
	tx := slices.Clone(taxes)
	slices.SortStableFunc(tx, func(a, b *billingv1.TaxRow) int { return cmp.Compare(a.GetInvoiceId(), b.GetInvoiceId()) })
	th := newDigest(taxDigestHeader)
	taxSums := amountSums{}
	for _, t := range tx {
		th.add(t.GetInvoiceId(), t.GetPayerAccountId(), t.GetSourceAccountId(), t.GetCurrency(), t.GetJurisdiction(),
			t.GetReason(), c.dec(t.GetRatePercentage()), t.GetRateEffectiveFrom(), c.dec(t.GetTaxable()), c.dec(t.GetTax()))
		for _, f := range [...]struct{ name, v string }{{"taxable", t.GetTaxable()}, {"tax", t.GetTax()}} {
			if _, err := domain.ParseDecimal(f.v); err == nil {
				if err := taxSums.add(t.GetCurrency(), f.name, f.v); err != nil {
					return nil, err
				}
			}
		}
	}
	td := &billingv1.ReadModelDigest{Name: DigestTax, Digest: th.sum(), Rows: uint64(len(tx)), Totals: map[string]string{}}
	sumTotals(td.Totals, taxSums)

	recs := slices.Clone(receivables)
	slices.SortFunc(recs, func(a, b *billingv1.InvoicePayment) int { return cmp.Compare(a.GetInvoiceId(), b.GetInvoiceId()) })
	al := slices.Clone(allocs)
	slices.SortFunc(al, func(a, b allocationRow) int {
		return cmp.Or(cmp.Compare(a.alloc.GetInvoiceId(), b.alloc.GetInvoiceId()), cmp.Compare(a.payer, b.payer),
			cmp.Compare(a.payment, b.payment), cmp.Compare(a.seq, b.seq))
	})
	ph := newDigest(paymentsDigestHeader)
	paySums := amountSums{}
	for _, r := range recs {
		ph.add("invoice", r.GetInvoiceId(), r.GetPayerAccountId(), r.GetMonth(), r.GetSourceAccountId(),
			r.GetInvoiceUnitId(), r.GetSeller(), r.GetCurrency(), c.dec(r.GetIssued()), c.dec(r.GetPaid()),
			c.dec(r.GetOutstanding()), r.GetStatus(), c.dec(r.GetCreditApplied()), c.dec(r.GetRemainingCredit()))
		sums := []struct{ name, v string }{{"issued", r.GetIssued()}, {"paid", r.GetPaid()}, {"outstanding", r.GetOutstanding()}}
		if InvoiceStatus(r.GetStatus()).IsCreditNote() {
			sums = append(sums, struct{ name, v string }{"remaining_credit", r.GetRemainingCredit()})
		}
		for _, f := range sums {
			if _, err := domain.ParseDecimal(f.v); err == nil {
				if err := paySums.add(r.GetCurrency(), f.name, f.v); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, a := range al {
		ph.add("allocation", a.alloc.GetInvoiceId(), a.payer, a.payment, strconv.FormatInt(a.seq, 10),
			a.alloc.GetBillSourceAccountId(), c.dec(a.alloc.GetAmount()), c.dec(a.alloc.GetOutstandingAfter()))
	}
	ca := slices.Clone(creditAllocs)
	slices.SortFunc(ca, func(a, b creditAllocationRow) int {
		return cmp.Or(cmp.Compare(a.payer, b.payer), cmp.Compare(a.note, b.note), cmp.Compare(a.app, b.app), cmp.Compare(a.seq, b.seq))
	})
	for _, a := range ca {
		ph.add("credit", a.note, a.payer, strconv.FormatInt(a.app, 10), strconv.FormatInt(a.seq, 10), a.alloc.GetInvoiceId(),
			a.alloc.GetBillSourceAccountId(), c.dec(a.alloc.GetAmount()), c.dec(a.alloc.GetOutstandingAfter()))
	}
	pd := &billingv1.ReadModelDigest{Name: DigestPayments, Digest: ph.sum(), Rows: uint64(len(recs)), Totals: map[string]string{
		"allocations": strconv.Itoa(len(al)),
	}}
	if len(ca) > 0 {
		pd.Totals["credit_allocations"] = strconv.Itoa(len(ca))
	}
	sumTotals(pd.Totals, paySums)

	if c.invalid > 0 {
		for _, d := range []*billingv1.ReadModelDigest{inv, td, pd} {
			d.Totals["invalid_decimals"] = strconv.FormatUint(c.invalid, 10)
		}
	}
	return []*billingv1.ReadModelDigest{inv, td, pd}, nil
}

// readCloses reads the closes of month.
func readCloses(ctx context.Context, q querier, month string) ([]monthClose, error) {
	rows, err := q.QueryContext(ctx, `SELECT payer_account_id, invoice_date, invoice_count, usage_records
		FROM closed_months WHERE month = $1`, month)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read closes of %s: %w", month, err)
	}
	defer rows.Close()
	var out []monthClose
	for rows.Next() {
		var m monthClose
		if err := rows.Scan(&m.payer, &m.date, &m.count, &m.records); err != nil {
			return nil, fmt.Errorf("readmodel: read closes of %s: %w", month, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// InvoiceDigests computes the "invoices", "tax" and "payments" digests of
// month from the tables of db, from one snapshot: the first two carry the
// invoices projection's checkpoint, the third the payments projection's
// (ReadModelDigest.checkpoint: `billctl replay --verify` replays each up to
// it). billingd's QueryService.MonthDigest adds them to the other digests;
// the replay calls it on its scratch database, so the live tables and the
// replay are fingerprinted by the same code. It implements the
// api.InvoiceReader port with ReportInvoices, ReportPayments and ReportTax.
func (db *DB) InvoiceDigests(ctx context.Context, month string) ([]*billingv1.ReadModelDigest, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	var (
		closes       []monthClose
		invoices     []*billingv1.InvoiceRow
		taxes        []*billingv1.TaxRow
		receivables  []*billingv1.InvoicePayment
		allocs       []allocationRow
		creditAllocs []creditAllocationRow
		invCP, payCP uint64
	)
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if closes, err = readCloses(ctx, tx, month); err != nil {
			return err
		}
		if invoices, err = readInvoiceRows(ctx, tx, month, "", "", false); err != nil {
			return err
		}
		w := &where{}
		w.eq("i.month", month)
		if taxes, err = readTaxRows(ctx, tx, w); err != nil {
			return fmt.Errorf("readmodel: read taxes of %s: %w", month, err)
		}
		rw := &where{}
		rw.eq("r.month", month)
		if receivables, err = readReceivables(ctx, tx, rw); err != nil {
			return err
		}
		if allocs, err = readAllocations(ctx, tx, rw); err != nil {
			return err
		}
		if creditAllocs, err = readCreditAllocations(ctx, tx, ` WHERE r.month = $1 OR n.month = $1`, month); err != nil {
			return err
		}
		if invCP, err = readCheckpoint(ctx, tx, InvoicesProjection); err != nil {
			return err
		}
		payCP, err = readCheckpoint(ctx, tx, PaymentsProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	ds, err := invoiceDigests(closes, invoices, taxes, receivables, allocs, creditAllocs)
	if err != nil {
		return nil, fmt.Errorf("readmodel: digest invoices of %s: %w", month, err)
	}
	ds[0].Checkpoint, ds[1].Checkpoint, ds[2].Checkpoint = invCP, invCP, payCP
	return ds, nil
}
