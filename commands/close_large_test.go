package commands_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// Large closes (X5, M1): a distributor's month with more invoices than one
// atomic append holds events, and an invoice with more lines than one event
// holds bytes.

// distributorWorld sets up payer P (US-WA, 10.25 %, USD by card) paying from
// 2026-09 for n source organizations (the first with members besides its
// management account), the clock at 2026-08-10. The first source registers
// and transfers through the pipeline; the others are its
// events replicated with the source's and the transfer's ids replaced, in
// atomic appends of up to eventstore.MaxAppendEvents events: through the
// pipeline, every invitation folds the payer's organization, whose stream
// grows by two events per source (1,500 sources take minutes that way).
func distributorWorld(t *testing.T, store eventstore.Store, p commands.Executor, clock *fixedClock, n int, members ...string) []string {
	t.Helper()
	ctx := context.Background()
	clock.Set("2026-08-10T12:00:00Z")
	must(t, p, org(payerP),
		&billingv1.SetSellerOfRecord{Country: "US", Seller: sellerUS, DefaultCurrency: "USD"},
		&billingv1.SetTaxSettings{AccountId: payerP, LegalName: "Partner Inc", Country: "US", Region: "WA", TaxRegistrationNumber: "91-1234567"},
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "10.25", EffectiveFrom: "2026-01-01"},
		&billingv1.SetPaymentProfile{PayerAccountId: payerP, Seller: sellerUS, Currency: "USD", PaymentMethod: "CARD"},
	)
	sources := make([]string, n)
	for i := range sources {
		sources[i] = fmt.Sprintf("5%011d", i+1)
	}
	const tmplTransfer = "rt-src-1"
	before := lastPosition(t, store)
	must(t, p, org(sources[0], members...), invite(tmplTransfer, payerP, sources[0], "2026-09"), &billingv1.AcceptTransfer{TransferId: tmplTransfer})
	var tmpl []*billingv1.Event
	if err := store.ReadAll(ctx, before, "", func(r eventstore.Record) error {
		tmpl = append(tmpl, r.Event)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	versions := map[string]uint64{}
	var (
		appends []eventstore.StreamAppend
		index   = map[string]int{}
		total   int
	)
	flush := func() {
		if len(appends) == 0 {
			return
		}
		if _, err := store.Append(ctx, appends...); err != nil {
			t.Fatal(err)
		}
		appends, index, total = nil, map[string]int{}, 0
	}
	if n > 1 && len(members) > 0 {
		t.Fatal("distributorWorld: members are for a world of one source")
	}
	for i := 1; i < n; i++ {
		if total+len(tmpl) > eventstore.MaxAppendEvents {
			flush()
		}
		r := strings.NewReplacer(sources[0], sources[i], tmplTransfer, fmt.Sprintf("rt-src-%d", i+1))
		for _, ev := range tmpl {
			stream := r.Replace(ev.GetStream())
			c := replicate(t, ev, r)
			j, ok := index[stream]
			if !ok {
				v, seen := versions[stream]
				if !seen && stream == ev.GetStream() {
					// A stream the template shares (the payer's organization).
					recs, err := store.ReadStream(ctx, stream)
					if err != nil {
						t.Fatal(err)
					}
					v = uint64(len(recs))
				}
				j = len(appends)
				index[stream] = j
				appends = append(appends, eventstore.StreamAppend{Stream: stream, ExpectedVersion: v})
			}
			appends[j].Events = append(appends[j].Events, c)
			versions[stream] = appends[j].ExpectedVersion + uint64(len(appends[j].Events))
			total++
		}
	}
	flush()
	return sources
}

// replicate is ev with r applied to its payload (as JSON), a new event id and
// no place in a stream (the store seals it).
func replicate(t *testing.T, ev *billingv1.Event, r *strings.Replacer) *billingv1.Event {
	t.Helper()
	b, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	c := &billingv1.Event{}
	if err := protojson.Unmarshal([]byte(r.Replace(string(b))), c); err != nil {
		t.Fatal(err)
	}
	c.EventId = uuid.Must(uuid.NewV7()).String()
	c.Stream, c.StreamVersion, c.PrevHash, c.Hash = "", 0, nil, nil
	return c
}

// projectInvoices runs the invoices and payments projections over store into
// a fresh SQLite read model until both reflect its last position.
func projectInvoices(t *testing.T, store eventstore.Store) *readmodel.DB {
	t.Helper()
	db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	last := lastPosition(t, store)
	for _, p := range []projections.Projection{projections.Invoices{}, projections.Payments{}} {
		r := projections.NewRunner(db, store, p, projections.RunnerConfig{})
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := r.WaitFor(ctx, last); err != nil {
			t.Fatalf("%s projection: %v", p.Name(), err)
		}
	}
	return db
}

// checkReplayEqualsLive: the replay of month (R2) gives the digests of the
// live invoices, tax and payments tables.
func checkReplayEqualsLive(t *testing.T, store eventstore.Store, db *readmodel.DB, month string) []*billingv1.ReadModelDigest {
	t.Helper()
	ctx := context.Background()
	live, err := db.InvoiceDigests(ctx, month)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := projections.ReplayMonthWith(ctx, store, month, projections.ReplayOptions{
		Invoices: true, InvoicesUpTo: live[0].GetCheckpoint(), PaymentsUpTo: live[2].GetCheckpoint()})
	if err != nil {
		t.Fatal(err)
	}
	got := replay.GetDigests()[2:] // after billable and deadletters
	if len(got) != len(live) {
		t.Fatalf("replay digests %v, live %v", got, live)
	}
	for i := range live {
		if !proto.Equal(got[i], live[i]) {
			t.Fatalf("%s: replay %v, live %v", live[i].GetName(), got[i], live[i])
		}
	}
	return live
}

// cents parses an amount with exactly two decimals ("12.30") into cents.
func cents(t *testing.T, s string) int64 {
	t.Helper()
	whole, frac, ok := strings.Cut(s, ".")
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if !ok || len(frac) != 2 || err1 != nil || err2 != nil || w < 0 {
		t.Fatalf("amount %q is not a USD amount", s)
	}
	return w*100 + f
}

// usd renders cents as an amount ("12.30").
func usd(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

// roundedCents is an amount of k thousandths of a dollar rounded half-up to
// cents (M1).
func roundedCents(k int64) int64 { return (k + 5) / 10 }

// usWATax is 10.25 % of c cents, rounded half-up to cents (M1).
func usWATax(c int64) int64 { return (c*1025 + 5000) / 10000 }

// thousandths renders k thousandths of a dollar ("1.005").
func thousandths(k int64) string { return fmt.Sprintf("%d.%03d", k/1000, k%1000) }

// monthEventKinds counts the events of the month stream by payload.
func monthEventKinds(t *testing.T, store eventstore.Store, payer, month string) map[string]int {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), domain.MonthStream(payer, month))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[string(r.Event.ProtoReflect().WhichOneof(r.Event.ProtoReflect().Descriptor().Oneofs().ByName("payload")).Name())]++
	}
	return kinds
}

// TestX5_M1_CloseOf1500InvoicesIsOneAtomicAppendWithHandComputedTotals: a
// distributor pays for 1,500 source organizations, each with one usage
// record of 0.013·i + 0.005 USD (i = 0…1499), so the close issues 1,500
// invoices (more than the 1,000 events of one atomic append under one event
// per invoice). Each invoice is: line = the cost rounded half-up to cents,
// tax = 10.25 % of it rounded half-up, total = line + tax (M1). The close is
// one atomic append of a few events, FoldMonthClose and the invoices read
// model (projected from the JetStream log) give every invoice exactly, and
// their totals sum to 16,122.39 USD (14,623.50 + 1,498.89 tax).
func TestX5_M1_CloseOf1500InvoicesIsOneAtomicAppendWithHandComputedTotals(t *testing.T) {
	const n = 1500
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{Policy: domain.Policy{MaxInboundTransfers: 2 * n}})
		sources := distributorWorld(t, store, p, clock, n)
		clock.Set("2026-09-20T00:00:00Z")
		var recs []*billingv1.UsageRecord
		for i, src := range sources {
			recs = append(recs, svcRec(fmt.Sprintf("d-%d", i), src, "AmazonEC2", "2026-09-10T00:00:00Z", thousandths(int64(13*i+5))))
		}
		if res := ingest(t, usageWorld(t, store, clock), recs...); res.GetAccepted() != n {
			t.Fatalf("accepted %d of %d", res.GetAccepted(), n)
		}
		clock.Set("2026-10-02T09:30:00Z")
		before := lastPosition(t, store)
		start := time.Now()
		res := must(t, p, closeMonth(payerP, "2026-09"))
		took := time.Since(start)
		appended := lastPosition(t, store) - before
		if res.GetCreated()["invoice_count"] != strconv.Itoa(n) {
			t.Fatalf("created %v", res.GetCreated()["invoice_count"])
		}
		kinds := monthEventKinds(t, store, payerP, "2026-09")
		t.Logf("close of %d invoices: %v, %d events appended atomically (month stream %v)", n, took, appended, kinds)
		if kinds["month_closed"] != 1 || kinds["invoices_issued"] == 0 || kinds["invoice_issued"]+kinds["invoice_lines_issued"] != 0 ||
			appended != uint64(1+kinds["invoices_issued"]+domain.UsagePartitions+1) || appended > eventstore.MaxAppendEvents {
			t.Fatalf("%d events appended, month stream %v", appended, kinds)
		}

		// The invoices as the log holds them (X5, M1).
		m, _ := domain.ParseMonth("2026-09")
		mc := monthInvoices(t, store, payerP, "2026-09")
		if len(mc.Invoices()) != n {
			t.Fatalf("%d invoices folded, want %d", len(mc.Invoices()), n)
		}
		want := map[string]int64{} // invoice id → total in cents
		var sumSub, sumTax, sumTotal int64
		for i, inv := range mc.Invoices() {
			line := roundedCents(int64(13*i + 5))
			tax := usWATax(line)
			id := domain.InvoiceID(payerP, m, sources[i], "", sellerUS)
			got := fmt.Sprint(inv.GetInvoiceId(), " ", inv.GetSourceAccountId(), " ", len(inv.GetLines()), " ",
				inv.GetLines()[0].GetAmount(), " ", inv.GetSubtotal(), " ", inv.GetTax(), " ", inv.GetTotal(), " ", inv.GetCurrency())
			if w := fmt.Sprint(id, " ", sources[i], " 1 ", usd(line), " ", usd(line), " ", usd(tax), " ", usd(line+tax), " USD"); got != w {
				t.Fatalf("invoice %d: %s, want %s", i, got, w)
			}
			want[id] = line + tax
			sumSub, sumTax, sumTotal = sumSub+line, sumTax+tax, sumTotal+line+tax
		}
		if usd(sumSub) != "14623.50" || usd(sumTax) != "1498.89" || usd(sumTotal) != "16122.39" {
			t.Fatalf("hand totals %s + %s = %s", usd(sumSub), usd(sumTax), usd(sumTotal))
		}

		// The invoices read model holds the same 1,500 invoices (R1), and a
		// replay of the month gives the same digests (R2).
		if !strings.HasSuffix(t.Name(), "/jetstream") {
			return // the read model's part is the same on both stores; under -race it takes ~5 s
		}
		db := projectInvoices(t, store)
		report, err := db.ReportInvoices(context.Background(), &billingv1.ReportInvoicesRequest{Month: "2026-09", PayerAccountId: payerP})
		if err != nil {
			t.Fatal(err)
		}
		if len(report.GetRows()) != n {
			t.Fatalf("read model: %d invoices, want %d", len(report.GetRows()), n)
		}
		var total int64
		for _, r := range report.GetRows() {
			c := cents(t, r.GetTotal())
			if w, ok := want[r.GetInvoiceId()]; !ok || c != w || r.GetOutstanding() != r.GetTotal() || len(r.GetLines()) != 1 {
				t.Fatalf("read model: invoice %s total %s (outstanding %s, %d lines), want %s", r.GetInvoiceId(), r.GetTotal(), r.GetOutstanding(), len(r.GetLines()), usd(w))
			}
			total += c
		}
		if tot := report.GetTotals(); total != sumTotal || len(tot) != 1 || tot[0].GetInvoices() != n ||
			cents(t, tot[0].GetTotal()) != sumTotal || cents(t, tot[0].GetTax()) != sumTax {
			t.Fatalf("read model totals %v (rows sum to %s), want %d invoices, total 16122.39, tax 1498.89", tot, usd(total), n)
		}
		digests, err := db.InvoiceDigests(context.Background(), "2026-09")
		if err != nil {
			t.Fatal(err)
		}
		if d := digests[0]; d.GetTotals()["invoices"] != "1500" || d.GetTotals()["lines"] != "1500" || d.GetTotals()["total_USD"] != "16122.39" {
			t.Fatalf("invoices digest totals %v", d.GetTotals())
		}
	})
}

// TestX5_M1_InvoiceOf30000LinesClosesAndReadsBackInOrder: one source
// organization of 100 accounts uses 300 services each, one record per account
// and service of (7·j + 4)/1000 USD for line j = 0…29,999 (accounts, then
// services, in order). Its invoice of 30,000 lines (several MB) goes out as an
// InvoicesIssued event with its first lines and InvoiceLinesIssued events
// with the rest, each within CloseEventBudget, in one atomic append. Read
// back from the log and from the invoices read model (projected from the
// JetStream log), line j+1 is
// (7·j + 4)/1000 rounded half-up; the subtotal is their sum, 3,150,030.00,
// and the tax 10.25 % of it, 322,878.075 → 322,878.08 (M1).
func TestX5_M1_InvoiceOf30000LinesClosesAndReadsBackInOrder(t *testing.T) {
	const accounts, services = 100, 300
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		var members []string
		for a := 1; a < accounts; a++ {
			members = append(members, fmt.Sprintf("6%011d", a))
		}
		src := distributorWorld(t, store, p, clock, 1, members...)[0]
		accts := append([]string{src}, members...) // the order of the lines
		clock.Set("2026-09-20T00:00:00Z")
		var recs []*billingv1.UsageRecord
		for a, acct := range accts {
			for s := 0; s < services; s++ {
				j := int64(a*services + s)
				recs = append(recs, svcRec(fmt.Sprintf("l-%d", j), acct, fmt.Sprintf("svc-%03d", s), "2026-09-10T00:00:00Z", thousandths(7*j+4)))
			}
		}
		if res := ingest(t, usageWorld(t, store, clock), recs...); res.GetAccepted() != accounts*services {
			t.Fatalf("accepted %d", res.GetAccepted())
		}
		clock.Set("2026-10-02T09:30:00Z")
		before := lastPosition(t, store)
		start := time.Now()
		must(t, p, closeMonth(payerP, "2026-09"))
		took := time.Since(start)
		kinds := monthEventKinds(t, store, payerP, "2026-09")
		recsOf, err := store.ReadStream(context.Background(), domain.MonthStream(payerP, "2026-09"))
		if err != nil {
			t.Fatal(err)
		}
		var bytes, largest int
		for _, r := range recsOf {
			n := proto.Size(r.Event)
			bytes, largest = bytes+n, max(largest, n)
		}
		t.Logf("close of one invoice of %d lines: %v, %d events appended atomically (month stream %v, %d bytes, largest event %d bytes)",
			accounts*services, took, lastPosition(t, store)-before, kinds, bytes, largest)
		if kinds["invoices_issued"] != 1 || kinds["invoice_lines_issued"] < 10 || largest > domain.CloseEventBudget+1024 {
			t.Fatalf("month stream %v, largest event %d bytes", kinds, largest)
		}

		check := func(what string, lines []*billingv1.InvoiceLine, subtotal, tax, total string) {
			t.Helper()
			if len(lines) != accounts*services {
				t.Fatalf("%s: %d lines, want %d", what, len(lines), accounts*services)
			}
			var sum int64
			for j, l := range lines {
				k := int64(7*j + 4)
				a, s := j/services, j%services
				got := fmt.Sprint(l.GetLineNumber(), " ", l.GetAccountId(), " ", l.GetService(), " ", l.GetAmount(), " ", l.GetUsageRecords())
				if w := fmt.Sprint(j+1, " ", accts[a], " ", fmt.Sprintf("svc-%03d", s), " ", usd(roundedCents(k)), " 1"); got != w {
					t.Fatalf("%s: line %d is %q, want %q", what, j+1, got, w)
				}
				sum += cents(t, l.GetAmount())
			}
			if got := fmt.Sprint(usd(sum), " ", subtotal, " ", tax, " ", total); got != "3150030.00 3150030.00 322878.08 3472908.08" {
				t.Fatalf("%s: lines sum, subtotal, tax, total = %s", what, got)
			}
			if usd(usWATax(sum)) != tax {
				t.Fatalf("%s: tax %s, want 10.25 %% of %s = %s", what, tax, usd(sum), usd(usWATax(sum)))
			}
		}
		invs := monthInvoices(t, store, payerP, "2026-09").Invoices()
		if len(invs) != 1 {
			t.Fatalf("%d invoices", len(invs))
		}
		inv := invs[0]
		check("log", inv.GetLines(), inv.GetSubtotal(), inv.GetTax(), inv.GetTotal())
		if x := inv.GetTaxes(); len(x) != 1 || x[0].GetTaxable() != "3150030.00" || x[0].GetTax() != "322878.08" {
			t.Fatalf("taxes %v", x)
		}

		if !strings.HasSuffix(t.Name(), "/jetstream") {
			return // the read model's part is the same on both stores; under -race it takes ~6 s
		}
		db := projectInvoices(t, store)
		report, err := db.ReportInvoices(context.Background(), &billingv1.ReportInvoicesRequest{Month: "2026-09", PayerAccountId: payerP})
		if err != nil {
			t.Fatal(err)
		}
		if len(report.GetRows()) != 1 {
			t.Fatalf("read model: %d invoices", len(report.GetRows()))
		}
		r := report.GetRows()[0]
		check("read model", r.GetLines(), r.GetSubtotal(), r.GetTax(), r.GetTotal())
		if r.GetInvoiceId() != inv.GetInvoiceId() || r.GetOutstanding() != "3472908.08" {
			t.Fatalf("read model: invoice %s outstanding %s", r.GetInvoiceId(), r.GetOutstanding())
		}
	})
}

// TestX5_CloseBeyondOneAtomicAppendIsRejectedAndAppendsNothing: with a
// close event budget of 200 bytes, every invoice event and posting holds one
// line or summary (one line is about 100 bytes, two do not fit), so a close
// of two invoices of 990 and 1 lines needs 991 invoice events, 2 postings,
// MonthClosed, 16 partition markers and the request record: 1,011 events,
// more than one atomic append holds. It is rejected with QUOTA_EXCEEDED naming
// the numbers, and nothing is appended. A budget of 64 bytes, less than a
// MonthClosed listing the two ids would take (110 bytes), is refused for the
// same events and nothing else: MonthClosed counts the invoices, so its size
// no longer limits a close. With the default budget the same close takes 19
// events, and its MonthClosed says invoice_count 2 and lists no id.
func TestX5_CloseBeyondOneAtomicAppendIsRejectedAndAppendsNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		seed := commands.New(store, clock, commands.Options{})
		sources := distributorWorld(t, store, seed, clock, 2)
		clock.Set("2026-09-20T00:00:00Z")
		var recs []*billingv1.UsageRecord
		for s := 0; s < 990; s++ {
			recs = append(recs, svcRec(fmt.Sprintf("x-%d", s), sources[0], fmt.Sprintf("svc-%03d", s), "2026-09-10T00:00:00Z", "1.005"))
		}
		recs = append(recs, svcRec("y-0", sources[1], "AmazonEC2", "2026-09-10T00:00:00Z", "2"))
		ingest(t, usageWorld(t, store, clock), recs...)
		clock.Set("2026-10-02T09:30:00Z")

		before := lastPosition(t, store)
		for _, c := range []struct {
			budget int
			want   string
		}{
			{200, "closing 2026-09 for payer 111111111111 would issue 2 invoices (991 lines) in 1011 events (991 of invoices, 2 postings, 18 others), more than the 1000 events of one atomic append; nothing was issued"},
			{64, "closing 2026-09 for payer 111111111111 would issue 2 invoices (991 lines) in 1011 events (991 of invoices, 2 postings, 18 others), more than the 1000 events of one atomic append; nothing was issued"},
		} {
			p := commands.New(store, clock, commands.Options{Policy: domain.Policy{MaxInboundTransfers: 1000, CloseEventBytes: c.budget}})
			_, err := exec(t, p, closeMonth(payerP, "2026-09"))
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != domain.CodeQuotaExceeded || de.Message != c.want {
				t.Fatalf("budget %d: %v, want QUOTA_EXCEEDED: %s", c.budget, err, c.want)
			}
			if after := lastPosition(t, store); after != before {
				t.Fatalf("budget %d: the rejected close appended %d events", c.budget, after-before)
			}
		}
		res := must(t, seed, closeMonth(payerP, "2026-09"))
		if n := lastPosition(t, store) - before; n != 19 || len(res.GetEventIds()) != 19 {
			t.Fatalf("the close with the default budget appended %d events (%d ids), want 19: MonthClosed, InvoicesIssued, 16 markers, InvoicesPosted", n, len(res.GetEventIds()))
		}
		if mc := monthInvoices(t, store, payerP, "2026-09"); len(mc.Invoices()) != 2 || res.GetCreated()["invoice_count"] != "2" ||
			strings.Count(res.GetCreated()["invoice_ids"], ",") != 1 {
			t.Fatalf("%d invoices folded; created %v", len(mc.Invoices()), res.GetCreated())
		}
		month, err := store.ReadStream(context.Background(), domain.MonthStream(payerP, "2026-09"))
		if err != nil {
			t.Fatal(err)
		}
		if mc := month[0].Event.GetMonthClosed(); mc.GetInvoiceCount() != 2 || len(mc.GetInvoiceIds()) != 0 {
			t.Fatalf("MonthClosed %v, want invoice_count 2 and no ids", mc)
		}
	})
}

// TestX5_SealOfACloseWithSeveralPostingsCoversTheLast (issue #6): a close
// whose invoices are posted in several InvoicesPosted events (a budget of 200
// bytes holds one summary each) is sealed up to the last of them, so the
// seal and the export cover every posting.
func TestX5_SealOfACloseWithSeveralPostingsCoversTheLast(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{Policy: domain.Policy{MaxInboundTransfers: 1000, CloseEventBytes: 200}})
		closeWorld(t, p, clock, true)
		clock.Set("2026-09-20T00:00:00Z")
		ingest(t, usageWorld(t, store, clock), septemberUsage()...)
		clock.Set("2026-10-02T09:30:00Z")
		must(t, p, closeMonth(payerP, "2026-09"))
		ctx := context.Background()
		recv, err := store.ReadStream(ctx, domain.ReceivableStream(payerP))
		if err != nil {
			t.Fatal(err)
		}
		if len(recv) != 4 {
			t.Fatalf("receivable: %d events, want 4 InvoicesPosted (one per invoice)", len(recv))
		}
		checkInvoices(t, monthInvoices(t, store, payerP, "2026-09").Invoices(), septemberInvoices, payerP, "2026-09")

		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		closed, err := store.ReadStream(ctx, domain.MonthStream(payerP, "2026-09"))
		if err != nil {
			t.Fatal(err)
		}
		seal, err := commands.NewSealer(store, clock, key, nil).Seal(ctx, closed[0])
		if err != nil {
			t.Fatal(err)
		}
		var head *billingv1.SealedStream
		for _, s := range seal.GetStreams() {
			if s.GetStream() == domain.ReceivableStream(payerP) {
				head = s
			}
		}
		if head.GetVersion() != 4 || !bytes.Equal(head.GetHash(), recv[3].Event.GetHash()) {
			t.Fatalf("receivable sealed at version %d, want 4 (the last posting)", head.GetVersion())
		}
		var buf bytes.Buffer
		if _, err := eventstore.ExportMonth(ctx, store, "2026-09", "", &buf); err != nil {
			t.Fatal(err)
		}
		if _, err := eventstore.VerifyExport(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("export: %v", err)
		}
	})
}
