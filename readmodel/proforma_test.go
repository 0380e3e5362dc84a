package readmodel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestMarginPercentage (P6): margin / pro forma × 100, rounded half up (away
// from zero) to 2 decimals from the exact figures; empty for a zero pro forma.
func TestMarginPercentage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ margin, proforma, want string }{
		{"1", "8", "12.50"},
		{"1", "3", "33.33"},
		{"2", "3", "66.67"},
		{"1", "800", "0.13"}, // 0.125: the tie rounds up
		{"-1", "800", "-0.13"},
		{"-5", "10", "-50.00"},
		{"5", "-10", "-50.00"}, // credits above usage: a negative pro forma
		{"-5", "-10", "50.00"}, // both negative
		{"0.0000001", "1000", "0.00"},
		{"-0.0000001", "1000", "0.00"}, // never "-0.00"
		{"0", "7", "0.00"},
		{"53.13117", "65.43617", "81.20"},
		{"0.00499999999999999999999999999999999999999999", "1", "0.50"},
		{"0.00004999999999999999999999999999999999999999", "1", "0.00"},
		{"3", "0", ""},
		{"0", "0", ""},
	} {
		m, err1 := domain.ParseDecimal(c.margin)
		p, err2 := domain.ParseDecimal(c.proforma)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		got, err := readmodel.MarginPercentage(m, p)
		if err != nil || got != c.want {
			t.Errorf("MarginPercentage(%s, %s) = %q, %v; want %q", c.margin, c.proforma, got, err, c.want)
		}
	}
}

// TestProformaReportsRejectBadFilters: bad filter values are INVALID_ARGUMENT
// naming the value, and an empty database answers empty reports with zero totals.
func TestProformaReportsRejectBadFilters(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		for _, c := range [][4]string{{"", "", "", ""}, {"2026-13", "", "", ""}, {"2026-09", "12", "", ""}, {"2026-09", "", "bg x", ""}, {"2026-09", "", "", "abc"}} {
			_, err := db.ReportProforma(ctx, c[0], c[1], c[2], c[3])
			if !errors.Is(err, readmodel.ErrInvalidFilter) || domain.CodeOf(err) != domain.CodeInvalidArgument {
				t.Errorf("ReportProforma(%q) = %v, want an invalid filter", c, err)
			}
		}
		for _, c := range [][2]string{{"", ""}, {"2026-9", ""}, {"2026-09", "1"}} {
			_, err := db.ReportCost(ctx, c[0], c[1])
			if !errors.Is(err, readmodel.ErrInvalidFilter) || domain.CodeOf(err) != domain.CodeInvalidArgument {
				t.Errorf("ReportCost(%q) = %v, want an invalid filter", c, err)
			}
		}
		pr, err := db.ReportProforma(ctx, "2026-09", "", "", "")
		if err != nil || len(pr.GetRows()) != 0 || pr.GetTotal() != "0" {
			t.Fatalf("empty pro forma = %v, %v", pr, err)
		}
		cr, err := db.ReportCost(ctx, "2026-09", "")
		if err != nil || len(cr.GetRows()) != 0 || cr.GetBillableTotal() != "0" || cr.GetProformaTotal() != "0" || cr.GetMarginTotal() != "0" || cr.GetMarginPercentage() != "" {
			t.Fatalf("empty cost = %v, %v", cr, err)
		}
		ds, err := db.ProformaDigests(ctx, "2026-09")
		if err != nil || len(ds) != 2 || ds[0].GetName() != readmodel.DigestProforma || ds[1].GetName() != readmodel.DigestCost || ds[0].GetRows() != 0 {
			t.Fatalf("empty digests = %v, %v", ds, err)
		}
	})
}
