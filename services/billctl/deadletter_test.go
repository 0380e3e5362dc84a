package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// billableRows is a BillableReader with two rows.
type billableRows struct{}

func (billableRows) ReportBillable(_ context.Context, req *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	return &billingv1.ReportBillableResponse{
		Rows: []*billingv1.BillableRow{
			{Month: req.GetMonth(), PayerAccountId: "111111111111", SourceAccountId: "222222222222", AccountId: "222222222223",
				Service: "AmazonEC2", BilledCost: "0.80", UsageQuantity: "10", RecordCount: 1, Currency: "USD"},
			{Month: req.GetMonth(), PayerAccountId: "111111111111", SourceAccountId: "222222222222", AccountId: "222222222224",
				Service: "AmazonSimpleStorageService", BilledCost: "12.3456789", UsageQuantity: "3", RecordCount: 2, Currency: "USD"},
		},
		Total: "13.1456789",
	}, nil
}

func (billableRows) MonthDigest(context.Context, string) (*billingv1.MonthDigestResponse, error) {
	return &billingv1.MonthDigestResponse{}, nil
}

func TestReportBillable(t *testing.T) {
	t.Parallel()
	url := newServer(t, api.Options{Billable: billableRows{}})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "billable", "--month", "2026-09", "--payer", "111111111111")
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "MONTH ") || !strings.HasPrefix(lines[3], "TOTAL ") {
		t.Fatalf("table:\n%s", stdout)
	}
	col := strings.Index(lines[0], "BILLED_COST")
	for i, want := range []string{"0.80", "12.3456789", "13.1456789"} {
		if lines[i+1][col:] != want {
			t.Fatalf("line %d: BILLED_COST column holds %q, want %q (aligned)\n%s", i+1, lines[i+1][col:], want, stdout)
		}
	}
	if strings.Contains(lines[3], "-") {
		t.Fatalf("the TOTAL line has dashes: %q", lines[3])
	}

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "billable", "--month", "2026-09")
	var doc struct {
		Rows  []map[string]any `json:"rows"`
		Total string           `json:"total"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.Rows) != 2 || doc.Total != "13.1456789" {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	for _, k := range []string{"month", "payer_account_id", "source_account_id", "account_id", "service", "billed_cost"} {
		if _, ok := doc.Rows[0][k]; !ok {
			t.Errorf("row lacks %q: %v", k, doc.Rows[0])
		}
	}

	code, _, stderr = runCLI(t, "", "--server", url, "--token", testToken, "report", "billable", "--month", "2026-13")
	if code != 1 || !strings.HasPrefix(stderr, `INVALID_ARGUMENT: month "2026-13"`) {
		t.Fatalf("bad month: exit %d stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "", "--server", url, "--token", testToken, "report", "billable"); code != exitUsage {
		t.Fatalf("missing --month: exit %d, want %d", code, exitUsage)
	}
}

// deadLetterStore is a DeadLetters fake: redrive resolves ids starting with
// "ok-" and re-dead-letters the others.
type deadLetterStore struct {
	mu     sync.Mutex
	reason string
	ids    []string
}

func (d *deadLetterStore) ListDeadLetters(_ context.Context, reason string) (*billingv1.ListDeadLettersResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reason = reason
	return &billingv1.ListDeadLettersResponse{
		DeadLetters: []*billingv1.DeadLetter{
			{DeadLetterId: "dl-1", Reason: domain.ReasonUnknownAccount, UsageId: "u-3", Message: "account_id 999999999999 belongs to no organization",
				Origin: "nats:usage.v1.batch line 4", RecordedAt: "2026-10-01T00:00:00Z"},
			{DeadLetterId: "dl-2", Reason: domain.ReasonMalformed, Message: "line 3:\tincomplete\nJSON", Origin: "http:/v1/usage line 3", RecordedAt: "2026-10-01T00:00:01Z"},
		},
		ByReason: map[string]uint32{domain.ReasonUnknownAccount: 1, domain.ReasonMalformed: 1},
	}, nil
}

func (d *deadLetterStore) RedriveDeadLetters(_ context.Context, _ string, ids []string) (*billingv1.RedriveDeadLettersResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids = ids
	res := &billingv1.RedriveDeadLettersResponse{}
	for _, id := range ids {
		if strings.HasPrefix(id, "ok-") {
			res.Resolved++
			res.Results = append(res.Results, &billingv1.RecordResult{UsageId: "u-" + id, Status: api.StatusAccepted})
		} else {
			res.StillFailing++
			res.Results = append(res.Results, &billingv1.RecordResult{UsageId: "u-" + id, Status: api.StatusRejected,
				Reason: domain.ReasonUnknownAccount, Message: "still unknown", DeadLetterId: "dl-new"})
		}
	}
	return res, nil
}

func TestDeadletterList(t *testing.T) {
	t.Parallel()
	store := &deadLetterStore{}
	url := newServer(t, api.Options{DeadLetters: store})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "deadletter", "list", "--reason", "unknown_account")
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	tables := strings.Split(stdout, "\n\n")
	if len(tables) != 2 {
		t.Fatalf("want the dead letters, a blank line, the counts:\n%s", stdout)
	}
	rows := strings.Split(strings.TrimSuffix(tables[0], "\n"), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "ID ") || !strings.Contains(rows[2], "line 3: incomplete JSON") {
		t.Fatalf("dead letters table:\n%s", tables[0])
	}
	col := strings.Index(rows[0], "RECORDED_AT")
	if !strings.HasPrefix(rows[2][col:], "2026-10-01T00:00:01Z") {
		t.Fatalf("columns not aligned:\n%s", tables[0])
	}
	if tables[1] != "REASON           COUNT\nMALFORMED        1\nUNKNOWN_ACCOUNT  1\nTOTAL            2\n" {
		t.Fatalf("counts:\n%q", tables[1])
	}
	store.mu.Lock()
	if store.reason != domain.ReasonUnknownAccount {
		t.Errorf("reason sent = %q", store.reason)
	}
	store.mu.Unlock()

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "deadletter", "list")
	var doc struct {
		DeadLetters []map[string]any  `json:"dead_letters"`
		ByReason    map[string]uint32 `json:"by_reason"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.DeadLetters) != 2 || doc.ByReason[domain.ReasonMalformed] != 1 {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
}

func TestDeadletterRedrive(t *testing.T) {
	t.Parallel()
	store := &deadLetterStore{}
	url := newServer(t, api.Options{DeadLetters: store})

	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "deadletter", "redrive", "--id", "ok-1", "--id", "ok-2")
	if code != 0 || !strings.HasSuffix(stdout, "resolved 2, still failing 0\n") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	store.mu.Lock()
	if strings.Join(store.ids, ",") != "ok-1,ok-2" {
		t.Errorf("ids sent = %q", store.ids)
	}
	store.mu.Unlock()

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "deadletter", "redrive", "--id", "ok-1", "--id", "bad-1")
	if code != 1 || !strings.Contains(stdout, "still unknown") || !strings.HasSuffix(stdout, "resolved 1, still failing 1\n") {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "deadletter", "redrive", "--id", "bad-1")
	var doc struct {
		StillFailing uint32 `json:"still_failing"`
	}
	if code != 1 || json.Unmarshal([]byte(stdout), &doc) != nil || doc.StillFailing != 1 {
		t.Fatalf("json: exit %d stdout %q", code, stdout)
	}

	// No --id: every unresolved dead letter (an empty list on the wire).
	code, _, _ = runCLI(t, "", "--server", url, "--token", testToken, "deadletter", "redrive")
	store.mu.Lock()
	defer store.mu.Unlock()
	if code != 0 || len(store.ids) != 0 {
		t.Fatalf("redrive all: exit %d ids %q", code, store.ids)
	}
}

func TestReplayRejectsABadMonthBeforeConnecting(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI(t, "", "replay", "--month", "2026-13", "--verify")
	if code != 1 || !strings.Contains(stderr, "INVALID_ARGUMENT") || !strings.Contains(stderr, "2026-13") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}
