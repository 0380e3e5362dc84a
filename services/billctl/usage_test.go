package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"

	ledgerjs "github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// unknownAccount is an account the fake ingest services do not know.
const unknownAccount = "999999999999"

// startNATS runs an embedded NATS server with JetStream for one test.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := ledgerjs.StartEmbedded(ledgerjs.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// fakeLedger answers records like the real ingestion would, in memory: a
// usage id seen before with the same content is a duplicate, account
// unknownAccount is dead-lettered, anything else is accepted.
type fakeLedger struct {
	mu   sync.Mutex
	seen map[string]string
}

// answer answers one record at index.
func (l *fakeLedger) answer(index int, r *billingv1.UsageRecord) *billingv1.RecordResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]string{}
	}
	res := &billingv1.RecordResult{UsageId: r.GetUsageId(), Index: uint32(index)}
	content := protojsonString(r)
	switch prev, ok := l.seen[r.GetUsageId()]; {
	case r.GetAccountId() == unknownAccount:
		res.Status, res.Reason, res.DeadLetterId = api.StatusRejected, domain.ReasonUnknownAccount, "dl-"+r.GetUsageId()
		res.Message = fmt.Sprintf("line %d: account_id %s belongs to no organization", index, unknownAccount)
	case ok && prev == content:
		res.Status = api.StatusDuplicate
	case ok:
		res.Status, res.Reason, res.Message = api.StatusRejected, domain.ReasonUsageIDConflict, "same usage_id, other content"
	default:
		l.seen[r.GetUsageId()] = content
		res.Status = api.StatusAccepted
	}
	return res
}

func protojsonString(r *billingv1.UsageRecord) string {
	b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	return string(b)
}

// tally fills the counters of a response from its results.
func tally(res *billingv1.IngestBatchResponse) *billingv1.IngestBatchResponse {
	res.RejectedByReason = map[string]uint32{}
	for _, r := range res.GetResults() {
		switch r.GetStatus() {
		case api.StatusAccepted:
			res.Accepted++
		case api.StatusDuplicate:
			res.Duplicates++
		default:
			res.Rejected++
			res.RejectedByReason[r.GetReason()]++
		}
	}
	return res
}

// responder is a test stand-in for billingd's usage.v1.batch service (the real
// one is built by the lead): JSON Lines in, IngestBatchResponse JSON out.
type responder struct {
	ledger   fakeLedger
	mu       sync.Mutex
	requests int
	lines    []string
	auth     []string
	// drop, when set, leaves the result of this 1-based payload line out.
	drop int
}

func startResponder(t *testing.T, url string) *responder {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &responder{}
	sub, err := nc.Subscribe(subjectBatch, func(m *nats.Msg) {
		res := &billingv1.IngestBatchResponse{}
		lines := strings.Split(strings.TrimSuffix(string(m.Data), "\n"), "\n")
		r.mu.Lock()
		r.requests++
		r.lines = append(r.lines, lines...)
		r.auth = append(r.auth, m.Header.Get("Authorization"))
		drop := r.drop
		r.mu.Unlock()
		for i, line := range lines {
			if i+1 == drop {
				continue
			}
			rec := &billingv1.UsageRecord{}
			if err := protojson.Unmarshal([]byte(line), rec); err != nil {
				res.Results = append(res.Results, &billingv1.RecordResult{Index: uint32(i + 1), Status: api.StatusRejected,
					Reason: domain.ReasonMalformed, Message: fmt.Sprintf("line %d: %v", i+1, err), DeadLetterId: fmt.Sprintf("dl-m%d", i+1)})
				continue
			}
			res.Results = append(res.Results, r.ledger.answer(i+1, rec))
		}
		b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(tally(res))
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

func (r *responder) snapshot() (requests int, lines, auth []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, append([]string(nil), r.lines...), append([]string(nil), r.auth...)
}

// usageLine is a valid usage record line.
func usageLine(id, account, cost string) string {
	return `{"usage_id":"` + id + `","account_id":"` + account + `","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage:m6i.large","operation":"RunInstances","region":"us-east-1","quantity":"10","unit":"Hrs","list_unit_price":"0.096","billed_cost":"` + cost + `","currency":"USD","free_tier":false,"tags":{"team":"a"}}`
}

// mixedFile has a malformed line in the middle (line 3), an unknown account
// (line 4), a duplicate of line 1 (line 6) and a comment (line 5).
var mixedFile = usageLine("u-1", "222222222223", "0.80") + "\n" +
	"\n" +
	`{"usage_id":"u-2","account_id":` + "\n" +
	usageLine("u-3", unknownAccount, "0.10") + "\n" +
	"# a comment\n" +
	usageLine("u-1", "222222222223", "0.80") + "\n" +
	usageLine("u-4", "222222222223", "1.20") // no final newline

func TestJSONLinesSource(t *testing.T) {
	t.Parallel()
	next := jsonLinesSource(strings.NewReader("\ufeff" + mixedFile))
	type got struct {
		line int
		bad  bool
	}
	var items []got
	var last usageItem
	for {
		it, ok, err := next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		items = append(items, got{it.line, it.bad != ""})
		last = it
	}
	want := []got{{1, false}, {3, true}, {4, false}, {6, false}, {7, false}}
	if fmt.Sprint(items) != fmt.Sprint(want) {
		t.Fatalf("items = %v, want %v", items, want)
	}
	if last.end != int64(len("\ufeff"+mixedFile)) {
		t.Fatalf("end offset of the last item = %d, want %d", last.end, len("\ufeff"+mixedFile))
	}
}

func TestUsageSendOverNATSReportsMalformedLineAndSendsTheRest(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	resp := startResponder(t, url)
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", writeFile(t, mixedFile),
		"--nats-url", url, "--batch", "2")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (records rejected)\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if want := "accepted 2, duplicates 1, rejected 2 (MALFORMED: 1, UNKNOWN_ACCOUNT: 1)\n"; stdout != want {
		t.Fatalf("stdout = %q, want %q", stdout, want)
	}
	errLines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(errLines) != 2 ||
		!strings.HasPrefix(errLines[0], "line 3: MALFORMED: incomplete JSON: the line ends before the object does") ||
		errLines[1] != "line 4: UNKNOWN_ACCOUNT: account_id 999999999999 belongs to no organization" {
		t.Fatalf("stderr = %q", stderr)
	}
	requests, lines, auth := resp.snapshot()
	if requests != 3 || len(lines) != 5 {
		t.Fatalf("responder got %d requests with %d lines, want 3 batches of 2, 2, 1 lines", requests, len(lines))
	}
	if lines[1] != `{"usage_id":"u-2","account_id":` {
		t.Fatalf("the malformed line was not sent as it is: %q", lines[1])
	}
	for _, h := range auth {
		if h != "Bearer "+testToken {
			t.Fatalf("Authorization header = %q", h)
		}
	}
}

func TestUsageSendNATSAddressFromServerAndJSONSummary(t *testing.T) {
	t.Parallel()
	natsURL := startNATS(t)
	startResponder(t, natsURL)
	url := newServer(t, api.Options{NATSURL: natsURL})
	file := usageLine("u-1", "222222222223", "0.80") + "\n" + usageLine("u-2", "222222222223", "0.20") + "\n"
	code, stdout, stderr := runCLI(t, file, "--server", url, "--token", testToken, "-o", "json", "usage", "send", "-f", "-")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	var sum sendSummaryJSON
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if sum.Records != 2 || sum.Accepted != 2 || sum.Rejected != 0 || sum.Rows != nil || sum.Rejections == nil {
		t.Fatalf("summary = %+v", sum)
	}
	// Sending the same file again changes nothing: every record is a duplicate.
	code, stdout, _ = runCLI(t, file, "--server", url, "--token", testToken, "usage", "send", "-f", "-")
	if code != 0 || stdout != "accepted 0, duplicates 2, rejected 0\n" {
		t.Fatalf("second send: exit %d stdout %q", code, stdout)
	}
}

func TestUsageSendReplyWithoutResultForALine(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	resp := startResponder(t, url)
	resp.drop = 2
	file := usageLine("u-1", "222222222223", "0.80") + "\n" + usageLine("u-2", "222222222223", "0.20") + "\n"
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", writeFile(t, file), "--nats-url", url)
	if code != 1 || stdout != "accepted 1, duplicates 0, rejected 1 (NO_RESULT: 1)\n" || !strings.HasPrefix(stderr, "line 2: NO_RESULT: ") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

func TestUsageSendWithoutResponderIsUnavailable(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", writeFile(t, usageLine("u-1", "222222222223", "1")), "--nats-url", url)
	if code != 1 || !strings.Contains(stderr, "UNAVAILABLE: ") || !strings.Contains(stderr, "no ingest service answers on usage.v1.batch") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if stdout != "accepted 0, duplicates 0, rejected 0\n" {
		t.Fatalf("summary of what was confirmed = %q", stdout)
	}
}

func TestUsageSendErrorReplyAndBadFlags(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe(subjectBatch, func(m *nats.Msg) {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(natsServiceErrorHeader, "UNAUTHENTICATED: unknown token")
		reply.Header.Set(natsServiceErrorCodeHeader, "401")
		_ = nc.PublishMsg(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = nc.Flush()
	file := writeFile(t, usageLine("u-1", "222222222223", "1"))
	code, _, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", file, "--nats-url", url)
	if code != 1 || !strings.HasPrefix(stderr, "UNAUTHENTICATED: lines 1-1") || !strings.HasSuffix(stderr, "unknown token\n") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"--batch", "0"},
		{"--batch", "10001"},
		{"--durable", "--http"},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"--token", testToken, "usage", "send", "-f", file, "--nats-url", url}, args...)...)
		if code != 1 || !strings.HasPrefix(stderr, "INVALID_ARGUMENT: ") {
			t.Errorf("%v: exit %d stderr %q", args, code, stderr)
		}
	}
}

func TestUsageSendDurable(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "USAGE_TEST", Subjects: []string{subjectRecords}})
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "--durable", "-f", writeFile(t, mixedFile), "--nats-url", url)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a malformed line)\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if want := "published 5, failed 0, rejected 1 (MALFORMED: 1)\n"; stdout != want {
		t.Fatalf("stdout = %q, want %q", stdout, want)
	}
	if !strings.HasPrefix(stderr, "line 3: MALFORMED: ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("stderr = %q", stderr)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lines 1 and 6 are the same bytes: JetStream keeps one (Nats-Msg-Id).
	if info.State.Msgs != 4 {
		t.Fatalf("stream holds %d messages, want 4", info.State.Msgs)
	}
	msg, err := stream.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != `{"usage_id":"u-2","account_id":` {
		t.Fatalf("message 2 = %q, want the malformed line as it is", msg.Data)
	}
	// The stored message carries a signature of its payload, never the token (A1).
	if h := msg.Header.Get("Authorization"); strings.Contains(h, testToken) || h != auth.SignPayload(testToken, msg.Data) {
		t.Fatalf("Authorization header %q: want the payload's signature, never the token", h)
	}

	code, stdout, _ = runCLI(t, "", "--token", testToken, "-o", "json", "usage", "send", "--durable", "-f", writeFile(t, usageLine("u-9", "222222222223", "1")), "--nats-url", url)
	var sum durableSummaryJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &sum) != nil || sum.Published != 1 || sum.Records != 1 {
		t.Fatalf("json: exit %d stdout %q", code, stdout)
	}
}

func TestUsageSendDurableWithoutStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "--durable", "-f", writeFile(t, mixedFile), "--nats-url", url)
	if code != 1 || !strings.HasPrefix(stderr, "line 3: MALFORMED") || !strings.Contains(stderr, "UNAVAILABLE: no JetStream stream stores usage.v1.records") {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if !strings.HasPrefix(stdout, "published 0, failed ") {
		t.Fatalf("stdout = %q", stdout)
	}
}

// httpIngester is the UsageIngester behind the API in the --http tests.
type httpIngester struct{ ledger fakeLedger }

func (h *httpIngester) Ingest(_ context.Context, _, _ string, records []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error) {
	res := &billingv1.IngestBatchResponse{Position: 7}
	for i, r := range records {
		rr := h.ledger.answer(i, r)
		rr.Message = stripLinePrefix(rr.Message)
		res.Results = append(res.Results, rr)
	}
	return tally(res), nil
}

// memorySink is the MalformedSink behind the API in the --http tests.
type memorySink struct {
	mu   sync.Mutex
	raws []string
}

func (m *memorySink) DeadLetterMalformed(_ context.Context, _, _ string, raw []byte, _ string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.raws = append(m.raws, string(raw))
	return fmt.Sprintf("dl-m%d", len(m.raws)), nil
}

func TestUsageSendOverHTTP(t *testing.T) {
	t.Parallel()
	sink := &memorySink{}
	url := newServer(t, api.Options{Usage: &httpIngester{}, Malformed: sink})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "usage", "send", "--http", "--batch", "3", "-f", writeFile(t, mixedFile))
	if code != 1 || stdout != "accepted 2, duplicates 1, rejected 2 (MALFORMED: 1, UNKNOWN_ACCOUNT: 1)\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if !strings.HasPrefix(stderr, "line 3: MALFORMED: incomplete JSON: the line ends before the object does") || !strings.Contains(stderr, "\nline 4: UNKNOWN_ACCOUNT: ") {
		t.Fatalf("stderr = %q", stderr)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.raws) != 1 || sink.raws[0] != `{"usage_id":"u-2","account_id":` {
		t.Fatalf("dead-lettered raws = %q", sink.raws)
	}

	code, _, stderr = runCLI(t, "", "--server", url, "--token", "blt_wrong", "usage", "send", "--http", "-f", writeFile(t, mixedFile))
	if code != 1 || !strings.Contains(stderr, "UNAUTHENTICATED: lines 1-7") {
		t.Fatalf("wrong token: exit %d stderr %q", code, stderr)
	}
}

func TestSummaryHelpers(t *testing.T) {
	t.Parallel()
	if got := reasonCounts(map[string]int{"UNKNOWN_ACCOUNT": 2, "MALFORMED": 1}); got != " (MALFORMED: 1, UNKNOWN_ACCOUNT: 2)" {
		t.Errorf("reasonCounts = %q", got)
	}
	if got := reasonCounts(nil); got != "" {
		t.Errorf("reasonCounts(nil) = %q", got)
	}
	for in, want := range map[string]string{
		"line 12: bad quantity": "bad quantity",
		"line x: keep":          "line x: keep",
		"quantity: line 3":      "quantity: line 3",
	} {
		if got := stripLinePrefix(in); got != want {
			t.Errorf("stripLinePrefix(%q) = %q, want %q", in, got, want)
		}
	}
	var out bytes.Buffer
	a := &app{stdout: &out, output: "table"}
	st := newSendStats()
	st.accepted, st.duplicates = 3, 1
	rows := 4
	if err := a.finishSend(st, &rows, nil); err != nil || out.String() != "rows 4, accepted 3, duplicates 1, rejected 0\n" {
		t.Fatalf("finishSend = %v, %q", err, out.String())
	}
}

func TestUsageSendJSONErrorReply(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// billingd's responder (services/ingest) answers a failed batch like this.
	sub, err := nc.Subscribe(subjectBatch, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"error":"ingest failed, nothing was lost: retry the batch (store down)"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = nc.Flush()
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", writeFile(t, mixedFile), "--nats-url", url)
	if code != 1 || stdout != "accepted 0, duplicates 0, rejected 0\n" ||
		stderr != "UNAVAILABLE: lines 1-7 not confirmed (the lines before were; sending the file again is safe: duplicates are detected): ingest failed, nothing was lost: retry the batch (store down)\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}
