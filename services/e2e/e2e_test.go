package e2e

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// applyLine is one line of `billctl apply -o json`.
type applyLine struct {
	Line    int    `json:"line"`
	Command string `json:"command"`
	OK      bool   `json:"ok"`
	Result  struct {
		AggregateID string   `json:"aggregate_id"`
		EventIDs    []string `json:"event_ids"`
		Position    u64      `json:"position"`
		Replayed    bool     `json:"replayed"`
	} `json:"result"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// walkthrough is the README walk-through with the start month 2026-09: the
// simulated clock starts on 2026-08-10, so 2026-09 is in the future and the
// invitation can be accepted until 2026-08-25 (T2, T3).
const walkthrough = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner Co","member_account_ids":["111111111112"]}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
{"command":"AddAccount","management_account_id":"111111111111","account_id":"111111111113"}
{"command":"InviteBillSource","transfer_id":"rt-demo1","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09","notes":"welcome"}
{"command":"AcceptTransfer","transfer_id":"rt-demo1"}
`

// TestWalkthrough runs the README walk-through (issue #2) against the real
// binaries: apply, report transfers, and a rejected line that stops apply
// with its line number and code while the lines before it stay applied.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))

	// apply -f FILE: every line applied, in order.
	r := d.ctlOK("", "apply", "-f", writeFile(t, "transfer.jsonl", walkthrough))
	lines := decodeLines[applyLine](t, r)
	wantCmds := []struct{ command, aggregate string }{
		{"RegisterOrganization", "111111111111"},
		{"RegisterOrganization", "222222222222"},
		{"AddAccount", "111111111111"},
		{"InviteBillSource", "rt-demo1"},
		{"AcceptTransfer", "rt-demo1"},
	}
	if len(lines) != len(wantCmds) {
		t.Fatalf("want %d output lines:\n%s", len(wantCmds), r)
	}
	for i, w := range wantCmds {
		l := lines[i]
		if l.Line != i+1 || l.Command != w.command || !l.OK || l.Result.AggregateID != w.aggregate || len(l.Result.EventIDs) == 0 || l.Result.Position == 0 {
			t.Errorf("line %d: got %+v, want %s ok on %s", i+1, l, w.command, w.aggregate)
		}
	}

	// report transfers -o json: the exact fields of the contract (issue #2).
	wantTransfer := map[string]any{
		"transfer_id":       "rt-demo1",
		"payer_account_id":  "111111111111",
		"source_account_id": "222222222222",
		"status":            "ACCEPTED",
		"start_time":        "2026-09-01T00:00:00Z",
		"end_time":          "",
	}
	checkTransfers := func(want int, filter ...string) {
		t.Helper()
		r := d.ctlOK("", append([]string{"report", "transfers"}, filter...)...)
		var out struct {
			Transfers []map[string]any `json:"transfers"`
		}
		decode(t, r, &out)
		if len(out.Transfers) != want {
			t.Fatalf("want %d transfers:\n%s", want, r)
		}
		for _, tr := range out.Transfers {
			for k, v := range wantTransfer {
				if tr[k] != v {
					t.Errorf("report transfers %v: %s = %#v, want %#v\n%s", filter, k, tr[k], v, r)
				}
			}
		}
	}
	checkTransfers(1)
	checkTransfers(1, "--payer", "111111111111")
	checkTransfers(1, "--source", "222222222222")
	checkTransfers(1, "--status", "ACCEPTED")
	checkTransfers(0, "--payer", "222222222222")

	// A rejected line stops apply: line N + command + code on stderr, exit 1;
	// the line before it stays applied, the line after it is not sent.
	rejected := `{"command":"RegisterOrganization","management_account_id":"333333333333","name":"Third Co"}
{"command":"InviteBillSource","payer_account_id":"111111111111","source_account_id":"111111111111","start_month":"2026-09"}
{"command":"RegisterOrganization","management_account_id":"444444444444","name":"Fourth Co"}
`
	r = d.ctl("", "apply", "-f", writeFile(t, "rejected.jsonl", rejected))
	if r.code != 1 || !strings.HasPrefix(r.stderr, "line 2: InviteBillSource: SOURCE_AND_TARGET_CANNOT_MATCH: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("want exit 1 and \"line 2: InviteBillSource: SOURCE_AND_TARGET_CANNOT_MATCH: …\" on stderr:\n%s", r)
	}
	lines = decodeLines[applyLine](t, r)
	if len(lines) != 2 || !lines[0].OK || lines[0].Line != 1 || lines[1].OK || lines[1].Line != 2 ||
		lines[1].Command != "InviteBillSource" || lines[1].Code != "SOURCE_AND_TARGET_CANNOT_MATCH" || lines[1].Message == "" {
		t.Fatalf("want line 1 ok and line 2 rejected with its code, nothing about line 3:\n%s", r)
	}
	// Line 1 stayed applied: registering 333333333333 again is rejected.
	r = d.ctl(`{"command":"RegisterOrganization","management_account_id":"333333333333","name":"Third Co"}`+"\n", "apply", "-f", "-")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "line 1: RegisterOrganization: ALREADY_EXISTS: ") {
		t.Fatalf("line 1 of the rejected file should have stayed applied:\n%s", r)
	}
	// Line 3 was never sent: registering 444444444444 now succeeds.
	d.ctlOK(`{"command":"RegisterOrganization","management_account_id":"444444444444","name":"Fourth Co"}`+"\n", "apply", "-f", "-")

	// Running the walk-through file again is rejected at line 1 (README).
	r = d.ctl("", "apply", "-f", writeFile(t, "again.jsonl", walkthrough))
	if r.code != 1 || !strings.HasPrefix(r.stderr, "line 1: RegisterOrganization: ALREADY_EXISTS: ") {
		t.Fatalf("re-applying the walk-through should stop at line 1 with ALREADY_EXISTS:\n%s", r)
	}

	// Malformed lines and unknown commands or fields are INVALID_ARGUMENT with
	// the line number; blank and comment lines count as lines.
	for _, tc := range []struct{ name, input, stderr string }{
		{"malformed", "# comment\n\n{\"command\":\n", "line 3: INVALID_ARGUMENT: malformed JSON"},
		{"unknown command", "{\"command\":\"Bogus\"}\n", "line 1: Bogus: INVALID_ARGUMENT: unknown command \"Bogus\""},
		{"unknown field", "{\"command\":\"AcceptTransfer\",\"transfer_id\":\"rt-demo1\",\"bogus\":1}\n", "line 1: AcceptTransfer: INVALID_ARGUMENT: unknown field \"bogus\""},
	} {
		r := d.ctl(tc.input, "apply", "-f", "-")
		if r.code != 1 || !strings.HasPrefix(r.stderr, tc.stderr) {
			t.Errorf("%s: want exit 1 and stderr starting with %q:\n%s", tc.name, tc.stderr, r)
		}
	}

	// None of the rejections changed the transfer.
	checkTransfers(1)
}

// usageFile is the input of `usage send` in TestUsageEndToEnd. Line numbers
// matter: the comment is line 1.
const usageFile = `# usage for TestUsageEndToEnd
{"usage_id":"u-aug-1","account_id":"222222222222","charge_period_start":"2026-08-20T00:00:00Z","charge_period_end":"2026-08-20T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"10","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.96","currency":"USD"}
{"usage_id":"u-sep-1","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"10","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.80","currency":"USD","free_tier":false,"tags":{"team":"a"}}
{"usage_id":"u-sep-1","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"10","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.80","currency":"USD","free_tier":false,"tags":{"team":"a"}}
{"usage_id":"u-sep-1","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"10","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.81","currency":"USD","free_tier":false,"tags":{"team":"a"}}
{"usage_id":"u-bad","account_id":
{"usage_id":"u-sep-2","account_id":"222222222222","charge_period_start":"2026-09-10T00:00:00Z","charge_period_end":"2026-09-10T01:00:00Z","service":"AmazonS3","usage_type":"TimedStorage-ByteHrs","region":"us-east-1","quantity":"48","unit":"GB-Mo","list_unit_price":"0.023","billed_cost":"1.104","currency":"USD"}
{"usage_id":"u-unk","account_id":"999999999999","charge_period_start":"2026-09-04T00:00:00Z","charge_period_end":"2026-09-04T01:00:00Z","service":"AmazonS3","usage_type":"TimedStorage-ByteHrs","region":"us-east-1","quantity":"1","unit":"GB-Mo","list_unit_price":"0.5","billed_cost":"0.5","currency":"USD"}
{"usage_id":"u-neg","account_id":"222222222223","charge_period_start":"2026-09-05T00:00:00Z","charge_period_end":"2026-09-05T01:00:00Z","service":"AmazonS3","usage_type":"TimedStorage-ByteHrs","region":"us-east-1","quantity":"-1","unit":"GB-Mo","billed_cost":"0.10","currency":"USD"}
{"usage_id":"u-sep-3","account_id":"222222222223","charge_period_start":"2026-09-15T00:00:00Z","charge_period_end":"2026-09-15T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"1","unit":"Hrs","list_unit_price":"0.096","billed_cost":"0.096","currency":"USD"}
`

// usageSetup registers P=111111111111 and S=222222222222 (member
// 222222222223) and the transfer S→P from 2026-09, accepted.
const usageSetup = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner Co","member_account_ids":["111111111112"]}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
{"command":"InviteBillSource","transfer_id":"rt-usage","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}
{"command":"AcceptTransfer","transfer_id":"rt-usage"}
`

// TestUsageEndToEnd sends usage with billctl over NATS and checks the counts,
// the billable read model (T6: before the transfer's start the source pays,
// inside it the payer), the dead letter and its redrive (U4), duplicates for
// ever (U2), and replay with --verify and --as-of (R2).
func TestUsageEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))
	d.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", usageSetup))
	var clk struct {
		Now string `json:"now"`
	}
	decode(t, d.ctlOK("", "clock", "set", "2026-10-05"), &clk)
	if clk.Now != "2026-10-05T00:00:00Z" {
		t.Fatalf("clock set: now = %q", clk.Now)
	}

	// usage send: exact counts, line numbers of the file, exit 1.
	r := d.ctl("", "usage", "send", "-f", writeFile(t, "usage.jsonl", usageFile))
	var sum sendSummary
	decode(t, r, &sum)
	wantReasons := map[string]int{"USAGE_ID_CONFLICT": 1, "MALFORMED": 1, "UNKNOWN_ACCOUNT": 1, "INVALID_QUANTITY": 1}
	if r.code != 1 || sum.Records != 9 || sum.Accepted != 4 || sum.Duplicates != 1 || sum.Rejected != 4 || !reflect.DeepEqual(sum.RejectedByReason, wantReasons) {
		t.Fatalf("want exit 1, records 9, accepted 4, duplicates 1, rejected 4 %v:\n%s", wantReasons, r)
	}
	wantRejections := []struct {
		line            int
		usageID, reason string
	}{{5, "u-sep-1", "USAGE_ID_CONFLICT"}, {6, "", "MALFORMED"}, {8, "u-unk", "UNKNOWN_ACCOUNT"}, {9, "u-neg", "INVALID_QUANTITY"}}
	if len(sum.Rejections) != len(wantRejections) {
		t.Fatalf("want %d rejections:\n%s", len(wantRejections), r)
	}
	deadLetterOf := map[string]string{} // reason → dead letter id
	for i, w := range wantRejections {
		got := sum.Rejections[i]
		if got.Line != w.line || got.UsageID != w.usageID || got.Reason != w.reason || got.DeadLetterID == "" || got.Message == "" {
			t.Errorf("rejection %d = %+v, want line %d %s %s with a dead letter id", i, got, w.line, w.usageID, w.reason)
		}
		deadLetterOf[w.reason] = got.DeadLetterID
		if prefix := "line " + strconv.Itoa(w.line) + ": " + w.reason + ": "; !strings.Contains(r.stderr, prefix) {
			t.Errorf("stderr lacks %q:\n%s", prefix, r)
		}
	}

	// report billable: exact rows and total, exact decimal strings
	// (canonical: no trailing zeros, domain.CanonicalDecimal).
	sep := []billableRow{
		{Month: "2026-09", PayerAccountID: "111111111111", SourceAccountID: "222222222222", AccountID: "222222222222", Service: "AmazonS3", BilledCost: "1.104", UsageQuantity: "48", RecordCount: 1, Currency: "USD"},
		{Month: "2026-09", PayerAccountID: "111111111111", SourceAccountID: "222222222222", AccountID: "222222222223", Service: "AmazonEC2", BilledCost: "0.896", UsageQuantity: "11", RecordCount: 2, Currency: "USD"},
	}
	checkBillable(t, d, "2026-09", sep, "2")
	// August, before the transfer's start: billed to the source itself (T6).
	aug := []billableRow{
		{Month: "2026-08", PayerAccountID: "222222222222", SourceAccountID: "222222222222", AccountID: "222222222222", Service: "AmazonEC2", BilledCost: "0.96", UsageQuantity: "10", RecordCount: 1, Currency: "USD"},
	}
	checkBillable(t, d, "2026-08", aug, "0.96")
	if b := d.billable("2026-10"); len(b.Rows) != 0 {
		t.Errorf("2026-10 should be empty: %+v", b)
	}
	var filtered billable
	decode(t, d.ctlOK("", "report", "billable", "--month", "2026-09", "--payer", "222222222222"), &filtered)
	if len(filtered.Rows) != 0 {
		t.Errorf("2026-09 billed to 222222222222 should be empty (the payer pays): %+v", filtered)
	}

	// deadletter list: one per reason, with the ids usage send printed.
	var dl deadLetters
	decode(t, d.ctlOK("", "deadletter", "list"), &dl)
	if !reflect.DeepEqual(dl.ByReason, wantReasons) || len(dl.DeadLetters) != 4 {
		t.Fatalf("deadletter list: want one per reason %v: %+v", wantReasons, dl)
	}
	for _, e := range dl.DeadLetters {
		if deadLetterOf[e.Reason] != e.DeadLetterID || e.Message == "" || e.Payload == "" {
			t.Errorf("dead letter %+v: want id %s (from usage send), a message and the payload", e, deadLetterOf[e.Reason])
		}
	}
	var unknownOnly deadLetters
	decode(t, d.ctlOK("", "deadletter", "list", "--reason", "UNKNOWN_ACCOUNT"), &unknownOnly)
	if len(unknownOnly.DeadLetters) != 1 || unknownOnly.DeadLetters[0].UsageID != "u-unk" {
		t.Fatalf("deadletter list --reason UNKNOWN_ACCOUNT: %+v", unknownOnly)
	}

	// Fix the cause (register 999999999999), re-drive: resolved, and the
	// billable report of its month gains the record.
	d.ctlOK(`{"command":"RegisterOrganization","management_account_id":"999999999999","name":"Late Co"}`+"\n", "apply", "-f", "-")
	r = d.ctlOK("", "deadletter", "redrive", "--id", deadLetterOf["UNKNOWN_ACCOUNT"])
	var rd redrive
	decode(t, r, &rd)
	if rd.Resolved != 1 || rd.StillFailing != 0 || len(rd.Results) != 1 || rd.Results[0].UsageID != "u-unk" || rd.Results[0].Status != "ACCEPTED" {
		t.Fatalf("redrive: want u-unk ACCEPTED, resolved 1:\n%s", r)
	}
	dl = deadLetters{} // decoding into a filled map would merge the keys
	decode(t, d.ctlOK("", "deadletter", "list"), &dl)
	delete(wantReasons, "UNKNOWN_ACCOUNT")
	if !reflect.DeepEqual(dl.ByReason, wantReasons) || len(dl.DeadLetters) != 3 {
		t.Fatalf("after redrive: want %v: %+v", wantReasons, dl)
	}
	sep = append(sep, billableRow{Month: "2026-09", PayerAccountID: "999999999999", SourceAccountID: "999999999999", AccountID: "999999999999", Service: "AmazonS3", BilledCost: "0.5", UsageQuantity: "1", RecordCount: 1, Currency: "USD"})
	checkBillable(t, d, "2026-09", sep, "2.5")

	// replay --verify: the live tables equal the replay from the events.
	for _, m := range []struct{ month, total, records string }{{"2026-09", "2.5", "4"}, {"2026-08", "0.96", "1"}} {
		rep := replay(t, d, 0, "--month", m.month, "--verify")
		if rep.Verified == nil || !*rep.Verified || len(rep.Differences) != 0 {
			t.Fatalf("replay %s --verify: not verified: %+v", m.month, rep)
		}
		if b := model(t, rep.Replay, "billable"); b.Totals["billed_cost"] != m.total || b.Totals["records"] != m.records {
			t.Errorf("replay %s: billable totals %v, want billed_cost %s records %s", m.month, b.Totals, m.total, m.records)
		}
	}
	// replay --as-of a time before the usage was recorded (2026-10-05): empty.
	rep := replay(t, d, 0, "--month", "2026-09", "--as-of", "2026-10-04T23:59:59Z")
	if b := model(t, rep.Replay, "billable"); b.Rows != 0 || b.Totals["billed_cost"] != "0" || b.Totals["records"] != "0" {
		t.Errorf("replay --as-of 2026-10-04T23:59:59Z: want an empty billable view, got %+v", b)
	}

	// 41 days later the same records are still duplicates (U2, not a time
	// window), and nothing changes.
	d.ctlOK("", "clock", "set", "2026-11-15")
	var again []string
	for _, l := range strings.Split(usageFile, "\n") {
		for _, id := range []string{`"u-aug-1"`, `"u-sep-2"`, `"u-sep-3"`, `"u-unk"`} {
			if strings.Contains(l, `"usage_id":`+id) {
				again = append(again, l)
			}
		}
	}
	again = append(again, strings.Split(usageFile, "\n")[2]) // u-sep-1
	r = d.ctlOK(strings.Join(again, "\n")+"\n", "usage", "send", "-f", "-")
	sum = sendSummary{}
	decode(t, r, &sum)
	if sum.Records != 5 || sum.Accepted != 0 || sum.Duplicates != 5 || sum.Rejected != 0 {
		t.Fatalf("re-send 41 days later: want 5 duplicates:\n%s", r)
	}
	checkBillable(t, d, "2026-09", sep, "2.5")
	checkBillable(t, d, "2026-08", aug, "0.96")
	rep = replay(t, d, 0, "--month", "2026-09", "--verify")
	if rep.Verified == nil || !*rep.Verified {
		t.Fatalf("replay 2026-09 --verify after the re-send: %+v", rep)
	}
}

// checkBillable compares `report billable --month M` with the exact rows and
// total.
func checkBillable(t *testing.T, d *daemon, month string, rows []billableRow, total string) {
	t.Helper()
	b := d.billable(month)
	if !reflect.DeepEqual(b.Rows, rows) || b.Total != total {
		got, _ := json.MarshalIndent(b, "", "  ")
		want, _ := json.MarshalIndent(billable{Rows: rows, Total: total}, "", "  ")
		t.Fatalf("report billable --month %s:\ngot  %s\nwant %s", month, got, want)
	}
}

// replay runs `billctl replay ARGS -o json`, requires exit status want and
// returns the parsed output.
func replay(t *testing.T, d *daemon, want int, args ...string) replayOut {
	t.Helper()
	r := d.ctl("", append([]string{"replay"}, args...)...)
	if r.code != want {
		t.Fatalf("want exit %d:\n%s", want, r)
	}
	var out replayOut
	decode(t, r, &out)
	return out
}
