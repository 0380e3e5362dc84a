package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// unknownAccount is an account the fake ingester does not know.
const unknownAccount = "999999999999"

// fakeIngester answers like the partition writers would: usage id "dup-…" is
// a duplicate, account unknownAccount is dead-lettered, the rest is accepted.
type fakeIngester struct {
	mu     sync.Mutex
	calls  int
	actor  string
	origin string
	got    []*billingv1.UsageRecord
	err    error
}

func (f *fakeIngester) Ingest(_ context.Context, actor, origin string, records []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.actor, f.origin, f.got = actor, origin, records
	if f.err != nil {
		return nil, f.err
	}
	res := &billingv1.IngestBatchResponse{RejectedByReason: map[string]uint32{}, Position: 42}
	for i, r := range records {
		rr := &billingv1.RecordResult{UsageId: r.GetUsageId(), Index: uint32(i), Status: api.StatusAccepted}
		switch {
		case strings.HasPrefix(r.GetUsageId(), "dup-"):
			rr.Status = api.StatusDuplicate
			res.Duplicates++
		case r.GetAccountId() == unknownAccount:
			rr.Status, rr.Reason, rr.DeadLetterId = api.StatusRejected, domain.ReasonUnknownAccount, "dl-"+r.GetUsageId()
			rr.Message = "account_id " + unknownAccount + " belongs to no organization"
			res.Rejected++
			res.RejectedByReason[rr.Reason]++
		default:
			res.Accepted++
		}
		res.Results = append(res.Results, rr)
	}
	return res, nil
}

func (f *fakeIngester) snapshot() (calls int, actor, origin string, got []*billingv1.UsageRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.actor, f.origin, f.got
}

// panicIngester panics, as a bug would.
type panicIngester struct{}

func (panicIngester) Ingest(context.Context, string, string, []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error) {
	panic("boom")
}

// fakeSink dead-letters malformed payloads in memory.
type fakeSink struct {
	mu      sync.Mutex
	err     error
	raws    []string
	origins []string
	reasons []string
}

func (f *fakeSink) DeadLetterMalformed(_ context.Context, actor, origin string, raw []byte, reason string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	if actor != "admin" {
		return "", fmt.Errorf("actor %q", actor)
	}
	f.raws = append(f.raws, string(raw))
	f.origins = append(f.origins, origin)
	f.reasons = append(f.reasons, reason)
	return fmt.Sprintf("dl-m%d", len(f.raws)), nil
}

// fakeBillable returns canned answers and remembers the requests.
type fakeBillable struct {
	mu          sync.Mutex
	lastReport  *billingv1.ReportBillableRequest
	lastDigest  string
	reportCalls int
}

func (f *fakeBillable) ReportBillable(_ context.Context, req *billingv1.ReportBillableRequest) (*billingv1.ReportBillableResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastReport, f.reportCalls = req, f.reportCalls+1
	return &billingv1.ReportBillableResponse{
		Rows: []*billingv1.BillableRow{{Month: req.GetMonth(), PayerAccountId: "111111111111", SourceAccountId: "222222222222",
			AccountId: "222222222223", Service: "AmazonEC2", BilledCost: "0.80"}},
		Total: "0.80",
	}, nil
}

func (f *fakeBillable) MonthDigest(_ context.Context, month string) (*billingv1.MonthDigestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastDigest = month
	return &billingv1.MonthDigestResponse{Digests: []*billingv1.ReadModelDigest{{Name: "billable", Digest: "ab", Rows: 1}}, Checkpoint: 99}, nil
}

// fakeDeadLetters remembers what it was asked.
type fakeDeadLetters struct {
	mu     sync.Mutex
	reason string
	actor  string
	ids    []string
}

func (f *fakeDeadLetters) ListDeadLetters(_ context.Context, reason string) (*billingv1.ListDeadLettersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reason = reason
	return &billingv1.ListDeadLettersResponse{
		DeadLetters: []*billingv1.DeadLetter{{DeadLetterId: "dl-1", Reason: domain.ReasonUnknownAccount, UsageId: "u-1"}},
		ByReason:    map[string]uint32{domain.ReasonUnknownAccount: 1},
	}, nil
}

func (f *fakeDeadLetters) RedriveDeadLetters(_ context.Context, actor string, ids []string) (*billingv1.RedriveDeadLettersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actor, f.ids = actor, ids
	return &billingv1.RedriveDeadLettersResponse{Resolved: uint32(len(ids))}, nil
}

func usageClient(e *env) billingv1connect.UsageServiceClient {
	return billingv1connect.NewUsageServiceClient(e.http, e.url)
}

func record(id, account string) *billingv1.UsageRecord {
	return &billingv1.UsageRecord{UsageId: id, AccountId: account, Service: "AmazonEC2", Quantity: "1", BilledCost: "0.1", Currency: "USD"}
}

func TestIngestBatch(t *testing.T) {
	t.Parallel()

	t.Run("hands the records to the ingester as the principal", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing})
		res, err := usageClient(e).IngestBatch(context.Background(), withToken(&billingv1.IngestBatchRequest{Records: []*billingv1.UsageRecord{
			record("u-1", "222222222223"), record("dup-1", "222222222223"), record("u-2", unknownAccount),
		}}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		m := res.Msg
		if m.GetAccepted() != 1 || m.GetDuplicates() != 1 || m.GetRejected() != 1 || len(m.GetResults()) != 3 || m.GetResults()[2].GetDeadLetterId() != "dl-u-2" {
			t.Fatalf("response = %v", m)
		}
		if res.Header().Get(api.PositionHeader) != "42" {
			t.Fatalf("%s = %q, want 42", api.PositionHeader, res.Header().Get(api.PositionHeader))
		}
		calls, actor, origin, got := ing.snapshot()
		if calls != 1 || actor != "admin" || origin != "http" || len(got) != 3 {
			t.Fatalf("ingester saw calls=%d actor=%q origin=%q records=%d", calls, actor, origin, len(got))
		}
	})

	t.Run("more than MaxIngestBatch records is invalid and ingests nothing", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing})
		recs := make([]*billingv1.UsageRecord, api.MaxIngestBatch+1)
		for i := range recs {
			recs[i] = &billingv1.UsageRecord{}
		}
		_, err := usageClient(e).IngestBatch(context.Background(), withToken(&billingv1.IngestBatchRequest{Records: recs}, adminToken))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), "10001") {
			t.Fatalf("err = %v, want INVALID_ARGUMENT naming the count", err)
		}
		if calls, _, _, _ := ing.snapshot(); calls != 0 {
			t.Fatalf("ingester called %d times", calls)
		}
	})

	t.Run("an empty batch answers zeros without calling the ingester", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing})
		res, err := usageClient(e).IngestBatch(context.Background(), withToken(&billingv1.IngestBatchRequest{}, adminToken))
		if err != nil || len(res.Msg.GetResults()) != 0 {
			t.Fatalf("res %v err %v", res, err)
		}
		if calls, _, _, _ := ing.snapshot(); calls != 0 {
			t.Fatalf("ingester called %d times", calls)
		}
	})

	t.Run("a non-admin token is denied", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Usage: &fakeIngester{}})
		_, err := usageClient(e).IngestBatch(context.Background(), withToken(&billingv1.IngestBatchRequest{}, auditorToken))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("err = %v, want permission denied", err)
		}
	})

	t.Run("an ingester failure is internal and generic", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Usage: &fakeIngester{err: errors.New("nats: timeout at writer.go:7")}})
		_, err := usageClient(e).IngestBatch(context.Background(), withToken(&billingv1.IngestBatchRequest{Records: []*billingv1.UsageRecord{record("u", "222222222223")}}, adminToken))
		if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "writer.go") || !strings.Contains(errorInfo(t, err).GetMessage(), "ingest usage failed") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestUnwiredUsagePortsAreUnimplemented(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Options{})
	ctx := context.Background()
	u := usageClient(e)
	errs := map[string]error{}
	_, errs["IngestBatch"] = u.IngestBatch(ctx, withToken(&billingv1.IngestBatchRequest{}, adminToken))
	_, errs["ListDeadLetters"] = u.ListDeadLetters(ctx, withToken(&billingv1.ListDeadLettersRequest{}, adminToken))
	_, errs["RedriveDeadLetters"] = u.RedriveDeadLetters(ctx, withToken(&billingv1.RedriveDeadLettersRequest{}, adminToken))
	_, errs["ReportBillable"] = e.query.ReportBillable(ctx, withToken(&billingv1.ReportBillableRequest{Month: "2026-09"}, adminToken))
	_, errs["MonthDigest"] = e.query.MonthDigest(ctx, withToken(&billingv1.MonthDigestRequest{Month: "2026-09"}, adminToken))
	for name, err := range errs {
		if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(errorInfo(t, err).GetMessage(), "this process does not serve") {
			t.Errorf("%s: err = %v, want UNIMPLEMENTED with a clear message", name, err)
		}
	}
	res, err := e.http.Post(e.url+api.UsageJSONLinesPath, "application/jsonl", strings.NewReader("{}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST %s without token: %d, want 401", api.UsageJSONLinesPath, res.StatusCode)
	}
	if status, body := postJSONLines(t, e, adminToken, nil, "{}\n"); status != http.StatusNotImplemented {
		t.Fatalf("POST %s unwired: %d %s, want 501", api.UsageJSONLinesPath, status, body)
	}
}

func TestReportBillable(t *testing.T) {
	t.Parallel()

	t.Run("trims the filters and waits for the last position", func(t *testing.T) {
		t.Parallel()
		b, w := &fakeBillable{}, &fakeWaiter{reached: 8}
		e := newEnv(t, api.Options{Billable: b, Waiter: w, Positions: fixedPosition(8)})
		res, err := e.query.ReportBillable(context.Background(), withToken(&billingv1.ReportBillableRequest{
			Month: " 2026-09 ", PayerAccountId: "111111111111 ",
		}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.GetRows()) != 1 || res.Msg.GetTotal() != "0.80" || res.Msg.GetCheckpoint() != 8 {
			t.Fatalf("response = %v", res.Msg)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.lastReport.GetMonth() != "2026-09" || b.lastReport.GetPayerAccountId() != "111111111111" {
			t.Fatalf("request reaching the reader = %v", b.lastReport)
		}
		if !slices.Equal(w.asked, []uint64{8}) {
			t.Fatalf("waited for %v, want [8]", w.asked)
		}
	})

	t.Run("invalid requests name the value and never reach the reader", func(t *testing.T) {
		t.Parallel()
		b := &fakeBillable{}
		e := newEnv(t, api.Options{Billable: b})
		for _, tc := range []struct {
			req  *billingv1.ReportBillableRequest
			want string
		}{
			{&billingv1.ReportBillableRequest{}, "month is required"},
			{&billingv1.ReportBillableRequest{Month: "2026-13"}, `month "2026-13"`},
			{&billingv1.ReportBillableRequest{Month: "2026-9"}, `month "2026-9"`},
			{&billingv1.ReportBillableRequest{Month: "September"}, `month "September"`},
			{&billingv1.ReportBillableRequest{Month: "2026-09", PayerAccountId: "12"}, `payer_account_id "12"`},
			{&billingv1.ReportBillableRequest{Month: "2026-09", SourceAccountId: "22222222222x"}, `source_account_id "22222222222x"`},
		} {
			_, err := e.query.ReportBillable(context.Background(), withToken(tc.req, adminToken))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), tc.want) {
				t.Errorf("%v: err = %v, want INVALID_ARGUMENT containing %q", tc.req, err, tc.want)
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.reportCalls != 0 {
			t.Fatalf("reader called %d times", b.reportCalls)
		}
	})
}

func TestMonthDigest(t *testing.T) {
	t.Parallel()
	b := &fakeBillable{}
	e := newEnv(t, api.Options{Billable: b})
	res, err := e.query.MonthDigest(context.Background(), withToken(&billingv1.MonthDigestRequest{Month: "2026-09"}, adminToken))
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	lastDigest := b.lastDigest
	b.mu.Unlock()
	if lastDigest != "2026-09" || len(res.Msg.GetDigests()) != 1 || res.Msg.GetCheckpoint() != 99 {
		t.Fatalf("digest of %q = %v", lastDigest, res.Msg)
	}
	_, err = e.query.MonthDigest(context.Background(), withToken(&billingv1.MonthDigestRequest{Month: "2026/09"}, adminToken))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), `"2026/09"`) {
		t.Fatalf("err = %v, want INVALID_ARGUMENT naming the month", err)
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()

	t.Run("list normalizes and validates the reason", func(t *testing.T) {
		t.Parallel()
		dl, w := &fakeDeadLetters{}, &fakeWaiter{reached: 3}
		e := newEnv(t, api.Options{DeadLetters: dl, Waiter: w, Positions: fixedPosition(3)})
		res, err := usageClient(e).ListDeadLetters(context.Background(), withToken(&billingv1.ListDeadLettersRequest{Reason: " unknown_account"}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		dl.mu.Lock()
		reason := dl.reason
		dl.mu.Unlock()
		if reason != domain.ReasonUnknownAccount || len(res.Msg.GetDeadLetters()) != 1 || !slices.Equal(w.asked, []uint64{3}) {
			t.Fatalf("reason %q, response %v, waited %v", reason, res.Msg, w.asked)
		}
		_, err = usageClient(e).ListDeadLetters(context.Background(), withToken(&billingv1.ListDeadLettersRequest{Reason: "LATE"}, adminToken))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), `"LATE"`) {
			t.Fatalf("err = %v, want INVALID_ARGUMENT naming the reason", err)
		}
	})

	t.Run("redrive trims and deduplicates ids", func(t *testing.T) {
		t.Parallel()
		dl := &fakeDeadLetters{}
		e := newEnv(t, api.Options{DeadLetters: dl})
		res, err := usageClient(e).RedriveDeadLetters(context.Background(), withToken(&billingv1.RedriveDeadLettersRequest{
			DeadLetterIds: []string{"dl-1", " dl-2", "dl-1"},
		}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		dl.mu.Lock()
		actor, ids := dl.actor, dl.ids
		dl.mu.Unlock()
		if actor != "admin" || !slices.Equal(ids, []string{"dl-1", "dl-2"}) || res.Msg.GetResolved() != 2 {
			t.Fatalf("actor %q ids %q response %v", actor, ids, res.Msg)
		}
		_, err = usageClient(e).RedriveDeadLetters(context.Background(), withToken(&billingv1.RedriveDeadLettersRequest{DeadLetterIds: []string{"dl-1", " "}}, adminToken))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
		}
	})
}

// postJSONLines posts body to /v1/usage and returns the status and body.
func postJSONLines(t *testing.T, e *env, token string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+api.UsageJSONLinesPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/jsonl")
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// jsonLinesBody has a record on line 1, a blank line 2, a malformed line 3,
// a record of an unknown account on line 4, a duplicate on line 5 and an
// unknown field on line 6.
const jsonLinesBody = `{"usage_id":"u-1","account_id":"222222222223","service":"AmazonEC2","quantity":"10","billed_cost":"0.80","currency":"USD"}

{"usage_id":"u-2","account_id":
{"usage_id":"u-3","account_id":"999999999999","service":"AmazonEC2","quantity":"1","billed_cost":"0.1","currency":"USD"}
{"usage_id":"dup-1","account_id":"222222222223","service":"AmazonEC2","quantity":"1","billed_cost":"0.1","currency":"USD"}
{"usage_id":"u-4","acount_id":"222222222223"}
`

func TestUsageJSONLines(t *testing.T) {
	t.Parallel()

	t.Run("a malformed line is rejected and dead-lettered, the others ingested", func(t *testing.T) {
		t.Parallel()
		ing, sink := &fakeIngester{}, &fakeSink{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: sink})
		status, body := postJSONLines(t, e, adminToken, nil, jsonLinesBody)
		if status != http.StatusOK {
			t.Fatalf("status %d body %s, want 200", status, body)
		}
		var res billingv1.IngestBatchResponse
		if err := protojson.Unmarshal([]byte(body), &res); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		// Proto field names on the wire, counters present even when zero.
		var raw map[string]any
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"results", "accepted", "duplicates", "rejected", "rejected_by_reason", "position"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("response lacks %q: %s", k, body)
			}
		}
		type row struct {
			index          uint32
			status, reason string
			deadLetter     string
		}
		var got []row
		for _, r := range res.GetResults() {
			got = append(got, row{r.GetIndex(), r.GetStatus(), r.GetReason(), r.GetDeadLetterId()})
		}
		want := []row{
			{1, api.StatusAccepted, "", ""},
			{3, api.StatusRejected, domain.ReasonMalformed, "dl-m1"},
			{4, api.StatusRejected, domain.ReasonUnknownAccount, "dl-u-3"},
			{5, api.StatusDuplicate, "", ""},
			{6, api.StatusRejected, domain.ReasonMalformed, "dl-m2"},
		}
		if !slices.Equal(got, want) {
			t.Fatalf("results = %+v\nwant %+v", got, want)
		}
		if msg := res.GetResults()[1].GetMessage(); !strings.HasPrefix(msg, "line 3: ") {
			t.Fatalf("malformed message = %q, want it to start with the line number", msg)
		}
		if msg := res.GetResults()[4].GetMessage(); msg != `line 6: column 19: unknown field "acount_id"` {
			t.Fatalf("unknown field message = %q", msg)
		}
		if res.GetAccepted() != 1 || res.GetDuplicates() != 1 || res.GetRejected() != 3 || res.GetPosition() != 42 ||
			res.GetRejectedByReason()[domain.ReasonMalformed] != 2 || res.GetRejectedByReason()[domain.ReasonUnknownAccount] != 1 {
			t.Fatalf("counters = %v", &res)
		}
		calls, actor, origin, recs := ing.snapshot()
		if calls != 1 || actor != "admin" || origin != "http:/v1/usage" || len(recs) != 3 || recs[2].GetUsageId() != "dup-1" {
			t.Fatalf("ingester saw calls=%d actor=%q origin=%q records=%v", calls, actor, origin, recs)
		}
		lines := strings.Split(jsonLinesBody, "\n")
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if !slices.Equal(sink.raws, []string{lines[2], lines[5]}) ||
			!slices.Equal(sink.origins, []string{"http:/v1/usage line 3", "http:/v1/usage line 6"}) ||
			!strings.HasPrefix(sink.reasons[0], "line 3: ") {
			t.Fatalf("sink got raws %q origins %q reasons %q", sink.raws, sink.origins, sink.reasons)
		}
	})

	t.Run("gzip body", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: &fakeSink{}})
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write([]byte(jsonLinesBody))
		_ = zw.Close()
		status, body := postJSONLines(t, e, adminToken, http.Header{"Content-Encoding": {"gzip"}}, zb.String())
		if status != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
			t.Fatalf("status %d body %s", status, body)
		}
	})

	t.Run("an unreadable body is 400 and ingests nothing", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: &fakeSink{}})
		status, body := postJSONLines(t, e, adminToken, http.Header{"Content-Encoding": {"gzip"}}, "not gzip at all")
		if status != http.StatusBadRequest || !strings.Contains(body, "not readable") {
			t.Fatalf("status %d body %s, want 400", status, body)
		}
		status, _ = postJSONLines(t, e, adminToken, http.Header{"Content-Encoding": {"br"}}, "{}")
		if status != http.StatusBadRequest {
			t.Fatalf("unknown encoding: status %d, want 400", status)
		}
		if calls, _, _, _ := ing.snapshot(); calls != 0 {
			t.Fatalf("ingester called %d times", calls)
		}
	})

	t.Run("too many lines is 400", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: &fakeSink{}})
		status, body := postJSONLines(t, e, adminToken, nil, strings.Repeat("{}\n", api.MaxIngestBatch+1))
		if status != http.StatusBadRequest || !strings.Contains(body, "more than 10000 records") {
			t.Fatalf("status %d body %.200s", status, body)
		}
	})

	t.Run("a failing sink fails the request before ingesting", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: &fakeSink{err: errors.New("store down")}})
		status, body := postJSONLines(t, e, adminToken, nil, jsonLinesBody)
		if status != http.StatusInternalServerError || strings.Contains(body, "store down") || !strings.Contains(body, "dead-letter malformed line 3") {
			t.Fatalf("status %d body %s, want a generic 500 naming the operation", status, body)
		}
		if calls, _, _, _ := ing.snapshot(); calls != 0 {
			t.Fatalf("ingester called %d times", calls)
		}
	})

	t.Run("without a sink malformed lines are still reported", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Usage: &fakeIngester{}})
		status, body := postJSONLines(t, e, adminToken, nil, "{oops\n")
		if status != http.StatusOK || !strings.Contains(body, `"reason":"MALFORMED"`) || !strings.Contains(body, `"rejected":1`) {
			t.Fatalf("status %d body %s", status, body)
		}
		if !strings.Contains(e.logs.String(), "not dead-lettered") {
			t.Fatalf("log lacks the warning:\n%s", e.logs.String())
		}
	})

	t.Run("POST /v1/usage is authorized as IngestBatch", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing, Malformed: &fakeSink{}})
		if status, body := postJSONLines(t, e, "", nil, jsonLinesBody); status != http.StatusUnauthorized || !strings.Contains(body, "UNAUTHENTICATED") {
			t.Fatalf("no token: %d %s", status, body)
		}
		if status, body := postJSONLines(t, e, auditorToken, nil, jsonLinesBody); status != http.StatusForbidden ||
			!strings.Contains(body, "PERMISSION_DENIED") || !strings.Contains(body, "IngestBatch is not allowed for the auditor role") {
			t.Fatalf("auditor: %d %s, want 403 naming IngestBatch", status, body)
		}
		if calls, _, _, _ := ing.snapshot(); calls != 0 {
			t.Fatalf("ingester called %d times", calls)
		}
	})

	t.Run("a panicking ingester is a generic 500", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{Usage: panicIngester{}})
		status, body := postJSONLines(t, e, adminToken, nil, jsonLinesBody)
		if status != http.StatusInternalServerError || strings.Contains(body, "boom") || !strings.Contains(body, "INTERNAL") {
			t.Fatalf("status %d body %s", status, body)
		}
		if !strings.Contains(e.logs.String(), "boom") {
			t.Fatalf("panic not logged:\n%s", e.logs.String())
		}
	})

	t.Run("an empty body answers zeros", func(t *testing.T) {
		t.Parallel()
		ing := &fakeIngester{}
		e := newEnv(t, api.Options{Usage: ing})
		status, body := postJSONLines(t, e, adminToken, nil, "\n\n")
		if status != http.StatusOK || !strings.Contains(body, `"accepted":0`) {
			t.Fatalf("status %d body %s", status, body)
		}
	})
}
