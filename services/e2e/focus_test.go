package e2e

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const focusUsage = `{"usage_id":"f-1","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage","quantity":"1.5","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.1440000001","currency":"USD"}
{"usage_id":"f-2","account_id":"222222222223","charge_period_start":"2026-09-04T00:00:00Z","charge_period_end":"2026-09-04T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage","quantity":"2","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.192","currency":"USD"}
{"usage_id":"f-3","account_id":"222222222222","charge_period_start":"2026-09-05T00:00:00Z","charge_period_end":"2026-09-05T01:00:00Z","service":"AmazonS3","usage_type":"TimedStorage","quantity":"48","unit":"GB-Mo","list_unit_price":"0.023","billed_cost":"1.104","currency":"USD"}
{"usage_id":"f-4","account_id":"111111111112","charge_period_start":"2026-09-06T00:00:00Z","charge_period_end":"2026-09-06T01:00:00Z","service":"AmazonRDS","usage_type":"InstanceUsage","quantity":"3","unit":"Hrs","list_unit_price":"0.333333","billed_cost":"0.999999","currency":"USD"}
`

// TestFocusExportRoundTrip (R4, issue #6 item 6): the billable view exported
// as FOCUS 1.2 and imported into a fresh ledger with the same organizations
// gives the same billable view, to the last decimal.
func TestFocusExportRoundTrip(t *testing.T) {
	t.Parallel()
	a := startDaemon(t, filepath.Join(t.TempDir(), "a"))
	b := startDaemon(t, filepath.Join(t.TempDir(), "b"))
	for _, d := range []*daemon{a, b} {
		d.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", usageSetup))
		d.ctlOK("", "clock", "set", "2026-10-05")
	}
	a.ctlOK("", "usage", "send", "-f", writeFile(t, "usage.jsonl", focusUsage))
	out := filepath.Join(t.TempDir(), "billable.csv")
	a.ctlOK("", "export", "focus", "--month", "2026-09", "--view", "billable", "--out", out)

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Join(rows[0], ",")
	for _, col := range []string{"BillingAccountId", "SubAccountId", "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd",
		"ChargeCategory", "ChargeClass", "ServiceName", "RegionId", "PricingQuantity", "PricingUnit", "ListUnitPrice", "ListCost",
		"BilledCost", "EffectiveCost", "BillingCurrency", "InvoiceIssuerName", "InvoiceId", "Tags"} {
		if !strings.Contains(","+header+",", ","+col+",") {
			t.Fatalf("header lacks %s: %s", col, header)
		}
	}
	if len(rows) != 1+3 {
		t.Fatalf("want 3 billable rows (EC2 aggregated): %d rows", len(rows)-1)
	}

	b.ctlOK("", "usage", "import", "--format", "focus", out)
	want, got := a.billable("2026-09"), b.billable("2026-09")
	for i := range want.Rows {
		want.Rows[i].RecordCount = 0 // the export aggregates: one record per row
	}
	for i := range got.Rows {
		got.Rows[i].RecordCount = 0
	}
	want.Checkpoint, got.Checkpoint = 0, 0
	if !reflect.DeepEqual(want, got) || want.Total != "2.4399990001" {
		t.Fatalf("round trip:\nexported %+v\nimported %+v", want, got)
	}
	// Importing the same file again changes nothing (stable x_UsageId).
	b.ctlOK("", "usage", "import", "--format", "focus", out)
	if again := b.billable("2026-09"); again.Total != want.Total {
		t.Fatalf("re-import changed the total to %s", again.Total)
	}

	// The pro forma view exports too (no pricing here: at list cost).
	pf := filepath.Join(t.TempDir(), "proforma.csv")
	a.ctlOK("", "export", "focus", "--month", "2026-09", "--view", "proforma", "--out", pf)
	data, err := os.ReadFile(pf)
	if err != nil || !strings.HasPrefix(string(data), "BillingAccountId,SubAccountId,") || strings.Count(string(data), "\n") < 2 {
		t.Fatalf("pro forma export: %v\n%s", err, data)
	}
}
