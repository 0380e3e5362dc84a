package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// The storage functions the projections call, on each backend. The
// projections' own tests (package projections) drive the same functions with
// real event histories; these pin what each function stores and returns.

func withTx(t *testing.T, db *readmodel.DB, fn func(ctx context.Context, tx *sql.Tx) error) {
	t.Helper()
	ctx := context.Background()
	if err := db.WithTx(ctx, func(tx *sql.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

// TestAmountsRoundTrip: exact decimals come back as written on both backends
// (NUMERIC in PostgreSQL keeps a value's scale: "12.30" stays "12.30"), at
// any precision; amounts copied from events are stored in plain notation, so
// "-0.00", "+1.5", "1E+2" or "0012.30" read back the same on both; an empty
// optional amount (an invoice line without fx_rate) reads back empty.
func TestAmountsRoundTrip(t *testing.T) {
	t.Parallel()
	const long = "123456789012345678901234567890.123456789012345678901234567891"
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		bill := []*readmodel.BillableRow{
			{BillableKey: readmodel.BillableKey{Month: "2026-09", PayerAccountID: "111111111111", SourceAccountID: "333333333333",
				AccountID: "333333333301", Service: "AmazonEC2", Currency: "USD"}, BilledCost: long, UsageQuantity: "100", RecordCount: 3, UpdatedPosition: 9},
			{BillableKey: readmodel.BillableKey{Month: "2026-09", PayerAccountID: "111111111111", SourceAccountID: "333333333333",
				AccountID: "333333333301", Service: "AmazonS3", Currency: "USD"}, BilledCost: "-0.000000000000000000000000000001", UsageQuantity: "0.5", RecordCount: 1, UpdatedPosition: 9},
		}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			w, err := readmodel.NewBillableWriter(ctx, tx)
			if err != nil {
				return err
			}
			defer w.Close()
			for _, r := range bill {
				if _, err := w.Insert(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		rep, err := db.ReportBillable(ctx, "2026-09", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.GetRows()) != 2 || rep.GetRows()[0].GetBilledCost() != long || rep.GetRows()[0].GetUsageQuantity() != "100" ||
			rep.GetRows()[1].GetBilledCost() != "-0.000000000000000000000000000001" || rep.GetRows()[1].GetUsageQuantity() != "0.5" {
			t.Fatalf("billable rows %v", rep.GetRows())
		}
		if rep.GetTotal() != "123456789012345678901234567890.12345678901234567890123456789" {
			t.Fatalf("billable total %s", rep.GetTotal())
		}

		// An invoice whose amounts are written every way a decimal can be.
		inv := &billingv1.Invoice{
			InvoiceId: "INV-202609-111111111111-0000000001", PayerAccountId: "111111111111", Month: "2026-09",
			SourceAccountId: "333333333333", ReceiverAccountId: "333333333333", Seller: "Amazon Web Services, Inc.",
			Currency: "USD", InvoiceDate: "2026-10-02", PaymentMethod: "CARD",
			Lines: []*billingv1.InvoiceLine{
				{LineNumber: 1, AccountId: "333333333301", Service: "AmazonEC2", ChargeMonth: "2026-09", ChargeClass: "USAGE",
					UsageCurrency: "USD", BilledCost: "0012.3040", FxRate: "1", Converted: "12.3040", Amount: "12.30",
					Jurisdiction: "US-WA", UsageRecords: 2, ChargePeriodStart: timestamppb.New(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC))},
				{LineNumber: 2, AccountId: "333333333302", Service: "Credit", ChargeMonth: "2026-09", ChargeClass: "USAGE",
					UsageCurrency: "USD", Amount: "-0.00", Jurisdiction: "US-WA"}, // no billed_cost, fx_rate, converted
			},
			Taxes: []*billingv1.InvoiceTax{
				{Jurisdiction: "US-WA", RatePercentage: "10.1", RateEffectiveFrom: "2026-01-01", Taxable: "12.30", Tax: "1.24"},
				{Jurisdiction: "DE", Reason: "EXEMPT", Taxable: "0", Tax: "0.00"}, // no rate
			},
			Subtotal: "+12.30", Tax: "1.24", Total: "1354E-2",
		}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			if err := readmodel.InsertInvoice(ctx, tx, inv, 10); err != nil {
				return err
			}
			if err := readmodel.PutReceivable(ctx, tx, &readmodel.ReceivableRow{InvoiceID: inv.GetInvoiceId(),
				PayerAccountID: "111111111111", Month: "2026-09", SourceAccountID: "333333333333", Seller: "Amazon Web Services, Inc.",
				Currency: "USD", Issued: "13.54", Paid: "10.00", Outstanding: "3.540", Status: readmodel.InvoicePartiallyPaid,
				PostedPosition: 11, UpdatedPosition: 12}); err != nil {
				return err
			}
			if err := readmodel.InsertPayment(ctx, tx, &readmodel.PaymentRecord{PayerAccountID: "111111111111", PaymentID: "pay-1",
				Amount: "1E+1", Currency: "USD", Method: "CARD", Unapplied: "0.00", Refunded: "-0", ReceivedAt: time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC),
				Position: 12}); err != nil {
				return err
			}
			return readmodel.InsertAllocation(ctx, tx, &readmodel.AllocationRow{PayerAccountID: "111111111111", PaymentID: "pay-1", Seq: 1,
				InvoiceID: inv.GetInvoiceId(), BillSourceAccountID: "333333333333", Amount: "10.00", OutstandingAfter: "3.540", Position: 12})
		})

		got, err := db.ReportInvoices(ctx, &billingv1.ReportInvoicesRequest{Month: "2026-09"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetRows()) != 1 {
			t.Fatalf("invoices %v", got)
		}
		g := got.GetRows()[0]
		l1, l2 := g.GetLines()[0], g.GetLines()[1]
		for _, c := range []struct{ what, got, want string }{
			{"subtotal", g.GetSubtotal(), "12.30"}, {"tax", g.GetTax(), "1.24"}, {"total", g.GetTotal(), "13.54"},
			{"paid", g.GetPaid(), "10.00"}, {"outstanding", g.GetOutstanding(), "3.540"},
			{"line 1 billed_cost", l1.GetBilledCost(), "12.3040"}, {"line 1 fx_rate", l1.GetFxRate(), "1"},
			{"line 1 converted", l1.GetConverted(), "12.3040"}, {"line 1 amount", l1.GetAmount(), "12.30"},
			{"line 2 billed_cost", l2.GetBilledCost(), ""}, {"line 2 fx_rate", l2.GetFxRate(), ""},
			{"line 2 converted", l2.GetConverted(), ""}, {"line 2 amount", l2.GetAmount(), "0.00"},
			{"tax 1 rate", g.GetTaxes()[0].GetRatePercentage(), "10.1"}, {"tax 2 rate", g.GetTaxes()[1].GetRatePercentage(), ""},
			{"tax 2 tax", g.GetTaxes()[1].GetTax(), "0.00"},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
			}
		}
		pay, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{PayerAccountId: "111111111111"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pay.GetPayments()) != 1 || pay.GetPayments()[0].GetAmount() != "10" || pay.GetPayments()[0].GetRefunded() != "0" {
			t.Fatalf("payments %v", pay.GetPayments())
		}
		if p := pay.GetInvoices(); len(p) != 1 || p[0].GetIssued() != "13.54" || p[0].GetOutstanding() != "3.540" {
			t.Fatalf("receivables %v", p)
		}
	})
}

// TestBillableWriterRowIDs: rows are read by key and written by the id Insert
// or Lookup returned, in this transaction or a later one.
func TestBillableWriterRowIDs(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		key := func(service string) readmodel.BillableKey {
			return readmodel.BillableKey{Month: "2026-09", PayerAccountID: "111111111111", SourceAccountID: "333333333333",
				AccountID: "333333333301", Service: service, Currency: "USD"}
		}
		ids := map[string]int64{}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			w, err := readmodel.NewBillableWriter(ctx, tx)
			if err != nil {
				return err
			}
			defer w.Close()
			for i, svc := range []string{"AmazonEC2", "AmazonS3", "AWSLambda"} {
				if r, err := w.Get(ctx, key(svc)); r != nil || err != nil {
					t.Fatalf("Get before insert = %v, %v", r, err)
				}
				id, err := w.Insert(ctx, &readmodel.BillableRow{BillableKey: key(svc), BilledCost: "1", UsageQuantity: "1",
					RecordCount: 1, UpdatedPosition: uint64(i + 1)})
				if err != nil {
					return err
				}
				ids[svc] = id
			}
			// Updated in the same transaction, by id.
			return w.Update(ctx, ids["AmazonS3"], &readmodel.BillableRow{BillableKey: key("AmazonS3"), BilledCost: "2.50",
				UsageQuantity: "2", RecordCount: 2, UpdatedPosition: 4})
		})
		if ids["AmazonEC2"] == ids["AmazonS3"] || ids["AmazonS3"] == ids["AWSLambda"] {
			t.Fatalf("ids %v are not distinct", ids)
		}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			w, err := readmodel.NewBillableWriter(ctx, tx)
			if err != nil {
				return err
			}
			defer w.Close()
			r, id, err := w.Lookup(ctx, key("AmazonS3"))
			if err != nil {
				return err
			}
			want := &readmodel.BillableRow{BillableKey: key("AmazonS3"), BilledCost: "2.50", UsageQuantity: "2", RecordCount: 2, UpdatedPosition: 4}
			if id != ids["AmazonS3"] || *r != *want {
				t.Fatalf("Lookup = %+v (id %d), want %+v (id %d)", r, id, want, ids["AmazonS3"])
			}
			// An id kept from an earlier transaction still addresses its row.
			if err := w.Update(ctx, ids["AWSLambda"], &readmodel.BillableRow{BillableKey: key("AWSLambda"), BilledCost: "7",
				UsageQuantity: "7", RecordCount: 7, UpdatedPosition: 5}); err != nil {
				return err
			}
			if err := w.Update(ctx, 1<<40, want); err == nil {
				t.Fatal("an update of an id no row has was accepted")
			}
			return nil
		})
	})
}

// TestProformaStoreRoundTrip: the proforma projection's tables as the store
// writes and reads them: configuration, per-SKU aggregates by row id, pro
// forma rows, closed universes.
func TestProformaStoreRoundTrip(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		const owner, primary, member = "111111111111", "333333333333", "333333333301"
		sku := readmodel.SKUKey{Month: "2026-09", PayerAccountID: owner, DirectPayerAccountID: owner, AccountID: member,
			Service: "AmazonS3", UsageType: "TimedStorage-ByteHrs", Operation: "", FreeTier: true}
		pk := readmodel.ProformaKey{Month: "2026-09", PayerAccountID: owner, OwnerAccountID: owner, BillingGroupID: "bg-1",
			AccountID: member, Service: "AmazonS3"}
		var skuID, rowID int64
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			st := readmodel.NewProformaStore(tx)
			defer st.Close()
			rule := &billingv1.PricingRule{PricingRuleId: "r-1", OwnerAccountId: owner, Name: "ten", ModifierPercentage: "10"}
			if err := st.PutRule(ctx, rule); err != nil {
				return err
			}
			if err := st.PutPlan(ctx, "pp-1", owner, []string{"r-1"}); err != nil {
				return err
			}
			if err := st.PutGroup(ctx, readmodel.PricingGroup{ID: "bg-1", Owner: owner, Primary: primary, PlanID: "pp-1"}, []string{primary, member}); err != nil {
				return err
			}
			var err error
			if skuID, err = st.InsertSKU(ctx, &readmodel.SKURow{SKUKey: sku, ListCost: "1.10", BilledCost: "1", UsageQuantity: "3", RecordCount: 1}); err != nil {
				return err
			}
			if rowID, err = st.InsertRow(ctx, &readmodel.ProformaRowData{ProformaKey: pk, ListCost: "1.10", BillableCost: "1",
				ProformaCost: "1.21", RecordCount: 1}); err != nil {
				return err
			}
			return st.MarkClosed(ctx, readmodel.Universe{Month: "2026-08", PayerAccountID: owner}, 3)
		})
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			st := readmodel.NewProformaStore(tx)
			defer st.Close()
			rules, err := st.PlanRules(ctx, "pp-1")
			if err != nil || len(rules) != 1 || rules[0].GetModifierPercentage() != "10" {
				t.Fatalf("PlanRules = %v, %v", rules, err)
			}
			groups, err := st.GroupsHolding(ctx, owner, member)
			if err != nil || len(groups) != 1 || groups[0].PlanID != "pp-1" {
				t.Fatalf("GroupsHolding = %v, %v", groups, err)
			}
			got, id, err := st.LookupSKU(ctx, sku)
			if err != nil || id != skuID || got == nil || got.ListCost != "1.10" || !got.FreeTier {
				t.Fatalf("LookupSKU = %+v (id %d), %v; want id %d", got, id, err, skuID)
			}
			got.ListCost, got.RecordCount = "2.20", 2
			if err := st.UpdateSKU(ctx, id, got); err != nil {
				return err
			}
			var seen []readmodel.SKURow
			if err := st.EachSKU(ctx, readmodel.Universe{Month: "2026-09", PayerAccountID: owner}, func(r *readmodel.SKURow) error {
				seen = append(seen, *r)
				return nil
			}); err != nil {
				return err
			}
			if len(seen) != 1 || seen[0] != *got {
				t.Fatalf("EachSKU = %+v, want %+v", seen, *got)
			}
			us, err := st.UniversesOf(ctx, owner)
			if err != nil || len(us) != 1 || us[0].Month != "2026-09" {
				t.Fatalf("UniversesOf = %v, %v", us, err)
			}
			row, id, err := st.LookupRow(ctx, pk)
			if err != nil || id != rowID || row.ProformaCost != "1.21" {
				t.Fatalf("LookupRow = %+v (id %d), %v; want id %d", row, id, err, rowID)
			}
			row.ProformaCost = "2.42"
			if err := st.UpdateRow(ctx, id, row); err != nil {
				return err
			}
			for u, want := range map[readmodel.Universe]bool{{Month: "2026-08", PayerAccountID: owner}: true, {Month: "2026-09", PayerAccountID: owner}: false} {
				if closed, err := st.Closed(ctx, u); err != nil || closed != want {
					t.Fatalf("Closed(%v) = %v, %v; want %v", u, closed, err, want)
				}
			}
			return nil
		})
		rep, err := db.ReportProforma(context.Background(), "2026-09", "", "", "")
		if err != nil || len(rep.GetRows()) != 1 || rep.GetTotal() != "2.42" || rep.GetRows()[0].GetListCost() != "1.1" {
			t.Fatalf("ReportProforma = %v, %v", rep, err)
		}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			st := readmodel.NewProformaStore(tx)
			defer st.Close()
			return st.DeleteRows(ctx, readmodel.Universe{Month: "2026-09", PayerAccountID: owner})
		})
		if rep, err := db.ReportProforma(context.Background(), "2026-09", "", "", ""); err != nil || len(rep.GetRows()) != 0 {
			t.Fatalf("after DeleteRows: %v, %v", rep, err)
		}
	})
}

// TestDeadLetterLifecycle (U4): record, list, hand back for a redrive,
// resolve; payloads that are not valid UTF-8 or hold NUL are stored as text
// on both backends (PostgreSQL's TEXT refuses NUL), exact in the entry.
func TestDeadLetterLifecycle(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		at := time.Date(2026, 9, 3, 10, 0, 0, 0, time.UTC)
		raw := &billingv1.UsageRejected{DeadLetterId: "dl-raw", Reason: "MALFORMED", Message: "not JSON",
			Raw: []byte("{\"usage_id\": \x00\xff}"), Origin: "nats"}
		rec := &billingv1.UsageRejected{DeadLetterId: "dl-rec", Reason: "UNKNOWN_ACCOUNT", Message: "no such account",
			Record: &billingv1.UsageRecord{UsageId: "u-1", AccountId: "999999999999", Service: "AmazonEC2"}, Origin: "http"}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			for i, r := range []*billingv1.UsageRejected{raw, rec} {
				if err := readmodel.InsertDeadLetter(ctx, tx, &readmodel.DeadLetterRow{Rejected: r, Month: "2026-09",
					Position: 5, Index: i, RecordedAt: at}); err != nil {
					return err
				}
			}
			return nil
		})
		list, err := db.ListDeadLetters(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeadLetters()) != 2 || list.GetDeadLetters()[0].GetDeadLetterId() != "dl-raw" ||
			list.GetDeadLetters()[0].GetPayload() != "{\"usage_id\": \uFFFD\uFFFD}" || list.GetByReason()["MALFORMED"] != 1 ||
			list.GetDeadLetters()[1].GetRecordedAt() != "2026-09-03T10:00:00Z" {
			t.Fatalf("ListDeadLetters = %v", list)
		}
		back, err := db.DeadLetterRecords(ctx, nil)
		if err != nil || len(back) != 2 || !proto.Equal(back[0], raw) || !proto.Equal(back[1], rec) {
			t.Fatalf("DeadLetterRecords = %v, %v", back, err)
		}
		withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			return readmodel.ResolveDeadLetter(ctx, tx, "dl-raw", "2026-10", 8, at.Add(time.Hour))
		})
		if _, err := db.DeadLetterRecords(ctx, []string{"dl-raw"}); !errors.Is(err, readmodel.ErrDeadLetterResolved) {
			t.Fatalf("records of a resolved dead letter: %v", err)
		}
		if _, err := db.DeadLetterRecords(ctx, []string{"dl-none"}); !errors.Is(err, readmodel.ErrUnknownDeadLetter) {
			t.Fatalf("records of an unknown dead letter: %v", err)
		}
		err = db.WithTx(ctx, func(tx *sql.Tx) error { return readmodel.ResolveDeadLetter(ctx, tx, "dl-none", "2026-10", 9, at) })
		if !errors.Is(err, readmodel.ErrUnknownDeadLetter) {
			t.Fatalf("resolving an unknown dead letter: %v", err)
		}
		sep, err := db.MonthDigest(ctx, "2026-09")
		if err != nil {
			t.Fatal(err)
		}
		oct, err := db.MonthDigest(ctx, "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		if got := sep.GetDigests()[1].GetTotals(); got["recorded"] != "2" || got["resolved"] != "0" {
			t.Fatalf("September dead letter digest %v", got)
		}
		if got := oct.GetDigests()[1].GetTotals(); got["recorded"] != "0" || got["resolved"] != "1" {
			t.Fatalf("October dead letter digest %v", got)
		}
	})
}

// TestTextOrderIsByteOrder: reports order text byte by byte on both
// backends, whatever collation the PostgreSQL database has (the test server's
// sorts "rt_a" before "rt-B" under its ICU locale).
func TestTextOrderIsByteOrder(t *testing.T) {
	t.Parallel()
	ids := []string{"rt-B", "rt-a", "rt_a", "rtA", "rt.1", "RT-0", "rt-10", "rt-9", "rt a", "rt-é"}
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		var rows []*readmodel.TransferRow
		for i, id := range ids {
			rows = append(rows, row(id, "111111111111", "333333333333", readmodel.TransferRequested, uint64(i+1)))
		}
		seed(t, db, rows...)
		got, err := db.ListTransfers(context.Background(), readmodel.TransferFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, tr := range got {
			order = append(order, tr.GetTransferId())
		}
		want := slices.Sorted(slices.Values(ids))
		if !slices.Equal(order, want) {
			t.Fatalf("order %q, want byte order %q", order, want)
		}
	})
}

// TestConcurrentCheckpointAdvance: two transactions advancing the same
// checkpoint from the same position: one commits, the other fails with
// ErrCheckpointMoved and commits nothing (SQLite serialises them; PostgreSQL
// blocks the second on the checkpoint row, then finds it moved).
func TestConcurrentCheckpointAdvance(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		if err := db.WithTx(ctx, func(tx *sql.Tx) error { return readmodel.AdvanceCheckpoint(ctx, tx, "p", 0, 5) }); err != nil {
			t.Fatal(err)
		}
		first := make(chan struct{})
		release := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[0] = db.WithTx(ctx, func(tx *sql.Tx) error {
				if err := readmodel.PutTransfer(ctx, tx, row("rt-1", "111111111111", "333333333333", readmodel.TransferRequested, 6)); err != nil {
					return err
				}
				if err := readmodel.AdvanceCheckpoint(ctx, tx, "p", 5, 6); err != nil {
					return err
				}
				close(first)
				<-release
				return nil
			})
		}()
		<-first
		go func() {
			defer wg.Done()
			errs[1] = db.WithTx(ctx, func(tx *sql.Tx) error {
				if err := readmodel.PutTransfer(ctx, tx, row("rt-2", "111111111111", "444444444444", readmodel.TransferRequested, 7)); err != nil {
					return err
				}
				return readmodel.AdvanceCheckpoint(ctx, tx, "p", 5, 7)
			})
		}()
		time.Sleep(50 * time.Millisecond) // let the second reach its lock
		close(release)
		wg.Wait()
		if errs[0] != nil || !errors.Is(errs[1], readmodel.ErrCheckpointMoved) {
			t.Fatalf("first = %v, second = %v; want nil and ErrCheckpointMoved", errs[0], errs[1])
		}
		if cp, err := db.Checkpoint(ctx, "p"); err != nil || cp != 6 {
			t.Fatalf("checkpoint %d, %v; want 6", cp, err)
		}
		got, err := db.ListTransfers(ctx, readmodel.TransferFilter{})
		if err != nil || len(got) != 1 || got[0].GetTransferId() != "rt-1" {
			t.Fatalf("transfers %v, %v; want rt-1 only", got, err)
		}
	})
}

// TestSchemaCookie: SQLite's cookie moves with the schema, so cached row ids
// are dropped; PostgreSQL's row ids never move, and its cookie is constant.
func TestSchemaCookie(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		cookie := func() int64 {
			var c int64
			withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
				var err error
				c, err = readmodel.SchemaCookie(ctx, tx)
				return err
			})
			return c
		}
		before := cookie()
		if _, err := db.SQL().Exec(`CREATE TABLE scratch (x BIGINT)`); err != nil {
			t.Fatal(err)
		}
		after := cookie()
		if moved := after != before; moved != (b == readmodeltest.SQLite) {
			t.Fatalf("cookie %d → %d after a schema change on %s", before, after, b)
		}
	})
}

// TestOpenPostgresErrors: a bad URL or an unreachable server is an error that
// names the server without its password.
func TestOpenPostgresErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := readmodel.Open(ctx, "postgres://billing:s3cret@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Open of an unreachable server = %v", err)
	}
}

// TestP5_AClosedMonthKeepsItsCustomLineItems (P5, R3, X5): when a payer
// closes a month, the custom line items it owns are frozen for that month:
// changing, adding or deleting items afterwards changes the open months'
// pro forma, never the closed one's; another owner's items stay live.
func TestP5_AClosedMonthKeepsItsCustomLineItems(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		const owner, other = "111111111111", "444444444444"
		item := func(id, group, own, flat string) *billingv1.CustomLineItem {
			return &billingv1.CustomLineItem{CustomLineItemId: id, OwnerAccountId: own, BillingGroupId: group, Name: id,
				ChargeType: billingv1.CustomLineItemChargeType_CUSTOM_LINE_ITEM_CHARGE_TYPE_FEE, FlatAmount: flat, StartMonth: "2026-09"}
		}
		step := func(f func(ctx context.Context, st *readmodel.ProformaStore) error) {
			t.Helper()
			withTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
				st := readmodel.NewProformaStore(tx)
				defer st.Close()
				return f(ctx, st)
			})
		}
		items := func(month string) map[string]string {
			t.Helper()
			rep, err := db.ReportProforma(context.Background(), month, "", "", "")
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, r := range rep.GetRows() {
				out[r.GetCustomLineItemId()] = r.GetProformaCost()
			}
			return out
		}
		want := func(what, month string, w map[string]string) {
			t.Helper()
			if got := items(month); fmt.Sprint(got) != fmt.Sprint(w) {
				t.Fatalf("%s: %s pro forma items %v, want %v", what, month, got, w)
			}
		}
		step(func(ctx context.Context, st *readmodel.ProformaStore) error {
			for _, it := range []*billingv1.CustomLineItem{item("cli-support", "bg-1", owner, "100"), item("cli-other", "bg-9", other, "10")} {
				if err := st.PutItem(ctx, it); err != nil {
					return err
				}
			}
			return st.MarkClosed(ctx, readmodel.Universe{Month: "2026-09", PayerAccountID: owner}, 7)
		})
		want("at the close", "2026-09", map[string]string{"cli-support": "100", "cli-other": "10"})
		step(func(ctx context.Context, st *readmodel.ProformaStore) error {
			for _, it := range []*billingv1.CustomLineItem{item("cli-support", "bg-1", owner, "250"), item("cli-new", "bg-1", owner, "5"), item("cli-other", "bg-9", other, "12")} {
				if err := st.PutItem(ctx, it); err != nil {
					return err
				}
			}
			return nil
		})
		want("after changes, closed", "2026-09", map[string]string{"cli-support": "100", "cli-other": "12"})
		want("after changes, open", "2026-10", map[string]string{"cli-support": "250", "cli-new": "5", "cli-other": "12"})
		step(func(ctx context.Context, st *readmodel.ProformaStore) error { return st.DeleteItem(ctx, "cli-support") })
		want("after the delete, closed", "2026-09", map[string]string{"cli-support": "100", "cli-other": "12"})
		want("after the delete, open", "2026-10", map[string]string{"cli-new": "5", "cli-other": "12"})
		// The group filter and the owner filter see the frozen items too.
		if rep, err := db.ReportProforma(context.Background(), "2026-09", owner, "bg-1", ""); err != nil || len(rep.GetRows()) != 1 || rep.GetTotal() != "100" {
			t.Fatalf("closed September of bg-1: %v, %v; want the frozen 100", rep, err)
		}
	})
}
