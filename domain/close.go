package domain

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Month close (X5, M1, U3): CloseMonth turns the usage a payer's month holds
// into invoices, one per (payer, source organization, invoice unit, seller of
// record), and marks the month closed in every usage partition so that usage
// arriving later is booked into the next open month as a correction.
//
// The decision reads the month's usage through MonthUsageReader, folding it into
// one aggregate per invoice line (memory bounded by accounts × services, not by
// records). The pipeline guards its append so that no usage booked into the
// month after the last record read can slip past the close.
//
// The whole close is one atomic append: MonthClosed, the invoices packed into
// InvoicesIssued events (an invoice too large for one event continued by
// InvoiceLinesIssued events), the UsageMonthClosed markers and the
// InvoicesPosted events, every one within CloseEventBudget bytes and all of
// them within MaxAppendEvents; a close that cannot fit is rejected
// (QUOTA_EXCEEDED) before anything is written.

// UsagePartitions is the number of usage partitions: part of the stream layout
// (billing.usage.<month>.<pp>, pp = 00..15), so a close can mark every one.
const UsagePartitions = 16

// Tax treatments of an invoice line and tax entry (X4).
const (
	TaxReasonExempt        = "EXEMPT"
	TaxReasonReverseCharge = "REVERSE_CHARGE"
)

// Charge classes of an invoice line (FOCUS ChargeClass; U3).
const (
	ChargeClassUsage      = "USAGE"
	ChargeClassCorrection = "CORRECTION"
)

// CloseEventBudget is the most bytes (proto.Size of the payload) a month close
// puts into one event: each InvoicesIssued, InvoiceLinesIssued and
// InvoicesPosted is packed up to it. (MonthClosed counts the invoices rather
// than listing them, so it takes a few dozen bytes however large the close.)
// 256 KiB is well under JetStream's default max_payload of 1 MB, which bounds
// each message of an atomic batch (the envelope, hash chain and batch headers
// add well under 1 KiB), and under KurrentDB's default maximum append size of
// 1 MiB, so no single close event can exceed either. (KurrentDB bounds a whole
// append by that size, so on KurrentDB a close of more than 1 MiB in all needs
// its MaxAppendSize raised.) It is large enough that the MaxAppendEvents
// events of one atomic append hold about 250 MB of invoices: some 600,000
// one-line invoices.
const CloseEventBudget = 256 << 10

// MaxAppendEvents is the most events one atomic append may hold: the event
// store's limit (eventstore.MaxAppendEvents, one JetStream atomic batch),
// repeated here so that the domain stays free of the store's package;
// commands' TestDomainKnowsTheStoresAppendLimit keeps the two equal.
const MaxAppendEvents = 1000

// closeFixedEvents are the events of a close besides its invoices and
// postings: MonthClosed, one UsageMonthClosed per usage partition, and the
// pipeline's CommandRecorded when the command carries a request_id (counted
// always, so the limit does not depend on it).
const closeFixedEvents = 1 + UsagePartitions + 1

// MaxCreatedInvoiceIDs is the most invoices a close lists by id in its
// command result (Created["invoice_ids"], comma-separated); a larger close
// returns invoice_count alone. The result goes back to the caller and, for a
// command with a request_id, into its CommandRecorded event, which is part of
// the close's atomic append and must stay within an event's size: a close of
// hundreds of thousands of invoices must not return (or record) megabytes of
// ids. The ids are in the invoices read model and the month stream.
const MaxCreatedInvoiceIDs = 1000

// ClosedInvoiceCount is the number of invoices a close issued: its
// invoice_count, or, for a close written before invoice_count existed (which
// lists every id and leaves the count 0), the number of its invoice_ids.
// Every reader that counts a close's invoices counts them with it, so that
// both forms read alike.
func ClosedInvoiceCount(mc *billingv1.MonthClosed) int {
	if n := mc.GetInvoiceCount(); n > 0 {
		return int(n)
	}
	return len(mc.GetInvoiceIds())
}

// MonthUsageReader is implemented by views that can stream the usage booked
// into a month (the command pipeline's view does).
type MonthUsageReader interface {
	// EachBookedUsage calls fn for every usage record booked into month (every
	// payer), in log order. A decision that uses it has its append guarded
	// against any usage booked into the month after the last record read.
	EachBookedUsage(month string, fn func(*billingv1.BookedUsage) error) error
}

// MonthClose is a payer's month as closed: folded from billing.month.<payer>.<M>.
type MonthClose struct {
	closed   *billingv1.MonthClosed
	invoices []*billingv1.Invoice
}

// Closed reports whether the month was closed.
func (c MonthClose) Closed() bool { return c.closed != nil }

// InvoiceDate is the close's invoice date (YYYY-MM-DD).
func (c MonthClose) InvoiceDate() string { return c.closed.GetInvoiceDate() }

// Invoices are the invoices issued, in order.
func (c MonthClose) Invoices() []*billingv1.Invoice { return c.invoices }

// FoldMonthClose folds a month stream. It reassembles the invoices from every
// form a close has written them in: one InvoiceIssued per invoice (closes
// written before InvoicesIssued existed), InvoicesIssued packing several, and
// InvoiceLinesIssued continuing the lines of an invoice too large for one
// event. A continuation is appended only if it names an invoice folded before
// and starts right after its last line; anything else (a repeat) is ignored.
// The events are not modified: an invoice whose lines continue is a copy.
func FoldMonthClose(events []*billingv1.Event) MonthClose {
	var c MonthClose
	index := map[string]int{} // invoice id → its place in c.invoices
	owned := map[int]bool{}   // invoices copied to take continued lines
	add := func(inv *billingv1.Invoice) {
		index[inv.GetInvoiceId()] = len(c.invoices)
		c.invoices = append(c.invoices, inv)
	}
	for _, ev := range events {
		switch p := ev.GetPayload().(type) {
		case *billingv1.Event_MonthClosed:
			c.closed = p.MonthClosed
		case *billingv1.Event_InvoiceIssued:
			add(p.InvoiceIssued.GetInvoice())
		case *billingv1.Event_InvoicesIssued:
			for _, inv := range p.InvoicesIssued.GetInvoices() {
				add(inv)
			}
		case *billingv1.Event_InvoiceLinesIssued:
			e := p.InvoiceLinesIssued
			i, ok := index[e.GetInvoiceId()]
			if !ok || int(e.GetFirstLine()) != len(c.invoices[i].GetLines())+1 {
				continue
			}
			if !owned[i] {
				c.invoices[i] = proto.Clone(c.invoices[i]).(*billingv1.Invoice)
				owned[i] = true
			}
			c.invoices[i].Lines = append(c.invoices[i].Lines, e.GetLines()...)
		}
	}
	return c
}

// packInvoices turns a close's invoices, in issue order, into its invoice
// events: InvoicesIssued events of at most budget bytes (proto.Size of the
// payload), each with as many whole invoices as fit. An invoice larger than
// budget on its own goes alone into an InvoicesIssued event with as many of
// its first lines as fit, and InvoiceLinesIssued events of at most budget
// bytes carry the rest, in line order, right after it. An event exceeds
// budget only when a single line, or an invoice without its lines, does on its
// own (at least one line goes into each event). It is pure and deterministic;
// FoldMonthClose reassembles exactly the invoices given.
func packInvoices(invoices []*billingv1.Invoice, budget int) []*billingv1.Event {
	var (
		out   []*billingv1.Event
		batch []*billingv1.Invoice
		size  int // proto.Size(&InvoicesIssued{Invoices: batch})
	)
	flush := func() {
		if len(batch) > 0 {
			out = append(out, ev(&billingv1.InvoicesIssued{Invoices: batch}))
			batch, size = nil, 0
		}
	}
	for _, inv := range invoices {
		n := embeddedSize(1, proto.Size(inv)) // InvoicesIssued.invoices = 1
		if size+n <= budget {
			batch, size = append(batch, inv), size+n
			continue
		}
		flush()
		if n <= budget {
			batch, size = append(batch, inv), n
			continue
		}
		// Too large for one event: the header, taxes, totals and the first lines
		// here, the other lines in continuations.
		lines := inv.GetLines()
		head := proto.Clone(inv).(*billingv1.Invoice)
		head.Lines = nil
		body, k := proto.Size(head), 0
		for k < len(lines) {
			ln := embeddedSize(13, proto.Size(lines[k])) // Invoice.lines = 13
			if k > 0 && embeddedSize(1, body+ln) > budget {
				break
			}
			body, k = body+ln, k+1
		}
		head.Lines = lines[:k:k]
		out = append(out, ev(&billingv1.InvoicesIssued{Invoices: []*billingv1.Invoice{head}}))
		for k < len(lines) {
			first := k
			cont := &billingv1.InvoiceLinesIssued{InvoiceId: inv.GetInvoiceId(), FirstLine: uint32(first + 1)}
			body := proto.Size(cont)
			for k < len(lines) {
				ln := embeddedSize(3, proto.Size(lines[k])) // InvoiceLinesIssued.lines = 3
				if k > first && body+ln > budget {
					break
				}
				body, k = body+ln, k+1
			}
			cont.Lines = lines[first:k:k]
			out = append(out, ev(cont))
		}
	}
	flush()
	return out
}

// packPosted turns the summaries of a close's invoices into InvoicesPosted
// events of at most budget bytes each (at least one summary each), in order.
func packPosted(payer, month string, summaries []*billingv1.InvoiceSummary, budget int) []*billingv1.Event {
	var out []*billingv1.Event
	base := proto.Size(&billingv1.InvoicesPosted{PayerAccountId: payer, Month: month})
	for i := 0; i < len(summaries); {
		first, size := i, base
		for i < len(summaries) {
			n := embeddedSize(3, proto.Size(summaries[i])) // InvoicesPosted.invoices = 3
			if i > first && size+n > budget {
				break
			}
			size, i = size+n, i+1
		}
		out = append(out, ev(&billingv1.InvoicesPosted{PayerAccountId: payer, Month: month, Invoices: summaries[first:i:i]}))
	}
	return out
}

// embeddedSize is the encoded size of a message of size n as field num of
// its parent: tag, length, bytes.
func embeddedSize(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// InvoiceID is the deterministic id of the invoice of (payer, month, source
// organization, invoice unit, seller): the same close always issues the same ids.
func InvoiceID(payer string, m Month, source, unit, seller string) string {
	sum := sha256.Sum256([]byte(source + "|" + unit + "|" + SellerSlug(seller)))
	return fmt.Sprintf("INV-%04d%02d-%s-%s", m.year, int(m.month), payer, hex.EncodeToString(sum[:])[:10])
}

// lineKey identifies one invoice line before the invoice is known.
type lineKey struct {
	source, account, service, chargeMonth, currency string
	correction                                      bool
}

// lineSum is the running total of one line's usage.
type lineSum struct {
	cost       apd.Decimal
	records    uint64
	start, end time.Time
}

// accountTax is what the close needs to know of one account.
type accountTax struct {
	settings TaxSettings
	unit     InvoiceUnit
	seller   SellerOfRecord
}

// invoiceKey groups lines into invoices (X5).
type invoiceKey struct{ source, unit, seller string }

// closeProblems collects everything missing, so one rejection names all of it.
type closeProblems struct {
	rates  []string // missing exchange or tax rates
	others []string // missing settings or sellers
}

func (p *closeProblems) add(rate bool, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	list := &p.others
	if rate {
		list = &p.rates
	}
	if !slices.Contains(*list, msg) {
		*list = append(*list, msg)
	}
}

func (p *closeProblems) err(payer string, m Month) error {
	if len(p.rates)+len(p.others) == 0 {
		return nil
	}
	code := CodeRateMissing
	if len(p.others) > 0 {
		code = CodeFailedPrecondition
	}
	all := append(slices.Clone(p.others), p.rates...)
	return Reject(code, "cannot close %s for payer %s, nothing was issued: %s", m, payer, strings.Join(all, "; "))
}

func decideCloseMonth(v View, c *billingv1.CloseMonth, env Env) (Outcome, error) {
	payer := c.GetPayerAccountId()
	if err := checkAccountID("payer_account_id", payer); err != nil {
		return Outcome{}, err
	}
	if c.GetMonth() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "month is required (YYYY-MM)")
	}
	m, err := ParseMonth(c.GetMonth())
	if err != nil {
		return Outcome{}, Reject(CodeInvalidArgument, "month: %v", err)
	}
	if _, err := loadManagementOrg(v, "payer", payer); err != nil {
		return Outcome{}, err
	}
	if end := m.AddMonths(1).Start(); env.Now.Before(end) {
		return Outcome{}, Reject(CodeMonthNotEnded, "month %s has not ended: it ends at %s and the ledger clock is at %s (X5)", m, end.Format(time.RFC3339), env.Now.Format(time.RFC3339))
	}
	prior, err := v.Events(MonthStream(payer, m.String()))
	if err != nil {
		return Outcome{}, err
	}
	if mc := FoldMonthClose(prior); mc.Closed() {
		return Outcome{}, Reject(CodeMonthAlreadyClosed, "payer %s closed %s on %s with %d invoices; a month is closed once (X5)", payer, m, mc.InvoiceDate(), len(mc.Invoices()))
	}
	reader, ok := v.(MonthUsageReader)
	if !ok {
		return Outcome{}, fmt.Errorf("close: the view cannot read a month's usage")
	}
	// Fold the month's usage of this payer into lines.
	lines := map[lineKey]*lineSum{}
	var records uint64
	err = reader.EachBookedUsage(m.String(), func(b *billingv1.BookedUsage) error {
		if b.GetPayerAccountId() != payer || b.GetBookingMonth() != m.String() {
			return nil
		}
		r := b.GetRecord()
		k := lineKey{source: b.GetSourceAccountId(), account: r.GetAccountId(), service: r.GetService(),
			chargeMonth: b.GetChargeMonth(), currency: r.GetCurrency(), correction: b.GetCorrection()}
		s := lines[k]
		if s == nil {
			s = &lineSum{}
			lines[k] = s
		}
		cost, err := ParseDecimal(r.GetBilledCost())
		if err != nil {
			return fmt.Errorf("usage %s: billed_cost: %w", r.GetUsageId(), err)
		}
		sum, err := AddDecimal(&s.cost, cost)
		if err != nil {
			return err
		}
		s.cost.Set(sum)
		s.records++
		records++
		start, end := r.GetChargePeriodStart().AsTime(), r.GetChargePeriodEnd().AsTime()
		if s.start.IsZero() || start.Before(s.start) {
			s.start = start
		}
		if end.After(s.end) {
			s.end = end
		}
		return nil
	})
	if err != nil {
		return Outcome{}, err
	}
	day := env.Now.UTC().Truncate(24 * time.Hour)
	dayText := day.Format(time.DateOnly)
	var problems closeProblems
	// What each account needs: tax settings in force (X1, X2), the payer's
	// invoice unit (X3) and the seller of record of its country (X1).
	accounts := map[string]*accountTax{}
	for k := range lines {
		if _, ok := accounts[k.account]; ok {
			continue
		}
		at := &accountTax{}
		accounts[k.account] = at
		s, _, err := EffectiveTaxSettings(v, k.account, m)
		if err != nil {
			if CodeOf(err) == "" {
				return Outcome{}, err
			}
			problems.add(false, "%s", err.(*Error).Message)
			continue
		}
		at.settings = s
		if at.unit, err = InvoiceUnitOf(v, payer, k.account); err != nil {
			return Outcome{}, err
		}
		if at.seller, err = SellerOfRecordFor(v, s.Country()); err != nil {
			return Outcome{}, err
		}
		if !at.seller.Exists() {
			problems.add(false, "no seller of record for country %s (account %s): set one with SetSellerOfRecord (X1)", s.Country(), k.account)
		}
	}
	if err := problems.err(payer, m); err != nil {
		return Outcome{}, err
	}
	// Group lines into invoices.
	groups := map[invoiceKey][]lineKey{}
	for k := range lines {
		at := accounts[k.account]
		ik := invoiceKey{source: k.source, unit: at.unit.ID(), seller: at.seller.Seller()}
		groups[ik] = append(groups[ik], k)
	}
	keys := make([]invoiceKey, 0, len(groups))
	for ik := range groups {
		keys = append(keys, ik)
	}
	slices.SortFunc(keys, func(a, b invoiceKey) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.unit, b.unit), cmp.Compare(a.seller, b.seller))
	})
	var invoices []*billingv1.Invoice
	for _, ik := range keys {
		inv, err := buildInvoice(v, payer, m, day, ik, groups[ik], lines, accounts, &problems)
		if err != nil {
			return Outcome{}, err
		}
		invoices = append(invoices, inv)
	}
	if err := problems.err(payer, m); err != nil {
		return Outcome{}, err
	}
	// MonthClosed counts the invoices; their ids are in the invoice events
	// that follow it on the month stream.
	closed := &billingv1.MonthClosed{PayerAccountId: payer, Month: m.String(), InvoiceDate: dayText, UsageRecords: records,
		InvoiceCount: uint32(len(invoices))}
	var summaries []*billingv1.InvoiceSummary
	lineCount := 0
	for _, inv := range invoices {
		summaries = append(summaries, &billingv1.InvoiceSummary{InvoiceId: inv.GetInvoiceId(), Month: m.String(),
			SourceAccountId: inv.GetSourceAccountId(), InvoiceUnitId: inv.GetInvoiceUnitId(), Seller: inv.GetSeller(),
			Currency: inv.GetCurrency(), Total: inv.GetTotal()})
		lineCount += len(inv.GetLines())
	}
	// One atomic append (X5): every event within the byte budget, all of them
	// within the store's limit, or nothing at all.
	budget := cmp.Or(env.Policy.CloseEventBytes, CloseEventBudget)
	issued := packInvoices(invoices, budget)
	posted := packPosted(payer, m.String(), summaries, budget)
	if need := closeFixedEvents + len(issued) + len(posted); need > MaxAppendEvents {
		return Outcome{}, Reject(CodeQuotaExceeded, "closing %s for payer %s would issue %d invoices (%d lines) in %d events (%d of invoices, %d postings, %d others), more than the %d events of one atomic append; nothing was issued", m, payer, len(invoices), lineCount, need, len(issued), len(posted), closeFixedEvents, MaxAppendEvents)
	}
	changes := []Change{{Stream: MonthStream(payer, m.String()), Events: append([]*billingv1.Event{ev(closed)}, issued...)}}
	for pp := uint32(0); pp < UsagePartitions; pp++ {
		changes = append(changes, Change{Stream: UsageStream(m.String(), pp), Events: one(ev(&billingv1.UsageMonthClosed{PayerAccountId: payer, Month: m.String()}))})
	}
	if len(posted) > 0 {
		changes = append(changes, Change{Stream: ReceivableStream(payer), Events: posted})
	}
	created := map[string]string{"month": m.String(), "invoice_count": fmt.Sprint(len(invoices))}
	if len(invoices) <= MaxCreatedInvoiceIDs {
		// The ids only for a close of at most MaxCreatedInvoiceIDs invoices, so
		// that a huge close does not return (or record) megabytes of them.
		ids := make([]string, len(invoices))
		for i, inv := range invoices {
			ids[i] = inv.GetInvoiceId()
		}
		created["invoice_ids"] = strings.Join(ids, ",")
	}
	return Outcome{AggregateID: payer, Changes: changes, Created: created}, nil
}

// buildInvoice prices one invoice: FX before rounding, each line rounded once,
// tax once per jurisdiction and treatment (M1, X4).
func buildInvoice(v View, payer string, m Month, day time.Time, ik invoiceKey, keys []lineKey, lines map[lineKey]*lineSum, accounts map[string]*accountTax, problems *closeProblems) (*billingv1.Invoice, error) {
	slices.SortFunc(keys, func(a, b lineKey) int {
		return cmp.Or(cmp.Compare(a.account, b.account), cmp.Compare(a.service, b.service), cmpBool(a.correction, b.correction),
			cmp.Compare(a.chargeMonth, b.chargeMonth), cmp.Compare(a.currency, b.currency))
	})
	first := accounts[keys[0].account]
	seller := first.seller
	currency, method := seller.DefaultCurrency(), ""
	profile, err := PaymentProfileFor(v, payer, seller.Seller())
	if err != nil {
		return nil, err
	}
	if profile.Exists() {
		currency, method = profile.Currency(), profile.Method()
	}
	dayText := day.Format(time.DateOnly)
	inv := &billingv1.Invoice{
		InvoiceId: InvoiceID(payer, m, ik.source, ik.unit, ik.seller), PayerAccountId: payer, Month: m.String(),
		SourceAccountId: ik.source, InvoiceUnitId: ik.unit, Seller: seller.Seller(), Currency: currency,
		InvoiceDate: dayText, PaymentMethod: method, ReceiverAccountId: ik.source,
	}
	if u := first.unit; u.Exists() {
		inv.InvoiceUnitName, inv.ReceiverAccountId = u.Name(), u.ReceiverAccountID()
	}
	billTo := first.settings
	if s, _, err := EffectiveTaxSettings(v, inv.GetReceiverAccountId(), m); err == nil {
		billTo = s
	}
	inv.BillToLegalName, inv.BillToTaxRegistrationNumber = billTo.LegalName(), billTo.TaxRegistrationNumber()

	type taxKey struct{ jurisdiction, reason string }
	taxable := map[taxKey]*apd.Decimal{}
	subtotal := apd.New(0, 0)
	type fx struct {
		rate      *apd.Decimal
		effective string
		ok        bool
	}
	rates := map[string]fx{} // usage currency → its rate into the invoice currency
	for i, k := range keys {
		s, at := lines[k], accounts[k.account]
		r, seen := rates[k.currency]
		if !seen {
			var err error
			if r.rate, r.effective, r.ok, err = ExchangeRateOn(v, k.currency, currency, day); err != nil {
				return nil, err
			}
			rates[k.currency] = r
		}
		if !r.ok {
			problems.add(true, "no exchange rate %s→%s in force on %s: set one with SetExchangeRate (M1)", k.currency, currency, dayText)
			continue
		}
		rate, fxDate := r.rate, r.effective
		converted, err := ConvertFX(&s.cost, rate)
		if err != nil {
			return nil, err
		}
		amount, err := RoundHalfUp(converted, currency)
		if err != nil {
			return nil, err
		}
		class := ChargeClassUsage
		if k.correction {
			class = ChargeClassCorrection
		}
		tk := taxKey{jurisdiction: at.settings.Jurisdiction()}
		if at.settings.Exempt() {
			tk.reason = TaxReasonExempt
		}
		inv.Lines = append(inv.Lines, &billingv1.InvoiceLine{
			LineNumber: uint32(i + 1), AccountId: k.account, Service: k.service, ChargeMonth: k.chargeMonth, ChargeClass: class,
			UsageCurrency: k.currency, BilledCost: CanonicalDecimal(&s.cost), FxRate: CanonicalDecimal(rate), FxEffectiveDate: fxDate,
			Converted: CanonicalDecimal(converted), Amount: amount.Text('f'), Jurisdiction: tk.jurisdiction, TaxReason: tk.reason,
			UsageRecords: s.records, ChargePeriodStart: timestamppb.New(s.start), ChargePeriodEnd: timestamppb.New(s.end),
		})
		if subtotal, err = AddDecimal(subtotal, amount); err != nil {
			return nil, err
		}
		t := taxable[tk]
		if t == nil {
			t = apd.New(0, 0)
		}
		if taxable[tk], err = AddDecimal(t, amount); err != nil {
			return nil, err
		}
	}
	tks := make([]taxKey, 0, len(taxable))
	for tk := range taxable {
		tks = append(tks, tk)
	}
	slices.SortFunc(tks, func(a, b taxKey) int {
		return cmp.Or(cmp.Compare(a.jurisdiction, b.jurisdiction), cmp.Compare(a.reason, b.reason))
	})
	totalTax := apd.New(0, 0)
	for _, tk := range tks {
		entry, err := taxEntry(v, tk.jurisdiction, tk.reason, taxable[tk], currency, day, problems)
		if err != nil || entry == nil {
			if err != nil {
				return nil, err
			}
			continue
		}
		tax, _ := ParseDecimal(entry.GetTax())
		if totalTax, err = AddDecimal(totalTax, tax); err != nil {
			return nil, err
		}
		inv.Taxes = append(inv.Taxes, entry)
	}
	total, err := AddDecimal(subtotal, totalTax)
	if err != nil {
		return nil, err
	}
	for _, x := range []struct {
		dst *string
		d   *apd.Decimal
	}{{&inv.Subtotal, subtotal}, {&inv.Tax, totalTax}, {&inv.Total, total}} {
		r, err := RoundHalfUp(x.d, currency) // exact: sums of rounded amounts; fixes the rendering
		if err != nil {
			return nil, err
		}
		*x.dst = r.Text('f')
	}
	return inv, nil
}

// taxEntry computes the tax of one jurisdiction and treatment: exemption and
// reverse charge give 0 with the reason (X4); otherwise the rate in force on the
// invoice date (of the jurisdiction, else of its country) × taxable, rounded
// half-up once (M1). A missing rate is added to problems (nil entry).
func taxEntry(v View, jurisdiction, reason string, taxable *apd.Decimal, currency string, day time.Time, problems *closeProblems) (*billingv1.InvoiceTax, error) {
	zero, err := RoundHalfUp(apd.New(0, 0), currency)
	if err != nil {
		return nil, err
	}
	taxableR, err := RoundHalfUp(taxable, currency)
	if err != nil {
		return nil, err
	}
	entry := &billingv1.InvoiceTax{Jurisdiction: jurisdiction, Reason: reason, RatePercentage: "0", Taxable: taxableR.Text('f'), Tax: zero.Text('f')}
	if reason == TaxReasonExempt {
		return entry, nil
	}
	rate, ok, err := TaxRateOn(v, jurisdiction, day)
	if err != nil {
		return nil, err
	}
	if !ok {
		if country, _, found := strings.Cut(jurisdiction, "-"); found {
			if rate, ok, err = TaxRateOn(v, country, day); err != nil {
				return nil, err
			}
		}
	}
	if !ok {
		problems.add(true, "no tax rate for %s in force on %s: set one with SetTaxRate (X4)", jurisdiction, day.Format(time.DateOnly))
		return nil, nil
	}
	entry.RateEffectiveFrom = rate.EffectiveFrom()
	if rate.ReverseCharge() {
		entry.Reason = TaxReasonReverseCharge
		return entry, nil
	}
	pct, err := ParseDecimal(rate.Percentage())
	if err != nil {
		return nil, err
	}
	pct.Exponent -= 2 // percent → fraction, exactly
	raw, err := mulDecimal(taxable, pct)
	if err != nil {
		return nil, err
	}
	tax, err := RoundHalfUp(raw, currency)
	if err != nil {
		return nil, err
	}
	entry.RatePercentage, entry.Tax = rate.Percentage(), tax.Text('f')
	return entry, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
