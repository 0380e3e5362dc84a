package readmodel_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestMigration9MakesEarlierNegativeInvoicesCreditNotes (Y2, Y3): a payments
// read model written before credit notes existed stored a negative invoice as
// PAID with nothing outstanding. Upgraded, it shows it as the payments
// projection now posts it, a credit note with all its credit remaining, and
// counts that credit in the balances; other invoices are unchanged.
func TestMigration9MakesEarlierNegativeInvoicesCreditNotes(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		ctx := context.Background()
		target := b.Target(t)
		const payer, x, y = "111111111111", "222222222222", "333333333333"
		if err := readmodel.MigrateTo(ctx, target, 8,
			`INSERT INTO receivables (invoice_id, payer_account_id, month, source_account_id, invoice_unit_id, seller, currency,
				issued, paid, outstanding, status, posted_position, updated_position) VALUES
				('INV-CN', '`+payer+`', '2026-09', '`+x+`', '', 'EMEA', 'EUR', '-30.00', '0.00', '0.00', 'PAID', 3, 3),
				('INV-CN-JPY', '`+payer+`', '2026-09', '`+x+`', '', 'JP', 'JPY', '-500', '0', '0', 'PAID', 3, 3),
				('INV-ZERO', '`+payer+`', '2026-09', '`+y+`', '', 'EMEA', 'EUR', '0.00', '0.00', '0.00', 'PAID', 3, 3),
				('INV-Y', '`+payer+`', '2026-09', '`+y+`', 'iu-1', 'EMEA', 'EUR', '45.11', '20.00', '25.11', 'PARTIALLY_PAID', 3, 5)`,
			`INSERT INTO checkpoints (projection, position) VALUES ('payments', 5)`,
		); err != nil {
			t.Fatal(err)
		}
		db, err := readmodel.Open(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		got, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{PayerAccountId: payer})
		if err != nil {
			t.Fatal(err)
		}
		row := func(id, source, unit, seller, cur, issued, paid, outstanding, status, applied, remaining string) *billingv1.InvoicePayment {
			return &billingv1.InvoicePayment{InvoiceId: id, PayerAccountId: payer, Month: "2026-09", SourceAccountId: source,
				InvoiceUnitId: unit, Seller: seller, Currency: cur, Issued: issued, Paid: paid, Outstanding: outstanding,
				Status: status, CreditApplied: applied, RemainingCredit: remaining}
		}
		want := &billingv1.ReportPaymentsResponse{
			Invoices: []*billingv1.InvoicePayment{
				row("INV-CN", x, "", "EMEA", "EUR", "-30.00", "0.00", "0.00", "CREDIT", "0.00", "30.00"),
				row("INV-CN-JPY", x, "", "JP", "JPY", "-500", "0", "0", "CREDIT", "0", "500"),
				row("INV-Y", y, "iu-1", "EMEA", "EUR", "45.11", "20.00", "25.11", "PARTIALLY_PAID", "0.00", "0.00"),
				row("INV-ZERO", y, "", "EMEA", "EUR", "0.00", "0.00", "0.00", "PAID", "0.00", "0.00"),
			},
			PayerBalances: []*billingv1.PayerBalance{
				{PayerAccountId: payer, Currency: "EUR", Issued: "15.11", Paid: "20.00", Outstanding: "25.11", UnappliedCredit: "0.00",
					CreditNotes: "30.00", Balance: "-4.89"},
				{PayerAccountId: payer, Currency: "JPY", Issued: "-500", Paid: "0", Outstanding: "0", UnappliedCredit: "0",
					CreditNotes: "500", Balance: "-500"},
			},
			SourceBalances: []*billingv1.SourceBalance{
				{PayerAccountId: payer, SourceAccountId: x, Currency: "EUR", Issued: "-30.00", Paid: "0.00", Outstanding: "0.00",
					CreditNotes: "30.00", Balance: "-30.00"},
				{PayerAccountId: payer, SourceAccountId: x, Currency: "JPY", Issued: "-500", Paid: "0", Outstanding: "0",
					CreditNotes: "500", Balance: "-500"},
				{PayerAccountId: payer, SourceAccountId: y, Currency: "EUR", Issued: "45.11", Paid: "20.00", Outstanding: "25.11",
					CreditNotes: "0.00", Balance: "25.11"},
			},
			Payments:           []*billingv1.PaymentRow{},
			CreditApplications: []*billingv1.CreditApplicationRow{},
			Checkpoint:         5,
		}
		assertProtoEqual(t, "payments after migration 9", got, want)
		// The new statuses are accepted by the rebuilt table's CHECK, and
		// nothing else is.
		if _, err := db.SQL().ExecContext(ctx, `UPDATE receivables SET status = 'CREDIT_APPLIED' WHERE invoice_id = 'INV-CN'`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().ExecContext(ctx, `UPDATE receivables SET status = 'REFUNDED' WHERE invoice_id = 'INV-CN'`); err == nil {
			t.Fatal("status REFUNDED accepted")
		}
	})
}

func assertProtoEqual(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got: %s\nwant: %s", what, prototext.Format(got), prototext.Format(want))
	}
}
