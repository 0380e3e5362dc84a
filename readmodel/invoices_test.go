package readmodel_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestInvoiceQueriesOnAnEmptyReadModel: before any close the reports are
// empty (no rows, no totals) and the digests name the three read models.
func TestInvoiceQueriesOnAnEmptyReadModel(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		inv, err := db.ReportInvoices(ctx, &billingv1.ReportInvoicesRequest{Month: "2026-09"})
		if err != nil || !proto.Equal(inv, &billingv1.ReportInvoicesResponse{}) {
			t.Fatalf("ReportInvoices = %v, %v", inv, err)
		}
		pay, err := db.ReportPayments(ctx, &billingv1.ReportPaymentsRequest{})
		if err != nil || !proto.Equal(pay, &billingv1.ReportPaymentsResponse{}) {
			t.Fatalf("ReportPayments = %v, %v", pay, err)
		}
		tax, err := db.ReportTax(ctx, &billingv1.ReportTaxRequest{Month: "2026-09"})
		if err != nil || !proto.Equal(tax, &billingv1.ReportTaxResponse{}) {
			t.Fatalf("ReportTax = %v, %v", tax, err)
		}
		ds, err := db.InvoiceDigests(ctx, "2026-09")
		if err != nil || len(ds) != 3 {
			t.Fatalf("InvoiceDigests = %v, %v", ds, err)
		}
		for i, name := range []string{readmodel.DigestInvoices, readmodel.DigestTax, readmodel.DigestPayments} {
			if ds[i].GetName() != name || ds[i].GetRows() != 0 || ds[i].GetCheckpoint() != 0 {
				t.Errorf("digest %d = %v, want %s with no rows", i, ds[i], name)
			}
		}
	})
}

// TestInvoiceQueriesRejectBadFilters: bad filter values are INVALID_ARGUMENT.
func TestInvoiceQueriesRejectBadFilters(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		check := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, readmodel.ErrInvalidFilter) || domain.CodeOf(err) != domain.CodeInvalidArgument {
				t.Errorf("%s = %v, want an invalid filter", what, err)
			}
		}
		for _, r := range []*billingv1.ReportInvoicesRequest{{}, {Month: "2026-13"}, {Month: "2026-09", PayerAccountId: "1"},
			{Month: "2026-09", SourceAccountId: "abc"}} {
			_, err := db.ReportInvoices(ctx, r)
			check("ReportInvoices("+r.String()+")", err)
		}
		for _, r := range []*billingv1.ReportPaymentsRequest{{Month: "2026-9"}, {PayerAccountId: "1"}, {SourceAccountId: "x"}} {
			_, err := db.ReportPayments(ctx, r)
			check("ReportPayments("+r.String()+")", err)
		}
		for _, r := range []*billingv1.ReportTaxRequest{{}, {Month: "2026-09", PayerAccountId: "12"}} {
			_, err := db.ReportTax(ctx, r)
			check("ReportTax("+r.String()+")", err)
		}
		_, err := db.InvoiceDigests(ctx, "September")
		check("InvoiceDigests(September)", err)
	})
}
