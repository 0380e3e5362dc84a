package projections

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Invoice provenance (issue #6 item 3): which usage records make up an invoice
// line, at which exchange and tax rate, with the arithmetic, read from the
// events alone so a person can redo it by hand.

// LineExplanation is one invoice line with what is behind it.
type LineExplanation struct {
	// Line as issued.
	Line *billingv1.InvoiceLine `json:"-"`
	// Records are the usage records of the line, in log order.
	Records []*billingv1.BookedUsage `json:"-"`
	// Sum is the exact sum of the records' billed cost (must equal Line.BilledCost).
	Sum string `json:"sum"`
	// Steps are the arithmetic, one step per line of text.
	Steps []string `json:"steps"`
}

// InvoiceExplanation is an invoice with its explained lines and taxes.
type InvoiceExplanation struct {
	// Invoice as issued.
	Invoice *billingv1.Invoice `json:"-"`
	// Lines explained (all, or the one asked for).
	Lines []LineExplanation `json:"lines"`
	// TaxSteps are the arithmetic of each tax entry.
	TaxSteps []string `json:"tax_steps"`
	// TotalSteps are the arithmetic of subtotal and total.
	TotalSteps []string `json:"total_steps"`
}

var invoiceIDRe = regexp.MustCompile(`^INV-(\d{4})(\d{2})-(\d{12})-[0-9a-f]{10}$`)

// ExplainInvoice reads the invoice (from its month stream) and the usage of
// its month, and explains line (1-based; 0 = every line). Each line's record sum
// is checked against the line as issued: a mismatch is an error, since the
// ledger's history would then not explain its own invoice.
func ExplainInvoice(ctx context.Context, store eventstore.Store, invoiceID string, line int) (*InvoiceExplanation, error) {
	m := invoiceIDRe.FindStringSubmatch(invoiceID)
	if m == nil {
		return nil, domain.Reject(domain.CodeInvalidArgument, "invoice id %q is not of the form INV-YYYYMM-<payer>-<10 hex>", invoiceID)
	}
	month, payer := m[1]+"-"+m[2], m[3]
	recs, err := store.ReadStream(ctx, domain.MonthStream(payer, month))
	if err != nil {
		return nil, err
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	var inv *billingv1.Invoice
	for _, x := range domain.FoldMonthClose(evs).Invoices() {
		if x.GetInvoiceId() == invoiceID {
			inv = x
		}
	}
	if inv == nil {
		return nil, domain.Reject(domain.CodeNotFound, "invoice %s was not issued (no such invoice in %s's close of %s)", invoiceID, payer, month)
	}
	if line < 0 || line > len(inv.GetLines()) {
		return nil, domain.Reject(domain.CodeInvalidArgument, "invoice %s has lines 1 to %d, not %d", invoiceID, len(inv.GetLines()), line)
	}
	out := &InvoiceExplanation{Invoice: inv}
	type key struct {
		account, service, chargeMonth, currency string
		correction                              bool
	}
	want := map[key]int{}
	for i, l := range inv.GetLines() {
		if line == 0 || line == i+1 {
			want[key{l.GetAccountId(), l.GetService(), l.GetChargeMonth(), l.GetUsageCurrency(), l.GetChargeClass() == domain.ChargeClassCorrection}] = len(out.Lines)
			out.Lines = append(out.Lines, LineExplanation{Line: l})
		}
	}
	// The close read every usage record of the month that existed before it,
	// and none can be booked into the month after it (U3): the same records.
	err = store.ReadAll(ctx, 0, domain.UsageMonthFilter(month), func(r eventstore.Record) error {
		for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
			if b.GetPayerAccountId() != payer || b.GetBookingMonth() != month || b.GetSourceAccountId() != inv.GetSourceAccountId() {
				continue
			}
			u := b.GetRecord()
			if i, ok := want[key{u.GetAccountId(), u.GetService(), b.GetChargeMonth(), u.GetCurrency(), b.GetCorrection()}]; ok {
				out.Lines[i].Records = append(out.Lines[i].Records, b)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cur := inv.GetCurrency()
	for i := range out.Lines {
		le := &out.Lines[i]
		l := le.Line
		sum := apd.New(0, 0)
		var terms []string
		for _, b := range le.Records {
			d, err := domain.ParseDecimal(b.GetRecord().GetBilledCost())
			if err != nil {
				return nil, err
			}
			if sum, err = domain.AddDecimal(sum, d); err != nil {
				return nil, err
			}
			terms = append(terms, b.GetRecord().GetBilledCost())
		}
		le.Sum = domain.CanonicalDecimal(sum)
		if le.Sum != l.GetBilledCost() || uint64(len(le.Records)) != l.GetUsageRecords() {
			return nil, fmt.Errorf("line %d of %s: the ledger holds %d records summing to %s, the invoice says %d records and %s",
				l.GetLineNumber(), invoiceID, len(le.Records), le.Sum, l.GetUsageRecords(), l.GetBilledCost())
		}
		le.Steps = append(le.Steps, fmt.Sprintf("billed cost = %s = %s %s (%d usage records, charge month %s, %s)",
			abbreviate(terms), le.Sum, l.GetUsageCurrency(), len(le.Records), l.GetChargeMonth(), l.GetChargeClass()))
		if l.GetUsageCurrency() == cur {
			le.Steps = append(le.Steps, fmt.Sprintf("same currency: converted = %s %s", l.GetConverted(), cur))
		} else {
			le.Steps = append(le.Steps, fmt.Sprintf("converted = %s × %s (%s→%s in force since %s, on the invoice date %s) = %s %s",
				le.Sum, l.GetFxRate(), l.GetUsageCurrency(), cur, l.GetFxEffectiveDate(), inv.GetInvoiceDate(), l.GetConverted(), cur))
		}
		le.Steps = append(le.Steps, fmt.Sprintf("amount = round half-up(%s, %d decimals) = %s %s", l.GetConverted(), domain.Currencies[cur], l.GetAmount(), cur))
		treatment := "taxed"
		if l.GetTaxReason() != "" {
			treatment = l.GetTaxReason()
		}
		le.Steps = append(le.Steps, fmt.Sprintf("tax: jurisdiction %s, %s (see the tax of the invoice); pricing: invoices are at billable cost, no pricing rule applies (X5)", l.GetJurisdiction(), treatment))
	}
	var amounts []string
	for _, l := range inv.GetLines() {
		amounts = append(amounts, l.GetAmount())
	}
	out.TotalSteps = append(out.TotalSteps, fmt.Sprintf("subtotal = %s = %s %s", abbreviate(amounts), inv.GetSubtotal(), cur))
	var taxes []string
	for _, x := range inv.GetTaxes() {
		switch x.GetReason() {
		case "":
			raw, err := percentOf(x.GetRatePercentage(), x.GetTaxable())
			if err != nil {
				return nil, err
			}
			out.TaxSteps = append(out.TaxSteps, fmt.Sprintf("%s: %s%% (in force since %s) × %s = %s → round half-up = %s %s",
				x.GetJurisdiction(), x.GetRatePercentage(), x.GetRateEffectiveFrom(), x.GetTaxable(), raw, x.GetTax(), cur))
		default:
			out.TaxSteps = append(out.TaxSteps, fmt.Sprintf("%s: %s on %s → %s %s", x.GetJurisdiction(), x.GetReason(), x.GetTaxable(), x.GetTax(), cur))
		}
		taxes = append(taxes, x.GetTax())
	}
	out.TotalSteps = append(out.TotalSteps, fmt.Sprintf("tax = %s = %s %s", abbreviate(taxes), inv.GetTax(), cur),
		fmt.Sprintf("total = %s + %s = %s %s", inv.GetSubtotal(), inv.GetTax(), inv.GetTotal(), cur))
	return out, nil
}

// abbreviate joins terms with " + ", eliding the middle of long sums.
func abbreviate(terms []string) string {
	if len(terms) == 0 {
		return "0"
	}
	if len(terms) > 12 {
		return strings.Join(terms[:5], " + ") + fmt.Sprintf(" + … (%d more) … + ", len(terms)-10) + strings.Join(terms[len(terms)-5:], " + ")
	}
	return strings.Join(terms, " + ")
}

// percentOf returns pct% of amount, exactly.
func percentOf(pct, amount string) (string, error) {
	p, err := domain.ParseDecimal(pct)
	if err != nil {
		return "", err
	}
	a, err := domain.ParseDecimal(amount)
	if err != nil {
		return "", err
	}
	p.Exponent -= 2
	var r apd.Decimal
	if _, err := apd.BaseContext.WithPrecision(60).Mul(&r, a, p); err != nil {
		return "", err
	}
	return domain.CanonicalDecimal(&r), nil
}
