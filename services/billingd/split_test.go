package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// TestBillingd_TwoProjectorsSplitTheProjections (issue #8 item 1): on one
// NATS server and one PostgreSQL read model, a command+ingest process, two
// projector processes and a query process. The projectors split the five
// projections (leases), the query process serves reads from what they commit
// (its read-your-writes waits on their checkpoints), and its digests equal a
// replay from the store and those of one process running every projection on
// SQLite over the same events. Then one projector stops: the other takes its
// projections at once and new usage reaches the read model exactly once.
func TestBillingd_TwoProjectorsSplitTheProjections(t *testing.T) {
	target := readmodeltest.Postgres.Target(t) // skips without BILLING_TEST_POSTGRES
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	url := emb.ClientURL()
	split := func(role, readModel string) *splitProc {
		return startSplit(t, role, func(c *Config) { c.NATSURL, c.ReadModel = url, readModel })
	}
	cmd := split("command,ingest", target)
	defer cmd.stop(t)
	p1 := split("projector", target)
	defer p1.stop(t)
	p2 := split("projector", target)
	defer p2.stop(t)
	q := split("query", target)
	defer q.stop(t)

	// The five projections split 3/2, the two heavy ones apart.
	var held1, held2 []string
	eventually(t, 10*time.Second, "the projectors split the projections", func() bool {
		held1, held2 = p1.runsHere(t), p2.runsHere(t)
		all := append(slices.Clone(held1), held2...)
		slices.Sort(all)
		return len(held1) > 0 && len(held2) > 0 && slices.Equal(all, []string{"invoices", "payments", "proforma", "transfers", "usage"})
	})
	t.Logf("projector 1 runs %v, projector 2 runs %v", held1, held2)
	if len(held1)+len(held2) != 5 || slices.Contains(held1, "usage") == slices.Contains(held1, "proforma") {
		t.Fatalf("split %v / %v: want 3/2 with usage and proforma apart", held1, held2)
	}

	// The query and command processes run no projector; the query process
	// reports every projection's checkpoint in the read model.
	if got := q.runsHere(t); len(got) != 0 || len(q.readyz(t).Projectors) != 5 {
		t.Fatalf("query process /readyz: %+v", q.readyz(t))
	}
	if got := cmd.readyz(t).Projectors; len(got) != 0 {
		t.Fatalf("command process /readyz lists projectors: %+v", got)
	}

	// Commands and usage through the command+ingest process.
	c := cmd.client(t)
	for _, m := range []proto.Message{
		&billingv1.RegisterOrganization{ManagementAccountId: "111111111111", Name: "Partner"},
		&billingv1.RegisterOrganization{ManagementAccountId: "222222222222", Name: "Acme", MemberAccountIds: []string{"222222222223"}},
		&billingv1.CreatePricingRule{PricingRuleId: "pr-m", OwnerAccountId: "111111111111", Name: "m", Type: "MARKUP", Scope: "GLOBAL", ModifierPercentage: "10"},
		&billingv1.CreatePricingPlan{PricingPlanId: "pp", OwnerAccountId: "111111111111", Name: "pp", PricingRuleIds: []string{"pr-m"}},
		&billingv1.InviteBillSource{TransferId: "rt-1", PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09", PricingPlanId: "pp"},
		&billingv1.AcceptTransfer{TransferId: "rt-1"},
		&billingv1.CreateCustomLineItem{CustomLineItemId: "cli-fee", BillingGroupId: "tbg-rt-1", Name: "support", ChargeType: "FEE", FlatAmount: "5", StartMonth: "2026-09"},
		&billingv1.SetTaxSettings{AccountId: "111111111111", LegalName: "Partner Inc", Country: "US", Region: "WA"},
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "10.25", EffectiveFrom: "2026-01-01"},
		&billingv1.SetPaymentProfile{PayerAccountId: "111111111111", Seller: "Amazon Web Services, Inc.", Currency: "USD", PaymentMethod: "CARD"},
	} {
		c.do(wrapCommand(m))
	}
	setClock(t, c, "2026-09-30T12:00:00Z")
	const septRecords = 3000
	ingestUsage(t, c, "s", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), septRecords)
	setClock(t, c, "2026-10-02T00:00:00Z")
	closed := c.do(wrapCommand(&billingv1.CloseMonth{PayerAccountId: "111111111111", Month: "2026-09"}))
	c.do(wrapCommand(&billingv1.RecordPayment{PaymentId: "pay-1", PayerAccountId: "111111111111", Amount: "100", Currency: "USD", Method: "CARD"}))
	if closed.GetCreated()["invoice_count"] != "1" {
		t.Fatalf("close: %v", closed)
	}

	// The query process reads what the projectors committed: replay equals it,
	// and so does one process running every projection on SQLite.
	replica := split("projector,query", "sqlite")
	defer replica.stop(t)
	qc, rc := q.client(t), replica.client(t)
	compare := func(month string, wantRecords int) {
		t.Helper()
		last := lastPosition(t, url)
		live := monthDigest(t, qc, month, last)
		verifyReplayMonth(t, qc, url, month)
		if got := monthDigest(t, rc, month, last); !proto.Equal(live, got) {
			t.Fatalf("%s: PostgreSQL read model (two projectors) %v\n  SQLite, one process %v", month, live, got)
		}
		if n := digestTotal(live, "billable", "records"); n != strconv.Itoa(wantRecords) {
			t.Fatalf("%s: %s records in the billable read model, want %d", month, n, wantRecords)
		}
	}
	compare("2026-09", septRecords)
	t.Logf("September digests: %v", monthDigest(t, qc, "2026-09", 0))

	// One projector stops: the other takes its projections at once (the
	// lease TTL is 10 s: this must not wait for expiry).
	stopped, rest := p2, p1
	if slices.Contains(held1, "usage") {
		stopped, rest = p1, p2
	}
	start := time.Now()
	stopped.stop(t)
	eventually(t, 5*time.Second, "the other projector runs all five", func() bool { return len(rest.runsHere(t)) == 5 })
	t.Logf("hand-over after a graceful stop: %s", time.Since(start).Round(time.Millisecond))

	// New usage reaches the read model exactly once.
	const octRecords = 1000
	setClock(t, c, "2026-10-05T00:00:00Z")
	ingestUsage(t, c, "o", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), octRecords)
	compare("2026-10", octRecords)
	compare("2026-09", septRecords)

	for _, p := range []*splitProc{p1, p2, q} {
		if log := p.logs(); strings.Contains(log, "checkpoint moved") || strings.Contains(log, "runner stopped") || strings.Contains(log, "level=ERROR") {
			t.Fatalf("%s logged:\n%s", p.role, log)
		}
	}
}

// splitProc is one in-process billingd of a split deployment.
type splitProc struct {
	role   string
	dir    string
	s      *Server
	cancel context.CancelFunc
	log    *syncBuffer
}

// startSplit starts a billingd with role on a data dir of its own, logging at
// info into a buffer.
func startSplit(t *testing.T, role string, extra func(*Config)) *splitProc {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Store: "jetstream", ReadModel: "sqlite", Role: role,
		SimulatedClock: "2026-08-10T12:00:00Z", Replicas: 1, MaxInbound: 1000, SweepInterval: 50 * time.Millisecond,
		ReadyMaxLag: 10000, LeaseTTL: 10 * time.Second, LogLevel: "info"}
	if extra != nil {
		extra(&cfg)
	}
	log := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start --role %s: %v", role, err)
	}
	return &splitProc{role: role, dir: dir, s: s, cancel: cancel, log: log}
}

func (p *splitProc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if err := p.s.Wait(); err != nil {
		t.Errorf("--role %s shutdown: %v", p.role, err)
	}
}

func (p *splitProc) client(t *testing.T) *client { return newClient(t, p.s, p.dir) }

func (p *splitProc) logs() string { return p.log.String() }

// readyzBody is GET /readyz.
type readyzBody struct {
	Ready      bool `json:"ready"`
	Projectors []struct {
		Name       string `json:"projection"`
		Checkpoint uint64 `json:"checkpoint"`
		RunsHere   bool   `json:"runs_here"`
	} `json:"projectors"`
}

func (p *splitProc) readyz(t *testing.T) readyzBody {
	t.Helper()
	res, err := http.Get("http://" + p.s.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body readyzBody
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body
}

// runsHere lists the projections the process runs, per /readyz.
func (p *splitProc) runsHere(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pr := range p.readyz(t).Projectors {
		if pr.RunsHere {
			out = append(out, pr.Name)
		}
	}
	return out
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wrapCommand puts a command message in the ExecuteRequest oneof field of its type.
func wrapCommand(m proto.Message) *billingv1.ExecuteRequest {
	req := &billingv1.ExecuteRequest{}
	r := req.ProtoReflect()
	fields := r.Descriptor().Oneofs().ByName("command").Fields()
	for i := range fields.Len() {
		if f := fields.Get(i); f.Message() != nil && f.Message().FullName() == m.ProtoReflect().Descriptor().FullName() {
			r.Set(f, protoreflect.ValueOfMessage(m.ProtoReflect()))
			return req
		}
	}
	panic(fmt.Sprintf("no ExecuteRequest field for %T", m))
}

func setClock(t *testing.T, c *client, at string) {
	t.Helper()
	if _, err := c.admin.SetClock(context.Background(), connect.NewRequest(&billingv1.SetClockRequest{Time: at})); err != nil {
		t.Fatal(err)
	}
}

// ingestUsage sends n records over the API in batches of 500, spread over
// the source organization's two accounts, three services and the first days
// of the month of from; every record is accepted.
func ingestUsage(t *testing.T, c *client, prefix string, from time.Time, n int) {
	t.Helper()
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda"}
	for first := 0; first < n; first += 500 {
		var recs []*billingv1.UsageRecord
		for i := first; i < min(first+500, n); i++ {
			at := from.Add(time.Duration(i%72) * time.Hour)
			recs = append(recs, &billingv1.UsageRecord{
				UsageId: fmt.Sprintf("%s-%d", prefix, i), AccountId: []string{"222222222222", "222222222223"}[i%2],
				ChargePeriodStart: timestamppb.New(at), ChargePeriodEnd: timestamppb.New(at.Add(time.Hour)),
				Service: services[i%3], UsageType: "Usage" + strconv.Itoa(i%5), Quantity: strconv.Itoa(i%7 + 1),
				ListUnitPrice: "0.1", BilledCost: "0.09", Currency: "USD",
			})
		}
		res, err := c.usage.IngestBatch(context.Background(), connect.NewRequest(&billingv1.IngestBatchRequest{Records: recs}))
		if err != nil {
			t.Fatalf("ingest %s-%d…: %v", prefix, first, err)
		}
		if got := int(res.Msg.GetAccepted()); got != len(recs) {
			t.Fatalf("ingest %s-%d…: %d of %d accepted, e.g. %v", prefix, first, got, len(recs), res.Msg.GetResults()[len(recs)-1])
		}
	}
}

// lastPosition is the store's last position.
func lastPosition(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// monthDigest asks MonthDigest once the read models have applied position
// (0 = no explicit minimum).
func monthDigest(t *testing.T, c *client, month string, position uint64) *billingv1.MonthDigestResponse {
	t.Helper()
	req := connect.NewRequest(&billingv1.MonthDigestRequest{Month: month})
	if position > 0 {
		req.Header().Set(api.MinPositionHeader, strconv.FormatUint(position, 10))
	}
	res, err := c.query.MonthDigest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

// digestTotal is one total of one read model's digest.
func digestTotal(d *billingv1.MonthDigestResponse, name, total string) string {
	for _, x := range d.GetDigests() {
		if x.GetName() == name {
			return x.GetTotals()[total]
		}
	}
	return ""
}
