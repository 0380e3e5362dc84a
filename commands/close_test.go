package commands_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The month-close scenario of issue #5: a payer in the US (Washington state)
// pays for three organizations, in the US (A), Germany (B, split into two
// invoice units with tax inheritance disabled, one of them tax exempt) and
// Japan (C, in its own unit with tax inheritance disabled). Every figure below
// was computed by hand.
const (
	payerP = "111111111111"
	orgA   = "222222222222"
	acctA2 = "222222222223"
	orgB   = "333333333333"
	acctB2 = "333333333334"
	orgC   = "444444444444"
)

const (
	sellerUS   = "Amazon Web Services, Inc."
	sellerEMEA = "Amazon Web Services EMEA SARL"
	sellerJP   = "Amazon Web Services Japan G.K."
)

// closeWorld sets up the organizations, transfers (from 2026-09), tax
// configuration and payment profiles, with the clock at 2026-08-10.
func closeWorld(t *testing.T, p commands.Executor, clock *fixedClock, withJPYRate bool) {
	t.Helper()
	clock.Set("2026-08-10T12:00:00Z")
	must(t, p, org(payerP), org(orgA, acctA2), org(orgB, acctB2), org(orgC))
	for i, src := range []string{orgA, orgB, orgC} {
		tid := fmt.Sprintf("rt-close-%d", i)
		must(t, p, invite(tid, payerP, src, "2026-09"), &billingv1.AcceptTransfer{TransferId: tid})
	}
	must(t, p,
		&billingv1.SetSellerOfRecord{Country: "US", Seller: sellerUS, DefaultCurrency: "USD"},
		&billingv1.SetSellerOfRecord{Country: "DE", Seller: sellerEMEA, DefaultCurrency: "EUR"},
		&billingv1.SetSellerOfRecord{Country: "JP", Seller: sellerJP, DefaultCurrency: "JPY"},
		&billingv1.SetTaxSettings{AccountId: payerP, LegalName: "Partner Inc", Country: "US", Region: "WA", TaxRegistrationNumber: "91-1234567"},
		&billingv1.SetTaxSettings{AccountId: orgA, LegalName: "Alpha LLC", Country: "US", Region: "NY"},
		&billingv1.SetTaxSettings{AccountId: orgB, LegalName: "Partner Co GmbH", Country: "DE", TaxRegistrationNumber: "DE123456789"},
		&billingv1.SetTaxSettings{AccountId: acctB2, LegalName: "Partner Research gGmbH", Country: "DE", TaxRegistrationNumber: "DE987654321", Exempt: true},
		&billingv1.SetTaxSettings{AccountId: orgC, LegalName: "Partner KK", Country: "JP", TaxRegistrationNumber: "T1234567890123"},
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "10.25", EffectiveFrom: "2026-01-01"},
		&billingv1.SetTaxRate{Jurisdiction: "DE", RatePercentage: "19", EffectiveFrom: "2026-01-01"},
		&billingv1.SetTaxRate{Jurisdiction: "JP", RatePercentage: "10", EffectiveFrom: "2019-10-01"},
		// Five-step flow (X3) for B: accounts exist, have tax settings; the units map them.
		&billingv1.CreateInvoiceUnit{InvoiceUnitId: "de-main", OwnerAccountId: payerP, Name: "Germany", ReceiverAccountId: orgB, AccountIds: []string{orgB}, TaxInheritanceDisabled: true},
		&billingv1.CreateInvoiceUnit{InvoiceUnitId: "de-research", OwnerAccountId: payerP, Name: "Germany research (exempt)", ReceiverAccountId: acctB2, AccountIds: []string{acctB2}, TaxInheritanceDisabled: true},
		&billingv1.CreateInvoiceUnit{InvoiceUnitId: "jp", OwnerAccountId: payerP, Name: "Japan", ReceiverAccountId: orgC, AccountIds: []string{orgC}, TaxInheritanceDisabled: true},
		&billingv1.SetPaymentProfile{PayerAccountId: payerP, Seller: sellerUS, Currency: "USD", PaymentMethod: "CARD"},
		&billingv1.SetPaymentProfile{PayerAccountId: payerP, Seller: sellerEMEA, Currency: "EUR", PaymentMethod: "BANK_TRANSFER"},
		&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.9215", EffectiveDate: "2026-09-15"},
		&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.5", EffectiveDate: "2026-10-15"}, // not yet in force at the close
	)
	if withJPYRate {
		must(t, p, &billingv1.SetExchangeRate{From: "USD", To: "JPY", Rate: "151.37", EffectiveDate: "2026-09-01"})
	}
}

func svcRec(id, account, service, start, cost string) *billingv1.UsageRecord {
	r := usageRec(id, account, start, cost)
	r.Service = service
	return r
}

// septemberUsage is the usage of the scenario (USD).
func septemberUsage() []*billingv1.UsageRecord {
	return []*billingv1.UsageRecord{
		svcRec("a-1", orgA, "AmazonEC2", "2026-09-01T00:00:00Z", "10.005"),
		svcRec("a-2", orgA, "AmazonEC2", "2026-09-19T22:00:00Z", "0.0049"),
		svcRec("a-3", orgA, "AmazonS3", "2026-09-02T00:00:00Z", "0.004"),
		svcRec("a-4", acctA2, "AmazonS3", "2026-09-03T00:00:00Z", "3.3333333"),
		svcRec("b-1", orgB, "AmazonEC2", "2026-09-04T00:00:00Z", "100.00"),
		svcRec("b-2", orgB, "AmazonRDS", "2026-09-05T00:00:00Z", "20.555"),
		svcRec("b-3", acctB2, "AmazonEC2", "2026-09-06T00:00:00Z", "50.125"),
		svcRec("c-1", orgC, "AmazonEC2", "2026-09-07T00:00:00Z", "12.34"),
		svcRec("c-2", orgC, "AmazonS3", "2026-09-08T00:00:00Z", "0.5"),
	}
}

type wantLine struct{ account, service, billed, converted, amount, class, chargeMonth, jurisdiction, reason string }

type wantTax struct{ jurisdiction, reason, rate, taxable, tax string }

type wantInvoice struct {
	source, unit, unitName, receiver, seller, currency, billTo string
	lines                                                      []wantLine
	taxes                                                      []wantTax
	subtotal, tax, total                                       string
}

func ingest(t *testing.T, w *commands.UsageWriter, recs ...*billingv1.UsageRecord) *billingv1.IngestBatchResponse {
	t.Helper()
	res, err := w.Ingest(context.Background(), "test", "test", recs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func closeMonth(payer, month string) *billingv1.CloseMonth {
	return &billingv1.CloseMonth{PayerAccountId: payer, Month: month}
}

func monthInvoices(t *testing.T, store eventstore.Store, payer, month string) domain.MonthClose {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), domain.MonthStream(payer, month))
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	return domain.FoldMonthClose(evs)
}

func checkInvoices(t *testing.T, got []*billingv1.Invoice, want []wantInvoice, payer, month string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d invoices, want %d: %v", len(got), len(want), got)
	}
	m, _ := domain.ParseMonth(month)
	for i, w := range want {
		g := got[i]
		if id := domain.InvoiceID(payer, m, w.source, w.unit, w.seller); g.GetInvoiceId() != id {
			t.Errorf("invoice %d: id %s, want %s", i, g.GetInvoiceId(), id)
		}
		head := fmt.Sprint(g.GetSourceAccountId(), g.GetInvoiceUnitId(), g.GetInvoiceUnitName(), g.GetReceiverAccountId(), g.GetSeller(), g.GetCurrency(), g.GetBillToLegalName())
		if wh := fmt.Sprint(w.source, w.unit, w.unitName, w.receiver, w.seller, w.currency, w.billTo); head != wh {
			t.Errorf("invoice %d: header %q, want %q", i, head, wh)
		}
		if len(g.GetLines()) != len(w.lines) {
			t.Fatalf("invoice %d: %d lines, want %d: %v", i, len(g.GetLines()), len(w.lines), g.GetLines())
		}
		for j, wl := range w.lines {
			l := g.GetLines()[j]
			gl := wantLine{l.GetAccountId(), l.GetService(), l.GetBilledCost(), l.GetConverted(), l.GetAmount(), l.GetChargeClass(), l.GetChargeMonth(), l.GetJurisdiction(), l.GetTaxReason()}
			if gl != wl || l.GetLineNumber() != uint32(j+1) {
				t.Errorf("invoice %d line %d: %+v (#%d), want %+v", i, j+1, gl, l.GetLineNumber(), wl)
			}
		}
		if len(g.GetTaxes()) != len(w.taxes) {
			t.Fatalf("invoice %d: taxes %v, want %v", i, g.GetTaxes(), w.taxes)
		}
		for j, wt := range w.taxes {
			x := g.GetTaxes()[j]
			if gt := (wantTax{x.GetJurisdiction(), x.GetReason(), x.GetRatePercentage(), x.GetTaxable(), x.GetTax()}); gt != wt {
				t.Errorf("invoice %d tax %d: %+v, want %+v", i, j, gt, wt)
			}
		}
		if s := fmt.Sprint(g.GetSubtotal(), " ", g.GetTax(), " ", g.GetTotal()); s != w.subtotal+" "+w.tax+" "+w.total {
			t.Errorf("invoice %d: subtotal/tax/total %s, want %s %s %s", i, s, w.subtotal, w.tax, w.total)
		}
	}
}

// septemberInvoices are the hand-computed invoices of the scenario.
var septemberInvoices = []wantInvoice{
	{
		// A inherits the payer's settings (X2): US-WA, seller AWS Inc, USD profile.
		source: orgA, receiver: orgA, seller: sellerUS, currency: "USD", billTo: "Partner Inc",
		lines: []wantLine{
			{orgA, "AmazonEC2", "10.0099", "10.0099", "10.01", "USAGE", "2026-09", "US-WA", ""},
			{orgA, "AmazonS3", "0.004", "0.004", "0.00", "USAGE", "2026-09", "US-WA", ""},
			{acctA2, "AmazonS3", "3.3333333", "3.3333333", "3.33", "USAGE", "2026-09", "US-WA", ""},
		},
		// 13.34 × 10.25% = 1.36735 → 1.37
		taxes:    []wantTax{{"US-WA", "", "10.25", "13.34", "1.37"}},
		subtotal: "13.34", tax: "1.37", total: "14.71",
	},
	{
		// B's main unit keeps its own German settings; EUR at 0.9215 (the 2026-10-15 rate is not in force yet).
		source: orgB, unit: "de-main", unitName: "Germany", receiver: orgB, seller: sellerEMEA, currency: "EUR", billTo: "Partner Co GmbH",
		lines: []wantLine{
			{orgB, "AmazonEC2", "100", "92.15", "92.15", "USAGE", "2026-09", "DE", ""},
			{orgB, "AmazonRDS", "20.555", "18.9414325", "18.94", "USAGE", "2026-09", "DE", ""},
		},
		// 111.09 × 19% = 21.1071 → 21.11
		taxes:    []wantTax{{"DE", "", "19", "111.09", "21.11"}},
		subtotal: "111.09", tax: "21.11", total: "132.20",
	},
	{
		source: orgB, unit: "de-research", unitName: "Germany research (exempt)", receiver: acctB2, seller: sellerEMEA, currency: "EUR", billTo: "Partner Research gGmbH",
		lines: []wantLine{
			{acctB2, "AmazonEC2", "50.125", "46.1901875", "46.19", "USAGE", "2026-09", "DE", "EXEMPT"},
		},
		taxes:    []wantTax{{"DE", "EXEMPT", "0", "46.19", "0.00"}},
		subtotal: "46.19", tax: "0.00", total: "46.19",
	},
	{
		// C in JPY (no profile: the seller's default currency), 0 decimals.
		source: orgC, unit: "jp", unitName: "Japan", receiver: orgC, seller: sellerJP, currency: "JPY", billTo: "Partner KK",
		lines: []wantLine{
			{orgC, "AmazonEC2", "12.34", "1867.9058", "1868", "USAGE", "2026-09", "JP", ""},
			{orgC, "AmazonS3", "0.5", "75.685", "76", "USAGE", "2026-09", "JP", ""},
		},
		// 1944 × 10% = 194.4 → 194
		taxes:    []wantTax{{"JP", "", "10", "1944", "194"}},
		subtotal: "1944", tax: "194", total: "2138",
	},
}

func TestX5_CloseIssuesOneInvoicePerSourceUnitAndSellerWithHandComputedFigures(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		closeWorld(t, p, clock, true)
		clock.Set("2026-09-20T00:00:00Z")
		w := usageWorld(t, store, clock)
		if res := ingest(t, w, septemberUsage()...); res.GetAccepted() != 9 {
			t.Fatalf("accepted %d, want 9: %v", res.GetAccepted(), statuses(res))
		}
		clock.Set("2026-10-02T09:30:00Z")
		res := must(t, p, closeMonth(payerP, "2026-09"))
		if res.GetCreated()["invoice_count"] != "4" {
			t.Fatalf("created %v, want 4 invoices", res.GetCreated())
		}
		mc := monthInvoices(t, store, payerP, "2026-09")
		if !mc.Closed() || mc.InvoiceDate() != "2026-10-02" {
			t.Fatalf("closed %v on %q", mc.Closed(), mc.InvoiceDate())
		}
		checkInvoices(t, mc.Invoices(), septemberInvoices, payerP, "2026-09")
		for _, inv := range mc.Invoices() {
			checkRoundingBound(t, inv)
		}
		// Every usage partition of the month carries the close marker (U3).
		for pp := uint32(0); pp < domain.UsagePartitions; pp++ {
			recs, err := store.ReadStream(context.Background(), domain.UsageStream("2026-09", pp))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(recs); n == 0 || recs[n-1].Event.GetUsageMonthClosed().GetPayerAccountId() != payerP {
				t.Fatalf("partition %d: no close marker at the end", pp)
			}
		}
		// The receivable got the invoices, in order, with their totals.
		recs, err := store.ReadStream(context.Background(), domain.ReceivableStream(payerP))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("receivable has %d events, want 1", len(recs))
		}
		var totals []string
		for _, s := range recs[0].Event.GetInvoicesPosted().GetInvoices() {
			totals = append(totals, s.GetCurrency()+" "+s.GetTotal())
		}
		if got := strings.Join(totals, ", "); got != "USD 14.71, EUR 132.20, EUR 46.19, JPY 2138" {
			t.Fatalf("posted %s", got)
		}
	})
}

// checkRoundingBound: the subtotal differs from the sum of the unrounded
// converted lines by less than half a minor unit per line, and total =
// subtotal + tax exactly (M1).
func checkRoundingBound(t *testing.T, inv *billingv1.Invoice) {
	t.Helper()
	ctx := apd.BaseContext.WithPrecision(50)
	dec := func(s string) *apd.Decimal {
		d, _, err := apd.NewFromString(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	raw := apd.New(0, 0)
	for _, l := range inv.GetLines() {
		_, _ = ctx.Add(raw, raw, dec(l.GetConverted()))
	}
	var diff, bound, sum apd.Decimal
	_, _ = ctx.Sub(&diff, dec(inv.GetSubtotal()), raw)
	diff.Abs(&diff)
	half := dec("0.005")
	if inv.GetCurrency() == "JPY" {
		half = dec("0.5")
	}
	_, _ = ctx.Mul(&bound, half, apd.New(int64(len(inv.GetLines())), 0))
	if diff.Cmp(&bound) >= 0 {
		t.Errorf("%s: |subtotal − Σ unrounded| = %s, not < %s", inv.GetInvoiceId(), &diff, &bound)
	}
	_, _ = ctx.Add(&sum, dec(inv.GetSubtotal()), dec(inv.GetTax()))
	if sum.Cmp(dec(inv.GetTotal())) != 0 {
		t.Errorf("%s: %s + %s ≠ %s", inv.GetInvoiceId(), inv.GetSubtotal(), inv.GetTax(), inv.GetTotal())
	}
}

func TestX5_CloseIsRejectedBeforeTheMonthEndsTwiceAndWithoutARateAndAppendsNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		closeWorld(t, p, clock, false)
		clock.Set("2026-09-20T00:00:00Z")
		w := usageWorld(t, store, clock)
		ingest(t, w, septemberUsage()...)

		before := lastPosition(t, store)
		_, err := exec(t, p, closeMonth(payerP, "2026-09"))
		if domain.CodeOf(err) != domain.CodeMonthNotEnded || !strings.Contains(err.Error(), "2026-10-01T00:00:00Z") {
			t.Fatalf("close before the month ended: %v", err)
		}
		clock.Set("2026-10-01T00:00:00Z")
		_, err = exec(t, p, closeMonth(payerP, "2026-09"))
		if domain.CodeOf(err) != domain.CodeRateMissing || !strings.Contains(err.Error(), "no exchange rate USD→JPY in force on 2026-10-01") {
			t.Fatalf("close without the JPY rate: %v", err)
		}
		for _, bad := range []*billingv1.CloseMonth{closeMonth(payerP, "2026-13"), closeMonth("12345", "2026-09"), closeMonth(payerP, "")} {
			if _, err := exec(t, p, bad); domain.CodeOf(err) != domain.CodeInvalidArgument {
				t.Fatalf("%v: %v", bad, err)
			}
		}
		if _, err := exec(t, p, closeMonth("999999999999", "2026-09")); domain.CodeOf(err) != domain.CodeNotFound {
			t.Fatalf("unknown payer: %v", err)
		}
		if after := lastPosition(t, store); after != before {
			t.Fatalf("rejected closes appended %d events", after-before)
		}
		must(t, p, &billingv1.SetExchangeRate{From: "USD", To: "JPY", Rate: "151.37", EffectiveDate: "2026-09-01"})
		must(t, p, closeMonth(payerP, "2026-09"))
		before = lastPosition(t, store)
		_, err = exec(t, p, closeMonth(payerP, "2026-09"))
		if domain.CodeOf(err) != domain.CodeMonthAlreadyClosed || !strings.Contains(err.Error(), "with 4 invoices") {
			t.Fatalf("second close: %v", err)
		}
		if after := lastPosition(t, store); after != before {
			t.Fatalf("second close appended %d events", after-before)
		}
	})
}

func TestX5_MissingTaxRateAndSellerAreNamed(t *testing.T) {
	store := storeFactories(t)["memstore"]()
	clock := newClock()
	p := commands.New(store, clock, commands.Options{})
	clock.Set("2026-08-10T12:00:00Z")
	must(t, p, org(payerP), org("555555555555"),
		invite("rt-x", payerP, "555555555555", "2026-09"), &billingv1.AcceptTransfer{TransferId: "rt-x"},
		&billingv1.SetSellerOfRecord{Country: "DE", Seller: sellerEMEA, DefaultCurrency: "EUR"},
		&billingv1.SetTaxSettings{AccountId: payerP, LegalName: "P", Country: "FR"},
	)
	clock.Set("2026-09-20T00:00:00Z")
	ingest(t, usageWorld(t, store, clock), svcRec("x-1", "555555555555", "AmazonEC2", "2026-09-01T00:00:00Z", "1"))
	clock.Set("2026-10-05T00:00:00Z")
	_, err := exec(t, p, closeMonth(payerP, "2026-09"))
	if domain.CodeOf(err) != domain.CodeFailedPrecondition || !strings.Contains(err.Error(), "no seller of record for country FR") {
		t.Fatalf("close without a seller: %v", err)
	}
	must(t, p, &billingv1.SetSellerOfRecord{Country: "FR", Seller: sellerEMEA, DefaultCurrency: "EUR"},
		&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.9", EffectiveDate: "2026-10-01"})
	_, err = exec(t, p, closeMonth(payerP, "2026-09"))
	if domain.CodeOf(err) != domain.CodeRateMissing || !strings.Contains(err.Error(), "no tax rate for FR in force on 2026-10-05") {
		t.Fatalf("close without a tax rate: %v", err)
	}
}

// TestU3_LateUsageBecomesACorrectionInTheNextOpenMonth: a writer that loaded
// its partitions before the close learns the close from the partition markers
// (its guarded append conflicts), books the record into October as a
// correction keeping its September charge period, and the September invoices
// never change; October's close invoices the correction line.
func TestU3_LateUsageBecomesACorrectionInTheNextOpenMonth(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(newStore(), clock, commands.Options{})
		closeWorld(t, p, clock, true)
		clock.Set("2026-09-20T00:00:00Z")
		w := usageWorld(t, store, clock)
		ingest(t, w, septemberUsage()...)
		clock.Set("2026-10-02T09:30:00Z")
		must(t, p, closeMonth(payerP, "2026-09"))
		september := monthInvoices(t, store, payerP, "2026-09").Invoices()

		late := svcRec("a-late", orgA, "AmazonEC2", "2026-09-15T00:00:00Z", "1.115")
		if res := ingest(t, w, late); res.GetAccepted() != 1 {
			t.Fatalf("late record: %v", statuses(res))
		}
		var got *billingv1.BookedUsage
		if err := store.ReadAll(context.Background(), 0, "billing.usage.>", func(r eventstore.Record) error {
			for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
				if b.GetRecord().GetUsageId() == "a-late" {
					got = b
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got.GetBookingMonth() != "2026-10" || got.GetChargeMonth() != "2026-09" || !got.GetCorrection() {
			t.Fatalf("late record booked %s (charge %s, correction %v), want 2026-10 / 2026-09 / true", got.GetBookingMonth(), got.GetChargeMonth(), got.GetCorrection())
		}
		// A second writer that never saw the close books the same way.
		w2 := usageWorld(t, newStore(), clock)
		ingest(t, w2, svcRec("a-late-2", acctA2, "AmazonS3", "2026-09-29T00:00:00Z", "2"))
		if res := ingest(t, w2, late); res.GetDuplicates() != 1 {
			t.Fatalf("late record again: %v", statuses(res))
		}
		if after := monthInvoices(t, store, payerP, "2026-09").Invoices(); fmt.Sprint(after) != fmt.Sprint(september) {
			t.Fatal("the September invoices changed after the close")
		}
		clock.Set("2026-10-20T00:00:00Z")
		if res := ingest(t, w, svcRec("a-oct", orgA, "AmazonEC2", "2026-10-03T00:00:00Z", "5")); res.GetAccepted() != 1 {
			t.Fatalf("October record: %v", statuses(res))
		}
		clock.Set("2026-11-01T00:00:00Z")
		must(t, p, closeMonth(payerP, "2026-10"))
		october := monthInvoices(t, store, payerP, "2026-10").Invoices()
		checkInvoices(t, october[:1], []wantInvoice{{
			source: orgA, receiver: orgA, seller: sellerUS, currency: "USD", billTo: "Partner Inc",
			lines: []wantLine{
				{orgA, "AmazonEC2", "5", "5", "5.00", "USAGE", "2026-10", "US-WA", ""},
				{orgA, "AmazonEC2", "1.115", "1.115", "1.12", "CORRECTION", "2026-09", "US-WA", ""},
				{acctA2, "AmazonS3", "2", "2", "2.00", "CORRECTION", "2026-09", "US-WA", ""},
			},
			// 8.12 × 10.25% = 0.8323 → 0.83
			taxes:    []wantTax{{"US-WA", "", "10.25", "8.12", "0.83"}},
			subtotal: "8.12", tax: "0.83", total: "8.95",
		}}, payerP, "2026-10")
		if l := october[0].GetLines()[1]; l.GetChargePeriodStart().AsTime().Format("2006-01-02") != "2026-09-15" {
			t.Fatalf("correction line charge period starts %v", l.GetChargePeriodStart().AsTime())
		}
	})
}

// TestU3_UsageRacingTheCloseIsCountedExactlyOnce: writers keep ingesting
// September usage while the month is closed; every record ends up either on a
// September invoice or as an October correction, never both, never neither.
func TestU3_UsageRacingTheCloseIsCountedExactlyOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(newStore(), clock, commands.Options{})
		closeWorld(t, p, clock, true)
		clock.Set("2026-10-01T06:00:00Z")
		const writers, batches, perBatch = 2, 30, 20
		var wg sync.WaitGroup
		start, begun := make(chan struct{}), make(chan struct{})
		for wi := 0; wi < writers; wi++ {
			w := usageWorld(t, newStore(), clock)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for b := 0; b < batches; b++ {
					var recs []*billingv1.UsageRecord
					for i := 0; i < perBatch; i++ {
						recs = append(recs, svcRec(fmt.Sprintf("r-%d-%d-%d", wi, b, i), orgA, "AmazonEC2", "2026-09-10T00:00:00Z", "0.01"))
					}
					if _, err := w.Ingest(context.Background(), "test", "race", recs); err != nil {
						t.Error(err)
						return
					}
					if wi == 0 && b == 2 {
						close(begun) // the close starts while the writers are busy
					}
				}
			}()
		}
		close(start)
		<-begun
		must(t, p, closeMonth(payerP, "2026-09"))
		wg.Wait()
		clock.Set("2026-11-01T00:00:00Z")
		must(t, p, closeMonth(payerP, "2026-10"))
		count := map[string]uint64{}
		for _, month := range []string{"2026-09", "2026-10"} {
			for _, inv := range monthInvoices(t, store, payerP, month).Invoices() {
				for _, l := range inv.GetLines() {
					count[month+" "+l.GetChargeClass()] += l.GetUsageRecords()
				}
			}
		}
		total := count["2026-09 USAGE"] + count["2026-10 CORRECTION"]
		if total != writers*batches*perBatch || len(count) > 2 {
			t.Fatalf("records on invoices %v, want %d in all", count, writers*batches*perBatch)
		}
		t.Logf("September: %d records, October corrections: %d", count["2026-09 USAGE"], count["2026-10 CORRECTION"])
	})
}

// TestExplain_AnInvoiceLineNamesItsRecordsRatesAndArithmetic (issue #6 item 3).
func TestExplain_AnInvoiceLineNamesItsRecordsRatesAndArithmetic(t *testing.T) {
	store := storeFactories(t)["memstore"]()
	clock := newClock()
	p := commands.New(store, clock, commands.Options{})
	closeWorld(t, p, clock, true)
	clock.Set("2026-09-20T00:00:00Z")
	w := usageWorld(t, store, clock)
	ingest(t, w, septemberUsage()...)
	clock.Set("2026-10-02T09:30:00Z")
	must(t, p, closeMonth(payerP, "2026-09"))
	m, _ := domain.ParseMonth("2026-09")
	id := domain.InvoiceID(payerP, m, orgB, "de-main", sellerEMEA)

	ex, err := projections.ExplainInvoice(context.Background(), store, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Lines) != 1 || len(ex.Lines[0].Records) != 1 || ex.Lines[0].Records[0].GetRecord().GetUsageId() != "b-2" {
		t.Fatalf("line 2: %+v", ex.Lines)
	}
	want := []string{
		"billed cost = 20.555 = 20.555 USD (1 usage records, charge month 2026-09, USAGE)",
		"converted = 20.555 × 0.9215 (USD→EUR in force since 2026-09-15, on the invoice date 2026-10-02) = 18.9414325 EUR",
		"amount = round half-up(18.9414325, 2 decimals) = 18.94 EUR",
	}
	if got := ex.Lines[0].Steps[:3]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("steps\n%q\nwant\n%q", got, want)
	}
	if got := fmt.Sprint(ex.TaxSteps); got != "[DE: 19% (in force since 2026-01-01) × 111.09 = 21.1071 → round half-up = 21.11 EUR]" {
		t.Fatalf("tax steps %s", got)
	}
	if got := fmt.Sprint(ex.TotalSteps); got != "[subtotal = 92.15 + 18.94 = 111.09 EUR tax = 21.11 = 21.11 EUR total = 111.09 + 21.11 = 132.20 EUR]" {
		t.Fatalf("total steps %s", got)
	}
	all, err := projections.ExplainInvoice(context.Background(), store, domain.InvoiceID(payerP, m, orgA, "", sellerUS), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Lines) != 3 || len(all.Lines[0].Records) != 2 || all.Lines[0].Sum != "10.0099" {
		t.Fatalf("invoice A: %d lines, first %+v", len(all.Lines), all.Lines[0])
	}
	for _, bad := range []struct {
		id   string
		line int
		code domain.Code
	}{{id, 3, domain.CodeInvalidArgument}, {"INV-202609-" + payerP + "-0000000000", 0, domain.CodeNotFound}, {"nonsense", 0, domain.CodeInvalidArgument}} {
		if _, err := projections.ExplainInvoice(context.Background(), store, bad.id, bad.line); domain.CodeOf(err) != bad.code {
			t.Fatalf("%s line %d: %v", bad.id, bad.line, err)
		}
	}
}
