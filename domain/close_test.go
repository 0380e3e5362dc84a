package domain

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// packInvoice is an invoice of n lines (n < 16384) whose lines all encode to
// the same size (fixed-width ids and amounts, lines 1–127, whose number takes
// one byte less, one character longer), so that the split points of the
// packing can be computed by hand.
func packInvoice(id string, n int) *billingv1.Invoice {
	inv := &billingv1.Invoice{
		InvoiceId: id, PayerAccountId: "111111111111", Month: "2026-09", SourceAccountId: "222222222222",
		ReceiverAccountId: "222222222222", Seller: "Amazon Web Services, Inc.", Currency: "USD", InvoiceDate: "2026-10-02",
		BillToLegalName: "Partner Inc", PaymentMethod: "CARD",
		Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "US-WA", RatePercentage: "10.25", RateEffectiveFrom: "2026-01-01", Taxable: "1.00", Tax: "0.10"}},
		Subtotal: "1.00", Tax: "0.10", Total: "1.10",
	}
	start := timestamppb.New(at("2026-09-01T00:00:00Z"))
	end := timestamppb.New(at("2026-09-02T00:00:00Z"))
	for i := 0; i < n; i++ {
		service := fmt.Sprintf("svc-%06d", i)
		if i+1 < 128 {
			service += "-" // the line number takes one varint byte less
		}
		inv.Lines = append(inv.Lines, &billingv1.InvoiceLine{
			LineNumber: uint32(i + 1), AccountId: fmt.Sprintf("3%011d", i), Service: service,
			ChargeMonth: "2026-09", ChargeClass: ChargeClassUsage, UsageCurrency: "USD", BilledCost: "1.0000", FxRate: "1",
			Converted: "1.0000", Amount: "1.00", Jurisdiction: "US-WA", UsageRecords: 1, ChargePeriodStart: start, ChargePeriodEnd: end,
		})
	}
	return inv
}

// packed describes an event of a close's invoices: "I" (InvoicesIssued,
// with its invoices' ids and line counts) or "L" (InvoiceLinesIssued, with
// its first line and line count).
func packed(evs []*billingv1.Event) []string {
	var out []string
	for _, e := range evs {
		switch p := e.GetPayload().(type) {
		case *billingv1.Event_InvoicesIssued:
			s := "I"
			for _, inv := range p.InvoicesIssued.GetInvoices() {
				s += fmt.Sprintf(" %s:%d", inv.GetInvoiceId(), len(inv.GetLines()))
			}
			out = append(out, s)
		case *billingv1.Event_InvoiceLinesIssued:
			l := p.InvoiceLinesIssued
			out = append(out, fmt.Sprintf("L %s@%d:%d", l.GetInvoiceId(), l.GetFirstLine(), len(l.GetLines())))
		default:
			out = append(out, fmt.Sprintf("? %T", p))
		}
	}
	return out
}

// payloadSize is proto.Size of an event's payload message.
func payloadSize(e *billingv1.Event) int {
	switch p := e.GetPayload().(type) {
	case *billingv1.Event_InvoicesIssued:
		return proto.Size(p.InvoicesIssued)
	case *billingv1.Event_InvoiceLinesIssued:
		return proto.Size(p.InvoiceLinesIssued)
	case *billingv1.Event_InvoicesPosted:
		return proto.Size(p.InvoicesPosted)
	}
	return proto.Size(e)
}

// reassembled folds a close made of MonthClosed and evs, as every reader of
// the month stream does, and returns its invoices.
func reassembled(evs []*billingv1.Event) []*billingv1.Invoice {
	all := append([]*billingv1.Event{ev(&billingv1.MonthClosed{PayerAccountId: "111111111111", Month: "2026-09"})}, evs...)
	return FoldMonthClose(all).Invoices()
}

func sameInvoices(t *testing.T, what string, got, want []*billingv1.Invoice) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d invoices, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: invoice %d (%s, %d lines) differs from the one issued (%s, %d lines)", what, i,
				got[i].GetInvoiceId(), len(got[i].GetLines()), want[i].GetInvoiceId(), len(want[i].GetLines()))
		}
	}
}

// TestX5_PackInvoicesFillsEventsUpToTheBudgetSplitsLinesAndReassemblesExactly:
// whole invoices share an InvoicesIssued event up to the byte budget and not a
// byte beyond; an invoice over the budget on its own is split into its first
// lines and InvoiceLinesIssued continuations at the numbers computed by hand;
// FoldMonthClose gives back exactly the invoices issued (proto.Equal), in order,
// and neither the invoices nor the events are modified by packing or folding.
func TestX5_PackInvoicesFillsEventsUpToTheBudgetSplitsLinesAndReassemblesExactly(t *testing.T) {
	a, b, c := packInvoice("INV-A", 3), packInvoice("INV-B", 5), packInvoice("INV-C", 2)
	sa, sb := embeddedSize(1, proto.Size(a)), embeddedSize(1, proto.Size(b))

	t.Run("two invoices exactly at the budget share one event", func(t *testing.T) {
		evs := packInvoices([]*billingv1.Invoice{a, b}, sa+sb)
		if got := fmt.Sprint(packed(evs)); got != "[I INV-A:3 INV-B:5]" {
			t.Fatalf("events %s", got)
		}
		if n := payloadSize(evs[0]); n != sa+sb {
			t.Fatalf("payload %d bytes, want exactly the budget %d", n, sa+sb)
		}
		sameInvoices(t, "reassembled", reassembled(evs), []*billingv1.Invoice{a, b})
	})
	t.Run("one byte under the budget they take two", func(t *testing.T) {
		evs := packInvoices([]*billingv1.Invoice{a, b}, sa+sb-1)
		if got := fmt.Sprint(packed(evs)); got != "[I INV-A:3 I INV-B:5]" {
			t.Fatalf("events %s", got)
		}
		sameInvoices(t, "reassembled", reassembled(evs), []*billingv1.Invoice{a, b})
	})
	t.Run("an invoice exactly at the budget stays whole", func(t *testing.T) {
		evs := packInvoices([]*billingv1.Invoice{b}, sb)
		if got := fmt.Sprint(packed(evs)); got != "[I INV-B:5]" {
			t.Fatalf("events %s", got)
		}
	})
	t.Run("one byte over the budget its last line continues", func(t *testing.T) {
		evs := packInvoices([]*billingv1.Invoice{b}, sb-1)
		if got := fmt.Sprint(packed(evs)); got != "[I INV-B:4 L INV-B@5:1]" {
			t.Fatalf("events %s", got)
		}
		cont := evs[1].GetInvoiceLinesIssued()
		if cont.GetLines()[0].GetLineNumber() != 5 || !proto.Equal(cont.GetLines()[0], b.GetLines()[4]) {
			t.Fatalf("continuation carries %v, want line 5", cont.GetLines())
		}
		head := evs[0].GetInvoicesIssued().GetInvoices()[0]
		if head.GetTotal() != b.GetTotal() || len(head.GetTaxes()) != 1 {
			t.Fatalf("the first event must carry the header, taxes and totals: %v", head)
		}
		sameInvoices(t, "reassembled", reassembled(evs), []*billingv1.Invoice{b})
	})

	t.Run("a large invoice splits at the hand-computed lines, between small ones", func(t *testing.T) {
		const n, budget = 1000, 8 << 10
		big := packInvoice("INV-BIG", n)
		line := embeddedSize(13, proto.Size(big.GetLines()[0]))
		for _, l := range big.GetLines() {
			if embeddedSize(13, proto.Size(l)) != line || embeddedSize(3, proto.Size(l)) != line {
				t.Fatalf("line %d encodes to another size", l.GetLineNumber())
			}
		}
		head := proto.Clone(big).(*billingv1.Invoice)
		head.Lines = nil
		// InvoicesIssued{invoices: [head + k lines]} = 1 tag byte + 2 length
		// bytes (the body is under 16 KiB) + body; InvoiceLinesIssued = the id
		// (tag, length, 7 bytes) + first_line (tag, varint) + m lines.
		want := []string{"I INV-A:3"}
		k := (budget - 3 - proto.Size(head)) / line
		want = append(want, fmt.Sprintf("I INV-BIG:%d", k))
		for first := k + 1; first <= n; {
			m := (budget - (2 + len("INV-BIG")) - (1 + varintLen(first))) / line
			m = min(m, n-first+1)
			want = append(want, fmt.Sprintf("L INV-BIG@%d:%d", first, m))
			first += m
		}
		want = append(want, "I INV-B:5 INV-C:2")
		before := []*billingv1.Invoice{proto.Clone(a).(*billingv1.Invoice), proto.Clone(big).(*billingv1.Invoice),
			proto.Clone(b).(*billingv1.Invoice), proto.Clone(c).(*billingv1.Invoice)}

		evs := packInvoices([]*billingv1.Invoice{a, big, b, c}, budget)
		if got, w := fmt.Sprint(packed(evs)), fmt.Sprint(want); got != w {
			t.Fatalf("events\n%s\nwant\n%s", got, w)
		}
		t.Logf("%d lines of %d bytes: %d in the first event, then %d continuations (%d events in all)", n, line, k, len(want)-3, len(evs))
		next := 1
		for i, e := range evs {
			if s := payloadSize(e); s > budget {
				t.Fatalf("event %d: %d bytes, over the budget of %d", i, s, budget)
			}
			if l := e.GetInvoiceLinesIssued(); l != nil {
				// Full: one more line would not have fit (except the last).
				if s := payloadSize(e); l.GetFirstLine()+uint32(len(l.GetLines())) <= n && s+line <= budget {
					t.Fatalf("event %d: %d bytes, another line of %d would have fit", i, s, line)
				}
				for j, x := range l.GetLines() {
					if x.GetLineNumber() != l.GetFirstLine()+uint32(j) {
						t.Fatalf("event %d: line %d numbered %d", i, j, x.GetLineNumber())
					}
				}
				if int(l.GetFirstLine()) != next {
					t.Fatalf("event %d starts at line %d, want %d", i, l.GetFirstLine(), next)
				}
				next += len(l.GetLines())
			} else if inv := e.GetInvoicesIssued().GetInvoices(); inv[0].GetInvoiceId() == "INV-BIG" {
				next = len(inv[0].GetLines()) + 1
			}
		}
		if next != n+1 {
			t.Fatalf("lines end at %d, want %d", next-1, n)
		}
		sameInvoices(t, "reassembled", reassembled(evs), before)
		sameInvoices(t, "the invoices after packing", []*billingv1.Invoice{a, big, b, c}, before)
		// Folding is pure: the events are unchanged, so a second fold agrees.
		sameInvoices(t, "reassembled again", reassembled(evs), before)
		if got := len(evs[1].GetInvoicesIssued().GetInvoices()[0].GetLines()); got != k {
			t.Fatalf("folding changed the first event: %d lines, want %d", got, k)
		}
	})

	t.Run("closes written with one InvoiceIssued per invoice read the same", func(t *testing.T) {
		big := packInvoice("INV-BIG", 300)
		var old []*billingv1.Event
		for _, inv := range []*billingv1.Invoice{a, big, c} {
			old = append(old, ev(&billingv1.InvoiceIssued{Invoice: inv}))
		}
		sameInvoices(t, "old and new", reassembled(old), reassembled(packInvoices([]*billingv1.Invoice{a, big, c}, 4<<10)))
	})

	t.Run("a repeated or unknown continuation is ignored", func(t *testing.T) {
		evs := packInvoices([]*billingv1.Invoice{b}, sb-1)
		evs = append(evs, evs[1], ev(&billingv1.InvoiceLinesIssued{InvoiceId: "INV-X", FirstLine: 1, Lines: b.GetLines()[:1]}))
		sameInvoices(t, "reassembled", reassembled(evs), []*billingv1.Invoice{b})
	})
}

func varintLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// TestX5_PackPostedKeepsEveryPostingWithinTheBudgetInOrder: the summaries of
// a close's invoices are posted in InvoicesPosted events of at most the
// budget, in issue order, each as full as the budget allows.
func TestX5_PackPostedKeepsEveryPostingWithinTheBudgetInOrder(t *testing.T) {
	var sums []*billingv1.InvoiceSummary
	for i := 0; i < 100; i++ {
		sums = append(sums, &billingv1.InvoiceSummary{InvoiceId: fmt.Sprintf("INV-202609-111111111111-%010d", i), Month: "2026-09",
			SourceAccountId: "222222222222", Seller: "Amazon Web Services, Inc.", Currency: "USD", Total: "1234.56"})
	}
	one := embeddedSize(3, proto.Size(sums[0]))
	base := proto.Size(&billingv1.InvoicesPosted{PayerAccountId: "111111111111", Month: "2026-09"})
	budget := base + 30*one // exactly 30 per event
	evs := packPosted("111111111111", "2026-09", sums, budget)
	var counts []int
	var all []*billingv1.InvoiceSummary
	for _, e := range evs {
		p := e.GetInvoicesPosted()
		if p.GetPayerAccountId() != "111111111111" || p.GetMonth() != "2026-09" || proto.Size(p) > budget {
			t.Fatalf("posting %v of %d bytes", p.GetPayerAccountId(), proto.Size(p))
		}
		counts = append(counts, len(p.GetInvoices()))
		all = append(all, p.GetInvoices()...)
	}
	if fmt.Sprint(counts) != "[30 30 30 10]" {
		t.Fatalf("summaries per posting %v, want [30 30 30 10]", counts)
	}
	for i := range sums {
		if !proto.Equal(all[i], sums[i]) {
			t.Fatalf("summary %d out of order", i)
		}
	}
	if got := packPosted("111111111111", "2026-09", sums, budget-1); len(got) != 4 || len(got[0].GetInvoicesPosted().GetInvoices()) != 29 {
		t.Fatalf("one byte less: %d postings, the first with %d", len(got), len(got[0].GetInvoicesPosted().GetInvoices()))
	}
}

// TestX5_FoldOrgOfADistributorIsLinearAndEvolveOrgStaysPure: a month close
// folds the payer's organization for every account it invoices, so a payer of
// thousands of sources must fold in linear time (FoldOrg owns what it builds);
// EvolveOrg still never changes the organization it is given.
func TestX5_FoldOrgOfADistributorIsLinearAndEvolveOrgStaysPure(t *testing.T) {
	link := func(i int, state billingv1.TransferLinkState) *billingv1.TransferLink {
		return &billingv1.TransferLink{TransferId: fmt.Sprintf("rt-%d", i), SourceAccountId: fmt.Sprintf("5%011d", i),
			PayerAccountId: "111111111111", StartTime: timestamppb.New(at("2026-09-01T00:00:00Z")), State: state}
	}
	evs := []*billingv1.Event{NewEvent(&billingv1.OrganizationRegistered{ManagementAccountId: "111111111111", Name: "P"})}
	const n = 5000
	for i := 0; i < n; i++ {
		evs = append(evs,
			NewEvent(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: link(i, billingv1.TransferLinkState_TRANSFER_LINK_STATE_REQUESTED)}),
			NewEvent(&billingv1.TransferLinkChanged{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: link(i, billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED)}),
			NewEvent(&billingv1.AccountAdded{ManagementAccountId: "111111111111", AccountId: fmt.Sprintf("6%011d", i)}))
	}
	now := at("2026-10-01T00:00:00Z")
	o := FoldOrg(evs) // quadratic, this took seconds; linear, milliseconds
	if got := len(o.LiveSourceLinks(now)); got != n || len(o.Accounts()) != n+1 {
		t.Fatalf("%d live sources and %d accounts, want %d and %d", got, len(o.Accounts()), n, n+1)
	}
	next := EvolveOrg(o, NewEvent(&billingv1.TransferLinkOpened{Role: billingv1.LinkRole_LINK_ROLE_PAYER, Link: link(n, billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED)}))
	next = EvolveOrg(next, NewEvent(&billingv1.AccountAdded{ManagementAccountId: "111111111111", AccountId: "699999999999"}))
	if len(next.LiveSourceLinks(now)) != n+1 || len(next.Accounts()) != n+2 {
		t.Fatalf("evolved: %d live sources, %d accounts", len(next.LiveSourceLinks(now)), len(next.Accounts()))
	}
	if len(o.LiveSourceLinks(now)) != n || len(o.Accounts()) != n+1 {
		t.Fatalf("EvolveOrg changed the organization it was given: %d live sources, %d accounts", len(o.LiveSourceLinks(now)), len(o.Accounts()))
	}
}

// TestX5_ClosedInvoiceCountReadsBothFormsOfMonthClosed: closes count their
// invoices in invoice_count; closes written before it list their ids instead
// (and carry no count). Both give the number of invoices issued.
func TestX5_ClosedInvoiceCountReadsBothFormsOfMonthClosed(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		mc   *billingv1.MonthClosed
		want int
	}{
		"counted":                 {&billingv1.MonthClosed{InvoiceCount: 8000}, 8000},
		"listed (an older close)": {&billingv1.MonthClosed{InvoiceIds: []string{"INV-1", "INV-2", "INV-3"}}, 3},
		"no invoices":             {&billingv1.MonthClosed{}, 0},
		"nil":                     {nil, 0},
	} {
		if got := ClosedInvoiceCount(c.mc); got != c.want {
			t.Errorf("%s: %d invoices, want %d", name, got, c.want)
		}
	}
}

// closeView is the scenario's world that also serves a month's booked usage
// (MonthUsageReader), as the pipeline's view does for a close.
type closeView struct {
	world
	usage []*billingv1.BookedUsage
}

func (v closeView) EachBookedUsage(month string, fn func(*billingv1.BookedUsage) error) error {
	for _, b := range v.usage {
		if b.GetBookingMonth() == month {
			if err := fn(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestX5_CloseOf8000InvoicesGoesBeyondTheOldMonthClosedLimit: MonthClosed
// used to list every invoice id within CloseEventBudget, which held a close
// to about 7,280 invoices; it now counts them. Payer P's September holds one
// usage record of 1.005 USD for each of 8,000 source organizations, served
// to the decision as booked (the view reads them as the pipeline's does); the
// sources are registered with tax settings of their own in US-WA at 10.25 %
// (rather than transferred, which keeps the setup linear and fast under
// -race; commands' large-close tests go through transfers). The close issues
// 8,000 invoices of one line of 1.01, tax 0.10, total 1.11, all encoding to
// the same size: the events are computed by hand, k invoices per
// InvoicesIssued and j summaries per InvoicesPosted, the most that fit the
// budget, plus MonthClosed and 16 partition markers. MonthClosed says
// invoice_count 8000 and lists no id; FoldMonthClose reassembles the 8,000
// invoices; the result carries invoice_count, and invoice_ids only up to
// MaxCreatedInvoiceIDs invoices (1,000 do, 1,001 do not).
func TestX5_CloseOf8000InvoicesGoesBeyondTheOldMonthClosedLimit(t *testing.T) {
	t.Parallel()
	const (
		n      = 8000
		payer  = "111111111111"
		seller = "Amazon Web Services, Inc."
	)
	s := given(t).Orgs(payer).Do(
		&billingv1.SetSellerOfRecord{Country: "US", Seller: seller, DefaultCurrency: "USD"},
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "10.25", EffectiveFrom: "2026-01-01"},
		&billingv1.SetPaymentProfile{PayerAccountId: payer, Seller: seller, Currency: "USD", PaymentMethod: "CARD"},
	)
	sources := make([]string, n)
	usage := make([]*billingv1.BookedUsage, n)
	start, end := timestamppb.New(at("2026-09-10T00:00:00Z")), timestamppb.New(at("2026-09-10T01:00:00Z"))
	for i := range sources {
		src := fmt.Sprintf("5%011d", i+1)
		sources[i] = src
		s.Orgs(src).Do(&billingv1.SetTaxSettings{AccountId: src, LegalName: "Source " + src, Country: "US", Region: "WA"})
		usage[i] = &billingv1.BookedUsage{ChargeMonth: "2026-09", BookingMonth: "2026-09", PayerAccountId: payer,
			SourceAccountId: src, DirectPayerAccountId: payer, Record: &billingv1.UsageRecord{
				UsageId: fmt.Sprintf("u-%d", i), AccountId: src, Service: "AmazonEC2", Currency: "USD", BilledCost: "1.005",
				ChargePeriodStart: start, ChargePeriodEnd: end}}
	}
	env := Env{Now: at("2026-10-02T09:30:00Z"), Policy: DefaultPolicy}
	closeOf := func(k int) Outcome {
		t.Helper()
		out, err := Decide(closeView{world: s.w, usage: usage[:k]}, &billingv1.CloseMonth{PayerAccountId: payer, Month: "2026-09"}, env)
		if err != nil {
			t.Fatalf("close of %d invoices: %v", k, err)
		}
		return out
	}
	out := closeOf(n)

	// The events: the month stream, 16 markers, the receivable.
	var month, posted []*billingv1.Event
	events := 0
	for _, ch := range out.Changes {
		events += len(ch.Events)
		switch ch.Stream {
		case MonthStream(payer, "2026-09"):
			month = ch.Events
		case ReceivableStream(payer):
			posted = ch.Events
		}
	}
	mc := month[0].GetMonthClosed()
	if mc.GetInvoiceCount() != n || len(mc.GetInvoiceIds()) != 0 || ClosedInvoiceCount(mc) != n || proto.Size(mc) > 64 {
		t.Fatalf("MonthClosed %v (%d bytes), want invoice_count %d and no ids", mc, proto.Size(mc), n)
	}
	invs := FoldMonthClose(month).Invoices()
	if len(invs) != n {
		t.Fatalf("%d invoices folded, want %d", len(invs), n)
	}
	m, _ := ParseMonth("2026-09")
	size := proto.Size(invs[0])
	for i, inv := range invs {
		got := fmt.Sprint(inv.GetInvoiceId(), " ", inv.GetSourceAccountId(), " ", len(inv.GetLines()), " ", inv.GetLines()[0].GetAmount(),
			" ", inv.GetSubtotal(), " ", inv.GetTax(), " ", inv.GetTotal(), " ", proto.Size(inv))
		if w := fmt.Sprint(InvoiceID(payer, m, sources[i], "", seller), " ", sources[i], " 1 1.01 1.01 0.10 1.11 ", size); got != w {
			t.Fatalf("invoice %d: %s, want %s", i, got, w)
		}
	}
	// By hand: each InvoicesIssued and each InvoicesPosted as full as the
	// budget allows.
	perIssued := CloseEventBudget / embeddedSize(1, size) // InvoicesIssued.invoices = 1
	summary := proto.Size(&billingv1.InvoiceSummary{InvoiceId: invs[0].GetInvoiceId(), Month: "2026-09", SourceAccountId: sources[0],
		Seller: seller, Currency: "USD", Total: "1.11"})
	base := proto.Size(&billingv1.InvoicesPosted{PayerAccountId: payer, Month: "2026-09"})
	perPosted := (CloseEventBudget - base) / embeddedSize(3, summary) // InvoicesPosted.invoices = 3
	issued, postings := (n+perIssued-1)/perIssued, (n+perPosted-1)/perPosted
	t.Logf("close of %d invoices: %d events; an invoice takes %d bytes (%d per InvoicesIssued: %d events), a summary %d (%d per InvoicesPosted: %d events)",
		n, events, size, perIssued, issued, summary, perPosted, postings)
	if issued != 10 || postings != 4 || events != 31 || events != 1+issued+UsagePartitions+postings {
		t.Fatalf("%d events, want 31 = MonthClosed + %d InvoicesIssued + %d markers + %d InvoicesPosted (10 and 4 by hand)",
			events, issued, UsagePartitions, postings)
	}
	if len(month) != 1+issued || len(posted) != postings || len(out.Changes) != 1+UsagePartitions+1 {
		t.Fatalf("month stream %d events, receivable %d, %d streams", len(month), len(posted), len(out.Changes))
	}
	for i, e := range month[1:] {
		if got, want := len(e.GetInvoicesIssued().GetInvoices()), min(perIssued, n-i*perIssued); got != want {
			t.Fatalf("month stream event %d: %d invoices (%T), want an InvoicesIssued of %d", i+2, got, e.GetPayload(), want)
		}
	}
	for i, e := range posted {
		if got, want := len(e.GetInvoicesPosted().GetInvoices()), min(perPosted, n-i*perPosted); got != want {
			t.Fatalf("posting %d: %d summaries, want %d", i+1, got, want)
		}
	}

	// The result: invoice_count always, invoice_ids up to MaxCreatedInvoiceIDs.
	if c := out.Created; c["invoice_count"] != "8000" || len(c) != 2 {
		t.Fatalf("created %v, want month and invoice_count 8000 without invoice_ids", c)
	}
	if c := closeOf(MaxCreatedInvoiceIDs + 1).Created; c["invoice_count"] != "1001" || len(c) != 2 {
		t.Fatalf("created %v, want month and invoice_count 1001 without invoice_ids", c)
	}
	c := closeOf(MaxCreatedInvoiceIDs).Created
	if ids := strings.Split(c["invoice_ids"], ","); c["invoice_count"] != "1000" || len(ids) != 1000 || ids[999] != invs[999].GetInvoiceId() {
		t.Fatalf("created invoice_count %s and %d invoice_ids, want 1000 of each", c["invoice_count"], len(ids))
	}
}
