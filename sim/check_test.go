package sim

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// check waits for the projectors, then compares the read models a step may
// have changed with the model (every read model of every month when full).
func (s *sim) check(scope checkScope, full bool) error {
	months := s.allMonths()
	if full {
		scope = checkScope{billable: months, proforma: months, invoices: months, payments: slices.Sorted(maps.Keys(s.m.recv)),
			transfers: true, letters: months}
	}
	// Wait for the projectors whose read models are checked (all for a full
	// check): the others catch up in the background.
	var names []string
	if len(scope.billable)+len(scope.letters) > 0 {
		names = append(names, projections.UsageName)
	}
	if len(scope.proforma) > 0 {
		names = append(names, projections.ProformaName)
	}
	if len(scope.invoices) > 0 {
		names = append(names, projections.InvoicesName, projections.PaymentsName)
	}
	if len(scope.payments) > 0 {
		names = append(names, projections.PaymentsName)
	}
	if scope.transfers {
		names = append(names, projections.TransfersName)
	}
	if len(names) == 0 && !full {
		return nil
	}
	t0 := time.Now()
	if err := s.sys.wait(names, full); err != nil {
		return err
	}
	s.timed("wait", t0)
	for _, mo := range dedupe(scope.billable) {
		if err := s.checkBillable(mo); err != nil {
			return err
		}
	}
	for _, mo := range dedupe(scope.proforma) {
		if err := s.checkProforma(mo, full); err != nil {
			return err
		}
	}
	for _, mo := range dedupe(scope.invoices) {
		if err := s.checkInvoices(mo); err != nil {
			return err
		}
	}
	for _, p := range dedupe(scope.payments) {
		if err := s.checkPayments(p); err != nil {
			return err
		}
	}
	if scope.transfers {
		if err := s.checkTransfers(); err != nil {
			return err
		}
		if err := s.m.invariants(); err != nil {
			return err
		}
	}
	if len(scope.letters) > 0 {
		var months []string
		if full {
			months = scope.letters
		}
		if err := s.checkLetters(months); err != nil {
			return err
		}
	}
	return nil
}

func dedupe(xs []string) []string { return slices.Compact(slices.Sorted(slices.Values(xs))) }

// allMonths are the months that can hold anything: from the first to the
// current one (usage is never booked into a month that has not begun).
func (s *sim) allMonths() []string {
	var out []string
	for m := firstMonth; m <= monthOf(s.m.now); m = addMonths(m, 1) {
		out = append(out, m)
	}
	return out
}

// diff collects the differences between a read model and the model.
type diff struct {
	what  string
	lines []string
}

func (d *diff) add(format string, args ...any) {
	d.lines = append(d.lines, fmt.Sprintf(format, args...))
}

func (d *diff) dec(key, field, got string, want *apd.Decimal) {
	if !same(got, want) {
		d.add("%s: %s = %s, the model has %s", key, field, got, txt(want))
	}
}

func (d *diff) err() error {
	if len(d.lines) == 0 {
		return nil
	}
	lines := d.lines
	if len(lines) > 12 {
		lines = append(slices.Clone(lines[:12]), fmt.Sprintf("... and %d more", len(d.lines)-12))
	}
	return fmt.Errorf("%s differs from the model:\n\t%s", d.what, strings.Join(lines, "\n\t"))
}

// checkBillable: the billable view (R1) holds every accepted record once, in
// its booking month under its bill receiver (U2, U3, T6, T7).
func (s *sim) checkBillable(month string) error {
	defer s.timed("checkBillable", time.Now())
	s.checks["billable"]++
	got, err := s.sys.db.ReportBillable(context.Background(), month, "", "")
	if err != nil {
		return err
	}
	want := s.m.billableRows(month)
	d := &diff{what: "billable " + month}
	seen := map[[5]string]bool{}
	total := zero()
	for _, r := range got.GetRows() {
		k := [5]string{r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetAccountId(), r.GetService(), r.GetCurrency()}
		seen[k] = true
		w := want[k]
		key := strings.Join(k[:4], "/")
		if w == nil {
			d.add("%s: unexpected row (%s, %d records)", key, r.GetBilledCost(), r.GetRecordCount())
			continue
		}
		d.dec(key, "billed_cost", r.GetBilledCost(), w.billable)
		d.dec(key, "usage_quantity", r.GetUsageQuantity(), w.list)
		if r.GetRecordCount() != w.records {
			d.add("%s: record_count = %d, the model has %d", key, r.GetRecordCount(), w.records)
		}
		total = add(total, w.billable)
	}
	for k, w := range want {
		if !seen[k] {
			d.add("%s: missing row (%s, %d records)", strings.Join(k[:4], "/"), txt(w.billable), w.records)
		}
	}
	if len(d.lines) == 0 {
		d.dec("total", "total", got.GetTotal(), total)
	}
	return d.err()
}

// checkProforma: the pro forma view (R1, P2–P5, P7) and, with cost, the cost
// report (P6).
func (s *sim) checkProforma(month string, cost bool) error {
	defer s.timed("checkProforma", time.Now())
	s.checks["proforma"]++
	ctx := context.Background()
	got, err := s.sys.db.ReportProforma(ctx, month, "", "", "")
	if err != nil {
		return err
	}
	want := s.m.proformaRows(month)
	d := &diff{what: "pro forma " + month}
	seen := map[rowKey]bool{}
	for _, r := range got.GetRows() {
		k := rowKey{r.GetOwnerAccountId(), r.GetBillingGroupId(), r.GetAccountId(), r.GetService(), r.GetCustomLineItemId()}
		seen[k] = true
		w := want[k]
		key := fmt.Sprintf("%s/%s/%s/%s%s", k.owner, orNone(k.group), k.account, k.service, itemSuffix(k.item))
		if w == nil {
			d.add("%s: unexpected row (list %s, pro forma %s, %d records)", key, r.GetListCost(), r.GetProformaCost(), r.GetRecordCount())
			continue
		}
		d.dec(key, "list_cost", r.GetListCost(), w.list)
		d.dec(key, "proforma_cost", r.GetProformaCost(), w.proforma)
		if r.GetRecordCount() != w.records {
			d.add("%s: record_count = %d, the model has %d", key, r.GetRecordCount(), w.records)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(want), compareRowKeys) {
		if !seen[k] {
			w := want[k]
			d.add("%s/%s/%s/%s%s: missing row (list %s, pro forma %s, %d records)", k.owner, orNone(k.group), k.account, k.service,
				itemSuffix(k.item), txt(w.list), txt(w.proforma), w.records)
		}
	}
	if err := d.err(); err != nil {
		if os.Getenv("SIM_DEBUG") != "" {
			err = fmt.Errorf("%w\n%s\n%s\n%s", err, s.debugDump(`SELECT * FROM proforma_usage WHERE month = $1`, month),
				s.debugDump(`SELECT * FROM proforma_groups`), s.debugDump(`SELECT * FROM proforma_group_accounts`))
		}
		return err
	}
	if !cost {
		return nil
	}
	report, err := s.sys.db.ReportCost(ctx, month, "")
	if err != nil {
		return err
	}
	wantCost := s.m.costRows(month)
	d = &diff{what: "cost report " + month}
	if len(report.GetRows()) != len(wantCost) {
		d.add("%d rows, the model has %d", len(report.GetRows()), len(wantCost))
	}
	billable, proforma := zero(), zero()
	for _, r := range report.GetRows() {
		k := rowKey{owner: r.GetOwnerAccountId(), group: r.GetBillingGroupId()}
		w := wantCost[k]
		key := k.owner + "/" + orNone(k.group)
		if w == nil {
			d.add("%s: unexpected row", key)
			continue
		}
		margin := sub(w.proforma, w.billable)
		d.dec(key, "billable_cost", r.GetBillableCost(), w.billable)
		d.dec(key, "proforma_cost", r.GetProformaCost(), w.proforma)
		d.dec(key, "margin", r.GetMargin(), margin)
		if p := marginPercentage(margin, w.proforma); r.GetMarginPercentage() != p {
			d.add("%s: margin_percentage = %q, the model has %q", key, r.GetMarginPercentage(), p)
		}
		billable, proforma = add(billable, w.billable), add(proforma, w.proforma)
	}
	if len(d.lines) == 0 {
		d.dec("totals", "billable_total", report.GetBillableTotal(), billable)
		d.dec("totals", "proforma_total", report.GetProformaTotal(), proforma)
		d.dec("totals", "margin_total", report.GetMarginTotal(), sub(proforma, billable))
	}
	return d.err()
}

func compareRowKeys(a, b rowKey) int {
	return strings.Compare(a.owner+a.group+a.account+a.service+a.item, b.owner+b.group+b.account+b.service+b.item)
}

func orNone(g string) string {
	if g == "" {
		return "(no group)"
	}
	return g
}

func itemSuffix(item string) string {
	if item == "" {
		return ""
	}
	return " (item " + item + ")"
}

// marginPercentage is margin / proforma × 100 rounded half away from zero to
// 2 decimals; "" when proforma is 0 (P6).
func marginPercentage(margin, proforma *apd.Decimal) string {
	if proforma.IsZero() {
		return ""
	}
	c := apd.BaseContext.WithPrecision(80)
	var q, r apd.Decimal
	if _, err := c.Quo(&q, mul(margin, dec("100")), proforma); err != nil {
		panic(err)
	}
	c.Rounding = apd.RoundHalfUp
	if _, err := c.Quantize(&r, &q, -2); err != nil {
		panic(err)
	}
	if r.IsZero() {
		r.Negative = false
	}
	return r.Text('f')
}

// checkInvoices: the invoices of month (X5, M1) with their payment state (Y3).
func (s *sim) checkInvoices(month string) error {
	defer s.timed("checkInvoices", time.Now())
	s.checks["invoices"]++
	got, err := s.sys.db.ReportInvoices(context.Background(), &billingv1.ReportInvoicesRequest{Month: month})
	if err != nil {
		return err
	}
	want := map[string]*mInvoice{}
	for _, cl := range s.m.closes {
		if cl.month == month {
			for _, inv := range cl.invoices {
				want[inv.id] = inv
			}
		}
	}
	d := &diff{what: "invoices " + month}
	seen := map[string]bool{}
	for _, r := range got.GetRows() {
		id := r.GetInvoiceId()
		seen[id] = true
		w := want[id]
		if w == nil {
			d.add("%s: unexpected invoice (payer %s, source %s, total %s %s)", id, r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetTotal(), r.GetCurrency())
			continue
		}
		if h, wh := fmt.Sprint(r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetSeller(), r.GetCurrency()),
			fmt.Sprint(w.payer, w.source, w.seller, w.currency); h != wh {
			d.add("%s: payer/source/seller/currency %s, the model has %s", id, h, wh)
		}
		d.dec(id, "subtotal", r.GetSubtotal(), w.subtotal)
		d.dec(id, "tax", r.GetTax(), w.tax)
		d.dec(id, "total", r.GetTotal(), w.total)
		d.dec(id, "paid", r.GetPaid(), w.paid)
		d.dec(id, "outstanding", r.GetOutstanding(), s.m.shownOutstanding(w))
		if r.GetStatus() != w.status() {
			d.add("%s: status %s, the model has %s", id, r.GetStatus(), w.status())
		}
		if len(r.GetLines()) != len(w.lines) {
			d.add("%s: %d lines, the model has %d", id, len(r.GetLines()), len(w.lines))
		} else {
			for i, l := range r.GetLines() {
				wl := w.lines[i]
				key := fmt.Sprintf("%s line %d", id, i+1)
				class := domain.ChargeClassUsage
				if wl.correction {
					class = domain.ChargeClassCorrection
				}
				if h, wh := fmt.Sprint(l.GetAccountId(), l.GetService(), l.GetChargeMonth(), l.GetChargeClass(), l.GetJurisdiction(), l.GetTaxReason(), l.GetUsageRecords()),
					fmt.Sprint(wl.account, wl.service, wl.charge, class, wl.jurisdiction, wl.reason, wl.records); h != wh {
					d.add("%s: %s, the model has %s", key, h, wh)
				}
				d.dec(key, "billed_cost", l.GetBilledCost(), wl.billed)
				d.dec(key, "fx_rate", l.GetFxRate(), wl.rate)
				d.dec(key, "converted", l.GetConverted(), wl.converted)
				d.dec(key, "amount", l.GetAmount(), wl.amount)
			}
		}
		if len(r.GetTaxes()) != len(w.taxes) {
			d.add("%s: %d tax entries, the model has %d", id, len(r.GetTaxes()), len(w.taxes))
		} else {
			for i, x := range r.GetTaxes() {
				wx := w.taxes[i]
				key := fmt.Sprintf("%s tax %s%s", id, wx.jurisdiction, wx.reason)
				if x.GetJurisdiction() != wx.jurisdiction || x.GetReason() != wx.reason {
					d.add("%s: jurisdiction %s %s, the model has %s %s", key, x.GetJurisdiction(), x.GetReason(), wx.jurisdiction, wx.reason)
				}
				d.dec(key, "rate", x.GetRatePercentage(), wx.rate)
				d.dec(key, "taxable", x.GetTaxable(), wx.taxable)
				d.dec(key, "tax", x.GetTax(), wx.tax)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if !seen[id] {
			d.add("%s: missing invoice (payer %s, source %s, total %s %s)", id, want[id].payer, want[id].source, txt(want[id].total), want[id].currency)
		}
	}
	return d.err()
}

// checkPayments: the payments read model of a payer (Y2, Y3): every invoice's
// (and credit note's) state, the balances per currency and per source
// organization (credit notes' remaining credit and the balance included),
// every payment with its allocations, every credit note application with its
// allocations.
func (s *sim) checkPayments(payer string) error {
	defer s.timed("checkPayments", time.Now())
	s.checks["payments"]++
	got, err := s.sys.db.ReportPayments(context.Background(), &billingv1.ReportPaymentsRequest{PayerAccountId: payer})
	if err != nil {
		return err
	}
	r := s.m.recv[payer]
	if r == nil {
		r = &mRecv{}
	}
	d := &diff{what: "payments of " + payer}
	byID := map[string]*mInvoice{}
	for _, inv := range r.invoices {
		byID[inv.id] = inv
	}
	if len(got.GetInvoices()) != len(r.invoices) {
		d.add("%d invoices, the model has %d", len(got.GetInvoices()), len(r.invoices))
	}
	for _, x := range got.GetInvoices() {
		w := byID[x.GetInvoiceId()]
		if w == nil {
			d.add("%s: unexpected invoice", x.GetInvoiceId())
			continue
		}
		d.dec(w.id, "issued", x.GetIssued(), w.total)
		d.dec(w.id, "paid", x.GetPaid(), w.paid)
		d.dec(w.id, "outstanding", x.GetOutstanding(), s.m.shownOutstanding(w))
		d.dec(w.id, "credit_applied", x.GetCreditApplied(), w.creditApplied())
		d.dec(w.id, "remaining_credit", x.GetRemainingCredit(), w.remaining())
		if x.GetStatus() != w.status() {
			d.add("%s: status %s, the model has %s", w.id, x.GetStatus(), w.status())
		}
	}
	type sums struct{ issued, paid, outstanding, unapplied, credit *apd.Decimal }
	get := func(m map[string]*sums, k string) *sums {
		if m[k] == nil {
			m[k] = &sums{zero(), zero(), zero(), zero(), zero()}
		}
		return m[k]
	}
	payerSums, sourceSums := map[string]*sums{}, map[string]*sums{}
	for _, inv := range r.invoices {
		for _, x := range []*sums{get(payerSums, inv.currency), get(sourceSums, inv.source+" "+inv.currency)} {
			x.issued, x.paid, x.outstanding = add(x.issued, inv.total), add(x.paid, inv.paid), add(x.outstanding, s.m.shownOutstanding(inv))
			x.credit = add(x.credit, inv.remaining())
		}
	}
	for _, p := range r.payments {
		x := get(payerSums, p.currency)
		x.unapplied = add(x.unapplied, p.unapplied)
	}
	if len(got.GetPayerBalances()) != len(payerSums) {
		d.add("%d payer balances, the model has %d", len(got.GetPayerBalances()), len(payerSums))
	}
	for _, b := range got.GetPayerBalances() {
		w := payerSums[b.GetCurrency()]
		key := "balance " + b.GetCurrency()
		if w == nil {
			d.add("%s: unexpected", key)
			continue
		}
		d.dec(key, "issued", b.GetIssued(), w.issued)
		d.dec(key, "paid", b.GetPaid(), w.paid)
		d.dec(key, "outstanding", b.GetOutstanding(), w.outstanding)
		d.dec(key, "unapplied_credit", b.GetUnappliedCredit(), w.unapplied)
		d.dec(key, "credit_notes", b.GetCreditNotes(), w.credit)
		d.dec(key, "balance", b.GetBalance(), sub(sub(w.outstanding, w.credit), w.unapplied))
	}
	if len(got.GetSourceBalances()) != len(sourceSums) {
		d.add("%d source balances, the model has %d", len(got.GetSourceBalances()), len(sourceSums))
	}
	for _, b := range got.GetSourceBalances() {
		key := b.GetSourceAccountId() + " " + b.GetCurrency()
		w := sourceSums[key]
		if w == nil {
			d.add("source balance %s: unexpected", key)
			continue
		}
		d.dec("source balance "+key, "issued", b.GetIssued(), w.issued)
		d.dec("source balance "+key, "paid", b.GetPaid(), w.paid)
		d.dec("source balance "+key, "outstanding", b.GetOutstanding(), w.outstanding)
		d.dec("source balance "+key, "credit_notes", b.GetCreditNotes(), w.credit)
		d.dec("source balance "+key, "balance", b.GetBalance(), sub(w.outstanding, w.credit))
	}
	if len(got.GetPayments()) != len(r.payments) {
		d.add("%d payments, the model has %d", len(got.GetPayments()), len(r.payments))
	}
	pays := map[string]*mPayment{}
	for _, p := range r.payments {
		pays[p.id] = p
	}
	for _, p := range got.GetPayments() {
		w := pays[p.GetPaymentId()]
		if w == nil {
			d.add("payment %s: unexpected", p.GetPaymentId())
			continue
		}
		key := "payment " + w.id
		d.dec(key, "amount", p.GetAmount(), w.amount)
		d.dec(key, "unapplied", p.GetUnapplied(), w.unapplied)
		d.dec(key, "refunded", p.GetRefunded(), w.refunded)
		if len(p.GetAllocations()) != len(w.allocs) {
			d.add("%s: %d allocations, the model has %d", key, len(p.GetAllocations()), len(w.allocs))
			continue
		}
		for i, a := range p.GetAllocations() {
			wa := w.allocs[i]
			if a.GetInvoiceId() != wa.invoice || a.GetBillSourceAccountId() != wa.source {
				d.add("%s allocation %d: invoice %s source %s, the model has %s %s", key, i+1, a.GetInvoiceId(), a.GetBillSourceAccountId(), wa.invoice, wa.source)
			}
			d.dec(fmt.Sprintf("%s allocation %d", key, i+1), "amount", a.GetAmount(), wa.amount)
			d.dec(fmt.Sprintf("%s allocation %d", key, i+1), "outstanding_after", a.GetOutstandingAfter(), wa.after)
		}
	}
	if len(got.GetCreditApplications()) != len(r.credits) {
		d.add("%d credit note applications, the model has %d", len(got.GetCreditApplications()), len(r.credits))
	}
	credits := map[string]*mCredit{}
	for _, c := range r.credits {
		credits[fmt.Sprintf("%s #%d", c.note, c.seq)] = c
	}
	for _, c := range got.GetCreditApplications() {
		key := fmt.Sprintf("%s #%d", c.GetCreditNoteId(), c.GetSeq())
		w := credits[key]
		if w == nil {
			d.add("credit application %s: unexpected", key)
			continue
		}
		key = "credit application " + key
		if c.GetBillSourceAccountId() != w.source || c.GetCurrency() != w.currency {
			d.add("%s: source %s %s, the model has %s %s", key, c.GetBillSourceAccountId(), c.GetCurrency(), w.source, w.currency)
		}
		d.dec(key, "amount", c.GetAmount(), w.amount)
		d.dec(key, "remaining_credit", c.GetRemainingCredit(), w.remaining)
		if len(c.GetAllocations()) != len(w.allocs) {
			d.add("%s: %d allocations, the model has %d", key, len(c.GetAllocations()), len(w.allocs))
			continue
		}
		for i, a := range c.GetAllocations() {
			wa := w.allocs[i]
			if a.GetInvoiceId() != wa.invoice || a.GetBillSourceAccountId() != wa.source {
				d.add("%s allocation %d: invoice %s source %s, the model has %s %s", key, i+1, a.GetInvoiceId(), a.GetBillSourceAccountId(), wa.invoice, wa.source)
			}
			d.dec(fmt.Sprintf("%s allocation %d", key, i+1), "amount", a.GetAmount(), wa.amount)
			d.dec(fmt.Sprintf("%s allocation %d", key, i+1), "outstanding_after", a.GetOutstandingAfter(), wa.after)
		}
	}
	return d.err()
}

// checkTransfers: the transfers read model (T3, T5).
func (s *sim) checkTransfers() error {
	defer s.timed("checkTransfers", time.Now())
	s.checks["transfers"]++
	got, err := s.sys.db.ListTransfers(context.Background(), readmodel.TransferFilter{})
	if err != nil {
		return err
	}
	d := &diff{what: "transfers"}
	if len(got) != len(s.m.xfers) {
		d.add("%d transfers, the model has %d", len(got), len(s.m.xfers))
	}
	for _, t := range got {
		w := s.m.xfers[t.GetTransferId()]
		if w == nil {
			d.add("%s: unexpected", t.GetTransferId())
			continue
		}
		end := ""
		if t.GetEndTime() != "" {
			at, err := time.Parse(time.RFC3339Nano, t.GetEndTime())
			if err != nil {
				return err
			}
			end = monthOf(at)
		}
		start, err := time.Parse(time.RFC3339Nano, t.GetStartTime())
		if err != nil {
			return err
		}
		if h, wh := fmt.Sprint(t.GetPayerAccountId(), t.GetSourceAccountId(), t.GetStatus(), monthOf(start), end, t.GetPricingPlanId()),
			fmt.Sprint(w.payer, w.source, w.status, w.start, w.end, w.plan); h != wh {
			d.add("%s: %s, the model has %s", w.id, h, wh)
		}
	}
	return d.err()
}

// checkLetters: the dead letter (U4): what is unresolved, by reason, and for
// months what was recorded and resolved there.
func (s *sim) checkLetters(months []string) error {
	defer s.timed("checkLetters", time.Now())
	s.checks["deadletters"]++
	ctx := context.Background()
	got, err := s.sys.db.ListDeadLetters(ctx, "")
	if err != nil {
		return err
	}
	d := &diff{what: "dead letters"}
	want := map[string]uint32{}
	open := 0
	for _, dl := range s.m.dls {
		if !dl.resolved {
			want[dl.reason]++
			open++
		}
	}
	if len(got.GetDeadLetters()) != open {
		d.add("%d unresolved, the model has %d", len(got.GetDeadLetters()), open)
	}
	for _, reason := range domain.UsageReasons {
		if got.GetByReason()[reason] != want[reason] {
			d.add("%s: %d unresolved, the model has %d", reason, got.GetByReason()[reason], want[reason])
		}
	}
	for _, mo := range months {
		md, err := s.sys.db.MonthDigest(ctx, mo)
		if err != nil {
			return err
		}
		var recorded, resolved int
		for _, dl := range s.m.dls {
			if dl.month == mo {
				recorded++
			}
			if dl.resolved && dl.resolvedMonth == mo {
				resolved++
			}
		}
		totals := md.GetDigests()[1].GetTotals()
		if totals["recorded"] != fmt.Sprint(recorded) || totals["resolved"] != fmt.Sprint(resolved) {
			d.add("%s: %s recorded and %s resolved, the model has %d and %d", mo, totals["recorded"], totals["resolved"], recorded, resolved)
		}
	}
	return d.err()
}

// liveDigests are billingd's QueryService.MonthDigest: the usage read models,
// then the pro forma and cost, then the invoices, tax and payments digests.
func liveDigests(ctx context.Context, db *readmodel.DB, month string) (*billingv1.MonthDigestResponse, error) {
	res, err := db.MonthDigest(ctx, month)
	if err != nil {
		return nil, err
	}
	pf, err := db.ProformaDigests(ctx, month)
	if err != nil {
		return nil, err
	}
	inv, err := db.InvoiceDigests(ctx, month)
	if err != nil {
		return nil, err
	}
	res.Digests = append(append(res.Digests, pf...), inv...)
	return res, nil
}

// checkReplay (R2): a replay of a month, up to each read model's checkpoint
// as `billctl replay --verify` does, equals the live digests byte for byte.
// Every month's usage read models (billable, dead letters) are replayed; all
// seven read models (with the pro forma, cost, invoices, tax and payments,
// each rebuilt in a scratch database) of every month when all is set, else
// of one month drawn by the seed when one is set, else of none.
func (s *sim) checkReplay(all, one bool) error {
	defer s.timed("checkReplay", time.Now())
	ctx := context.Background()
	fullMonth := addMonths(firstMonth, s.rng.IntN(3))
	if !one {
		fullMonth = ""
	}
	for mo := firstMonth; mo <= lastMonth; mo = addMonths(mo, 1) {
		live, err := liveDigests(ctx, s.sys.db, mo)
		if err != nil {
			return err
		}
		opts := projections.ReplayOptions{UpTo: live.GetCheckpoint()}
		if !all && mo != fullMonth {
			s.checks["replay usage"]++
			live.Digests = live.GetDigests()[:2]
			replay, err := projections.ReplayMonthWith(ctx, s.sys.store, mo, opts)
			if err != nil {
				return fmt.Errorf("replay %s: %w", mo, err)
			}
			if err := sameDigests("replay "+mo, replay, live); err != nil {
				return err
			}
			continue
		}
		s.checks["replay all"]++
		opts.Proforma, opts.Invoices = true, true
		for _, d := range live.GetDigests() {
			switch d.GetName() {
			case readmodel.DigestProforma:
				opts.ProformaUpTo = d.GetCheckpoint()
			case readmodel.DigestInvoices:
				opts.InvoicesUpTo = d.GetCheckpoint()
			case readmodel.DigestPayments:
				opts.PaymentsUpTo = d.GetCheckpoint()
			}
		}
		replay, err := projections.ReplayMonthWith(ctx, s.sys.store, mo, opts)
		if err != nil {
			return fmt.Errorf("replay %s: %w", mo, err)
		}
		if err := sameDigests("replay "+mo, replay, live); err != nil {
			return err
		}
	}
	return nil
}

// sameDigests compares two digest lists by name, digest, rows and totals.
func sameDigests(what string, got, want *billingv1.MonthDigestResponse) error {
	d := &diff{what: what}
	if len(got.GetDigests()) != len(want.GetDigests()) {
		d.add("%d digests, live has %d", len(got.GetDigests()), len(want.GetDigests()))
		return d.err()
	}
	for i, g := range got.GetDigests() {
		w := want.GetDigests()[i]
		if g.GetName() != w.GetName() || g.GetDigest() != w.GetDigest() || g.GetRows() != w.GetRows() || !maps.Equal(g.GetTotals(), w.GetTotals()) {
			d.add("%s: %s rows %d %v; live %s: %s rows %d %v", g.GetName(), g.GetDigest()[:12], g.GetRows(), g.GetTotals(),
				w.GetName(), w.GetDigest()[:12], w.GetRows(), w.GetTotals())
		}
	}
	return d.err()
}

// checkRebuild: projectors started from scratch on a new database, applying
// the store in small batches, reach the live digests of every month.
func (s *sim) checkRebuild(dir string) error {
	defer s.timed("checkRebuild", time.Now())
	s.checks["rebuild"]++
	db, err := readmodel.OpenSQLite(dir + "/rebuild.db")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		_ = db.Close()
	}()
	runners := s.sys.startRunners(ctx, &wg, db, projections.RunnerConfig{BatchSize: 3, Linger: -1, IdleInterval: time.Hour})
	pos, err := s.sys.store.LastPosition(context.Background())
	if err != nil {
		return err
	}
	for _, r := range runners {
		if err := r.WaitFor(ctx, pos); err != nil {
			return fmt.Errorf("rebuild: %s: %w", r.Name(), err)
		}
	}
	for mo := firstMonth; mo <= lastMonth; mo = addMonths(mo, 1) {
		live, err := liveDigests(ctx, s.sys.db, mo)
		if err != nil {
			return err
		}
		got, err := liveDigests(ctx, db, mo)
		if err != nil {
			return err
		}
		if err := sameDigests("rebuilt read models of "+mo, got, live); err != nil {
			return err
		}
	}
	return nil
}
