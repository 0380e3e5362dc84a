package readmodel_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

func digestRows() []*billingv1.BillableRow {
	row := func(payer, account, service, cost, qty string, n uint64) *billingv1.BillableRow {
		return &billingv1.BillableRow{Month: "2026-09", PayerAccountId: payer, SourceAccountId: "333333333333",
			AccountId: account, Service: service, BilledCost: cost, UsageQuantity: qty, RecordCount: n, Currency: "USD"}
	}
	return []*billingv1.BillableRow{
		row("111111111111", "333333333301", "AmazonEC2", "0.396", "11", 3),
		row("111111111111", "333333333301", "AmazonS3", "1.5", "100.5", 1),
		row("222222222222", "444444444401", "AmazonEC2", "-0.000001", "0", 2),
	}
}

// TestBillableDigest (R2): the digest is a function of the rows' values only
// (not their order nor how a decimal is written), and changes when any field
// of any row changes; totals are exact.
func TestBillableDigest(t *testing.T) {
	t.Parallel()
	base := readmodel.BillableDigest(digestRows())
	if base.GetName() != readmodel.DigestBillable || base.GetRows() != 3 || len(base.GetDigest()) != 64 {
		t.Fatalf("digest %v", base)
	}
	if got := base.GetTotals(); got["billed_cost"] != "1.895999" || got["records"] != "6" || len(got) != 2 {
		t.Fatalf("totals %v, want billed_cost 1.895999, records 6", got)
	}
	if empty := readmodel.BillableDigest(nil); empty.GetTotals()["billed_cost"] != "0" || empty.GetDigest() == base.GetDigest() {
		t.Fatalf("empty digest %v", empty)
	}

	same := map[string]func([]*billingv1.BillableRow){
		"reversed":            func(r []*billingv1.BillableRow) { slices.Reverse(r) },
		"trailing zeros":      func(r []*billingv1.BillableRow) { r[0].BilledCost, r[1].UsageQuantity = "0.3960", "100.50" },
		"exponent form":       func(r []*billingv1.BillableRow) { r[1].BilledCost = "15E-1" },
		"negative zero":       func(r []*billingv1.BillableRow) { r[2].UsageQuantity = "-0.00" },
		"explicit plus sign":  func(r []*billingv1.BillableRow) { r[1].UsageQuantity = "+100.5" },
		"integer with zeroes": func(r []*billingv1.BillableRow) { r[0].UsageQuantity = "11.000" },
	}
	for name, change := range same {
		rows := digestRows()
		change(rows)
		if got := readmodel.BillableDigest(rows); !proto.Equal(got, base) {
			t.Errorf("%s: digest %v, want %v", name, got, base)
		}
	}

	different := map[string]func([]*billingv1.BillableRow){
		"month":          func(r []*billingv1.BillableRow) { r[0].Month = "2026-10" },
		"payer":          func(r []*billingv1.BillableRow) { r[2].PayerAccountId = "111111111111" },
		"source":         func(r []*billingv1.BillableRow) { r[1].SourceAccountId = "555555555555" },
		"account":        func(r []*billingv1.BillableRow) { r[1].AccountId = "333333333302" },
		"service":        func(r []*billingv1.BillableRow) { r[1].Service = "AmazonS3 " },
		"currency":       func(r []*billingv1.BillableRow) { r[0].Currency = "EUR" },
		"billed cost":    func(r []*billingv1.BillableRow) { r[2].BilledCost = "-0.0000010001" },
		"quantity":       func(r []*billingv1.BillableRow) { r[0].UsageQuantity = "11.0000000001" },
		"record count":   func(r []*billingv1.BillableRow) { r[1].RecordCount = 2 },
		"row missing":    func(r []*billingv1.BillableRow) { r[2] = r[1] },
		"field boundary": func(r []*billingv1.BillableRow) { r[0].Service, r[0].Currency = "AmazonEC2\tUSD", "" },
	}
	for name, change := range different {
		rows := digestRows()
		change(rows)
		if got := readmodel.BillableDigest(rows); got.GetDigest() == base.GetDigest() {
			t.Errorf("%s changed but the digest did not", name)
		}
	}

	rows := digestRows()
	rows[0].BilledCost = "abc"
	if got := readmodel.BillableDigest(rows); got.GetTotals()["invalid_decimals"] != "1" || got.GetDigest() == base.GetDigest() {
		t.Errorf("a row with an invalid decimal: %v", got)
	}
}

// TestDeadLetterDigest: order and repeated resolutions do not matter; ids,
// reasons and resolutions do.
func TestDeadLetterDigest(t *testing.T) {
	t.Parallel()
	rec := []readmodel.DeadLetterEntry{{ID: "dl-1", Reason: "MALFORMED"}, {ID: "dl-2", Reason: "UNKNOWN_ACCOUNT"}}
	base := readmodel.DeadLetterDigest(rec, []string{"dl-1", "dl-0"})
	if base.GetName() != readmodel.DigestDeadLetters || base.GetRows() != 2 ||
		base.GetTotals()["recorded"] != "2" || base.GetTotals()["resolved"] != "2" {
		t.Fatalf("digest %v", base)
	}
	if got := readmodel.DeadLetterDigest([]readmodel.DeadLetterEntry{rec[1], rec[0]}, []string{"dl-0", "dl-1", "dl-0"}); !proto.Equal(got, base) {
		t.Fatalf("reordered: %v, want %v", got, base)
	}
	for name, got := range map[string]*billingv1.ReadModelDigest{
		"reason":       readmodel.DeadLetterDigest([]readmodel.DeadLetterEntry{rec[0], {ID: "dl-2", Reason: "MALFORMED"}}, []string{"dl-1", "dl-0"}),
		"resolution":   readmodel.DeadLetterDigest(rec, []string{"dl-1"}),
		"recorded":     readmodel.DeadLetterDigest(rec[:1], []string{"dl-1", "dl-0"}),
		"id moved tag": readmodel.DeadLetterDigest(rec, []string{"dl-1", "dl-0", "dl-2"}),
	} {
		if got.GetDigest() == base.GetDigest() {
			t.Errorf("%s changed but the digest did not", name)
		}
	}
}
