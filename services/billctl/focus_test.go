package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// focusHeader is a FOCUS 1.2 header with more columns than the import reads,
// in an order that differs from the mapping's.
const focusHeader = "BillingAccountId,ChargeCategory,BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,SubAccountId,ServiceName,SkuId,SkuMeter,x_Operation,RegionId,PricingQuantity,PricingUnit,ListUnitPrice,ResourceId,Tags"

func writeCSV(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "focus.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mapOne maps a single data row under header.
func mapOne(t *testing.T, header, row string) (*billingv1.UsageRecord, error) {
	t.Helper()
	next, err := focusSource(strings.NewReader(header+"\n"+row+"\n"), new(int))
	if err != nil {
		t.Fatal(err)
	}
	it, ok, err := next()
	if err != nil || !ok {
		t.Fatalf("row: ok=%v err=%v", ok, err)
	}
	if it.bad != "" {
		return nil, &mappingError{it.bad}
	}
	rec := &billingv1.UsageRecord{}
	if err := protoJSONUnmarshal(it.payload, rec); err != nil {
		t.Fatalf("payload %s: %v", it.payload, err)
	}
	return rec, nil
}

type mappingError struct{ msg string }

func (e *mappingError) Error() string { return e.msg }

func TestFocusMapping(t *testing.T) {
	t.Parallel()
	rec, err := mapOne(t, focusHeader,
		`999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03 01:00:00,222222222223,AmazonEC2,SKU123,BoxUsage:m6i.large,RunInstances,us-east-1,10,Hrs,0.096,i-0abc,"{""team"":""a"",""n"":3,""x"":null}"`)
	if err != nil {
		t.Fatal(err)
	}
	want := &billingv1.UsageRecord{
		UsageId:           rec.GetUsageId(),
		AccountId:         "222222222223",
		ChargePeriodStart: timestamppb.New(mustTime(t, "2026-09-03T00:00:00Z")),
		ChargePeriodEnd:   timestamppb.New(mustTime(t, "2026-09-03T01:00:00Z")),
		Service:           "AmazonEC2",
		UsageType:         "BoxUsage:m6i.large", // SkuMeter wins over SkuId
		Operation:         "RunInstances",
		Region:            "us-east-1",
		Quantity:          "10",
		Unit:              "Hrs",
		ListUnitPrice:     "0.096",
		BilledCost:        "0.80",
		Currency:          "USD",
		ChargeCategory:    "Usage",
		Tags:              map[string]string{"team": "a", "n": "3", "x": ""},
	}
	if !proto.Equal(rec, want) {
		t.Fatalf("record = %v\nwant %v", rec, want)
	}
	if !strings.HasPrefix(rec.GetUsageId(), "focus-") || len(rec.GetUsageId()) != len("focus-")+32 {
		t.Fatalf("derived usage_id = %q", rec.GetUsageId())
	}

	t.Run("SkuId when there is no SkuMeter, explicit usage id", func(t *testing.T) {
		rec, err := mapOne(t, "x_UsageId,SubAccountId,ChargePeriodStart,ChargePeriodEnd,ServiceName,SkuId,PricingQuantity,BilledCost,BillingCurrency",
			"up-7,222222222223,2026-09-03 00:00:00,2026-09-03T01:00:00Z,AmazonS3,SKU9,1.5,0.02,USD")
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetUsageId() != "up-7" || rec.GetUsageType() != "SKU9" || rec.GetOperation() != "" || rec.GetTags() != nil {
			t.Fatalf("record = %v", rec)
		}
	})

	t.Run("rows that cannot be mapped are malformed", func(t *testing.T) {
		for name, row := range map[string]string{
			"bad date":  `999999999990,Usage,0.80,USD,03/09/2026,2026-09-03 01:00:00,222222222223,AmazonEC2,,,,,10,Hrs,0.096,,`,
			"bad tags":  `999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03 01:00:00,222222222223,AmazonEC2,,,,,10,Hrs,0.096,,team=a`,
			"tag array": `999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03 01:00:00,222222222223,AmazonEC2,,,,,10,Hrs,0.096,,"[1]"`,
		} {
			if _, err := mapOne(t, focusHeader, row); err == nil {
				t.Errorf("%s: mapped without error", name)
			}
		}
	})
}

func TestFocusDerivedUsageIDIsStable(t *testing.T) {
	t.Parallel()
	row := func(start, cost, resource, tags string) string {
		return `999999999990,Usage,` + cost + `,USD,` + start + `,2026-09-03T01:00:00Z,222222222223,AmazonEC2,SKU123,BoxUsage:m6i.large,RunInstances,us-east-1,1,Hrs,0.096,` + resource + `,` + tags
	}
	id := func(r string) string {
		t.Helper()
		rec, err := mapOne(t, focusHeader, r)
		if err != nil {
			t.Fatal(err)
		}
		return rec.GetUsageId()
	}
	base := id(row("2026-09-03T00:00:00Z", "0.80", "i-1", `"{""a"":""1"",""b"":""2""}"`))
	same := []string{
		row("2026-09-03T00:00:00Z", "0.80", "i-1", `"{""a"":""1"",""b"":""2""}"`),
		row("2026-09-03 00:00:00", "0.80", "i-1", `"{""a"":""1"",""b"":""2""}"`),  // another time format, same instant
		row("2026-09-03T00:00:00Z", "0.80", "i-1", `"{""b"":""2"",""a"":""1""}"`), // tag order
	}
	for _, r := range same {
		if got := id(r); got != base {
			t.Errorf("id of %s = %s, want %s", r, got, base)
		}
	}
	differ := []string{
		row("2026-09-03T00:00:00Z", "0.81", "i-1", `"{""a"":""1"",""b"":""2""}"`),
		row("2026-09-03T00:00:00Z", "0.80", "i-2", `"{""a"":""1"",""b"":""2""}"`), // another resource, same usage
		row("2026-09-03T00:00:00Z", "0.80", "i-1", `"{""a"":""1""}"`),
	}
	for _, r := range differ {
		if got := id(r); got == base {
			t.Errorf("id of %s equals the base id", r)
		}
	}
	// A golden value: the id must not change between billctl versions, or
	// re-importing an old file would count its rows twice.
	if base != "focus-f589191ff8f1b3e5d8e6b638f2d4b94f" {
		t.Errorf("derived id = %s: the canonical form changed", base)
	}
}

func TestFocusMissingColumnsSendsNothing(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	resp := startResponder(t, url)
	file := writeCSV(t, "SubAccountId,ChargePeriodStart,ChargePeriodEnd,PricingQuantity,BillingCurrency\n222222222223,2026-09-03T00:00:00Z,2026-09-03T01:00:00Z,1,USD\n")
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "import", "--format", "focus", file, "--nats-url", url)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "missing FOCUS columns: ServiceName, BilledCost") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if n, _, _ := resp.snapshot(); n != 0 {
		t.Fatalf("responder got %d requests", n)
	}
	for name, content := range map[string]string{
		"empty file":       "",
		"duplicate column": "BilledCost," + focusHeader + "\n",
	} {
		code, _, stderr := runCLI(t, "", "--token", testToken, "usage", "import", "--format", "focus", writeCSV(t, content), "--nats-url", url)
		if code != 1 || !strings.HasPrefix(stderr, "INVALID_ARGUMENT: ") {
			t.Errorf("%s: exit %d stderr %q", name, code, stderr)
		}
	}
}

func TestUsageImportOverNATS(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	resp := startResponder(t, url)
	csv := "\ufeff" + focusHeader + "\n" +
		`999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03T01:00:00Z,222222222223,AmazonEC2,,BoxUsage:m6i.large,RunInstances,us-east-1,10,Hrs,0.096,i-1,` + "\n" +
		`999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03T01:00:00Z,222222222223,AmazonEC2,,BoxUsage:m6i.large,RunInstances,us-east-1,10,Hrs,0.096,i-2,` + "\n" +
		`999999999990,Usage,0.10,USD,yesterday,2026-09-03T01:00:00Z,222222222223,AmazonEC2,,,,,1,Hrs,0.1,i-3,` + "\n" +
		`999999999990,Usage,0.10,USD,2026-09-03T00:00:00Z,2026-09-03T01:00:00Z,` + unknownAccount + `,AmazonS3,,,,,1,GB,0.1,,` + "\n" +
		`999999999990,Usage,0.10,USD,2026-09-03T00:00:00Z` + "\n"
	file := writeCSV(t, csv)

	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "import", "--format", "focus", file, "--nats-url", url, "--batch", "2")
	if code != 1 || stdout != "rows 5, accepted 2, duplicates 0, rejected 3 (MALFORMED: 2, UNKNOWN_ACCOUNT: 1)\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	errLines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(errLines) != 3 || !strings.HasPrefix(errLines[0], `line 4: MALFORMED: ChargePeriodStart "yesterday"`) ||
		!strings.HasPrefix(errLines[1], "line 5: UNKNOWN_ACCOUNT: ") ||
		errLines[2] != "line 6: MALFORMED: the row has 5 cells, the header 17" {
		t.Fatalf("stderr = %q", stderr)
	}
	_, lines, _ := resp.snapshot()
	var bad struct {
		Line int               `json:"focus_line"`
		Row  map[string]string `json:"row"`
	}
	if len(lines) != 5 || json.Unmarshal([]byte(lines[2]), &bad) != nil || bad.Line != 4 || bad.Row["ChargePeriodStart"] != "yesterday" {
		t.Fatalf("the unmappable row was not sent for the dead letter: %q", lines)
	}

	// Importing the same file again changes nothing.
	code, stdout, _ = runCLI(t, "", "--token", testToken, "-o", "json", "usage", "import", "--format", "focus", file, "--nats-url", url)
	var sum sendSummaryJSON
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if code != 1 || sum.Rows == nil || *sum.Rows != 5 || sum.Accepted != 0 || sum.Duplicates != 2 || len(sum.Rejections) != 3 || sum.Rejections[1].DeadLetterID == "" {
		t.Fatalf("second import: exit %d summary %+v", code, sum)
	}
}

func TestUsageImportOverHTTP(t *testing.T) {
	t.Parallel()
	url := newServer(t, api.Options{Usage: &httpIngester{}, Malformed: &memorySink{}})
	file := writeCSV(t, focusHeader+"\n"+
		`999999999990,Usage,0.80,USD,2026-09-03T00:00:00Z,2026-09-03T01:00:00Z,222222222223,AmazonEC2,,BoxUsage:m6i.large,RunInstances,us-east-1,10,Hrs,0.096,i-1,`+"\n")
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "usage", "import", "--format", "focus", "--http", file)
	if code != 0 || stdout != "rows 1, accepted 1, duplicates 0, rejected 0\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func protoJSONUnmarshal(b []byte, m proto.Message) error { return protojson.Unmarshal(b, m) }
