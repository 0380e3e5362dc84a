package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/services/auth"
)

// Names of the durable ingestion path (services/ingest, public contract).
const (
	durableSubject  = "usage.v1.records"
	durableStream   = "USAGE_INGEST"
	durableConsumer = "billing-ingest"
)

// crashLoad is the deterministic workload of TestCrashDuringIngestion.
type crashLoad struct {
	month    string
	orgs     []string // management accounts
	accounts []string // every account, 1,000
	payloads [][]byte // one JSON record per message
	rows     map[rowKey]*expRow
	total    int64 // sum of billed_cost, in units of 1e-4
}

// rowKey is a billable row's key (payer = source = the organization: no transfer).
type rowKey struct{ account, service string }

type expRow struct {
	org      string
	cost     int64 // 1e-4 units
	quantity int64
	records  uint64
}

// newCrashLoad builds n records over 4 organizations of 250 accounts each
// (1,000 accounts) and 4 services, all in 2026-08 (before the simulated clock's
// 2026-08-10T12:00Z, so none is in the future). Record i costs
// (1 + i·7919 mod 99,999) × 0.0001 USD: every amount and the total are exact.
func newCrashLoad(n int) *crashLoad {
	l := &crashLoad{month: "2026-08", rows: map[rowKey]*expRow{}}
	orgOf := map[string]string{}
	for o := 0; o < 4; o++ {
		mgmt := fmt.Sprintf("7%d0000000000", o)
		l.orgs = append(l.orgs, mgmt)
		for m := 0; m < 250; m++ {
			acct := fmt.Sprintf("7%d00000%05d", o, m)
			l.accounts = append(l.accounts, acct)
			orgOf[acct] = mgmt
		}
	}
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS"}
	base := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		acct := l.accounts[i%len(l.accounts)]
		svc := services[(i/len(l.accounts))%len(services)]
		cost := int64(1 + (i*7919)%99999)
		qty := int64(1 + i%10)
		start := base.Add(time.Duration(i%200) * time.Hour)
		l.payloads = append(l.payloads, fmt.Appendf(nil,
			`{"usage_id":"crash-%06d","account_id":"%s","charge_period_start":"%s","charge_period_end":"%s","service":"%s","usage_type":"Usage","operation":"Run","region":"us-east-1","quantity":"%d","unit":"Hrs","list_unit_price":"0.01","billed_cost":"%s","currency":"USD"}`,
			i, acct, start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339), svc, qty, formatScaled(cost)))
		k := rowKey{acct, svc}
		r := l.rows[k]
		if r == nil {
			r = &expRow{org: orgOf[acct]}
			l.rows[k] = r
		}
		r.cost += cost
		r.quantity += qty
		r.records++
		l.total += cost
	}
	return l
}

// setupCommands registers the organizations: the management account and 249
// members each.
func (l *crashLoad) setupCommands() string {
	var b strings.Builder
	for o, mgmt := range l.orgs {
		members := l.accounts[o*250+1 : (o+1)*250]
		fmt.Fprintf(&b, `{"command":"RegisterOrganization","management_account_id":"%s","name":"Crash Org %d","member_account_ids":["%s"]}`+"\n",
			mgmt, o, strings.Join(members, `","`))
	}
	return b.String()
}

// formatScaled renders n × 1e-4 as a canonical decimal (no trailing zeros).
func formatScaled(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprintf("%d.%04d", n/10000, n%10000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if neg {
		s = "-" + s
	}
	return s
}

// parseScaled parses a plain decimal string exactly into 1e-4 units; more
// than 4 significant fractional digits is an error (the amounts have 4).
func parseScaled(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	if len(frac) > 4 {
		return 0, fmt.Errorf("%q has more than 4 fractional digits", s)
	}
	frac += strings.Repeat("0", 4-len(frac))
	if whole == "" {
		whole = "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decimal %q: %w", s, err)
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decimal %q: %w", s, err)
	}
	n := w*10000 + f
	if neg {
		n = -n
	}
	return n, nil
}

// publisher publishes records on the durable path, one JetStream message
// each, with at most window publishes awaiting their ack.
type publisher struct {
	js     jetstream.JetStream
	token  string // signs every message (auth.SignPayload), as billingd requires
	window int
	acked  []bool        // acked[i]: the publish of record i was acknowledged
	nAcked atomic.Int64  // number of acks so far (read while publishing)
	nErr   atomic.Int64  // publishes that failed
	stop   chan struct{} // closed: stop waiting, the server is gone
}

// publish publishes the records idxs in order. It marks acked[i] only on a
// publisher ack, and returns when every publish is resolved or stop closes.
// No Nats-Msg-Id is set: a re-publish reaches the ledger, whose own
// deduplication by usage_id (U2) must keep the count exact.
func (p *publisher) publish(payloads [][]byte, idxs []int) {
	type inFlight struct {
		i   int
		fut jetstream.PubAckFuture
	}
	queue := make([]inFlight, 0, p.window)
	resolve := func(f inFlight) bool {
		select {
		case <-f.fut.Ok():
			p.acked[f.i] = true
			p.nAcked.Add(1)
		case <-f.fut.Err():
			p.nErr.Add(1)
		case <-p.stop:
			return false
		}
		return true
	}
	for _, i := range idxs {
		select {
		case <-p.stop:
			return
		default:
		}
		msg := nats.NewMsg(durableSubject)
		msg.Data = payloads[i]
		msg.Header.Set("Authorization", auth.SignPayload(p.token, payloads[i]))
		fut, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			p.nErr.Add(1)
			continue
		}
		queue = append(queue, inFlight{i, fut})
		if len(queue) >= p.window {
			if !resolve(queue[0]) {
				return
			}
			queue = queue[1:]
		}
	}
	for _, f := range queue {
		if !resolve(f) {
			return
		}
	}
}

// connectJS connects a publisher to billingd's NATS server and waits until
// the USAGE_INGEST stream exists (billingd's ingest role creates it).
func connectJS(t *testing.T, url string, window int) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("e2e-publisher"), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*window), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waited := time.Now()
	for {
		_, err := js.Stream(ctx, durableStream)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s never appeared on %s: %v", durableStream, url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if w := time.Since(waited); w > 100*time.Millisecond {
		t.Logf("stream %s appeared %s after /healthz answered 200", durableStream, w.Round(time.Millisecond))
	}
	return nc, js
}

// TestCrashDuringIngestion is issue #3's crash test: 100,000 records published
// on the durable path (one JetStream message each, publisher acks), billingd
// killed with SIGKILL while they are being ingested, restarted on the same data
// dir, every unacknowledged record published again; then the billable total is
// the exact sum with every record counted once, and replay --verify passes.
func TestCrashDuringIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the crash test publishes 100,000 records")
	}
	t.Parallel()
	const (
		n      = 100_000
		window = 2048
	)
	load := newCrashLoad(n)
	work := t.TempDir()
	dataDir := filepath.Join(work, "data")

	d := startDaemon(t, dataDir)
	d.ctlOK("", "apply", "-f", writeFile(t, "orgs.jsonl", load.setupCommands()))
	var setup info
	decode(t, d.ctlOK("", "info"), &setup)
	basePos := setup.LastPosition
	nc, js := connectJS(t, setup.NATSURL, window)

	// Phase 1: publish everything; kill -9 once half the publishes are acked
	// and the ledger has appended usage.
	pub := &publisher{js: js, token: d.token, window: window, acked: make([]bool, n), stop: make(chan struct{})}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	begin := time.Now()
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.publish(load.payloads, all) }()

	// Kill point: half of the publishes acknowledged, and the ledger has
	// appended usage (its store position moved past the setup). The position
	// comes from `billctl info`, which answers at once; a billable report
	// waits for the read model and would delay the kill under load.
	var pos atomic.Uint64
	pos.Store(uint64(basePos))
	pollStop := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-pollStop:
				return
			default:
			}
			// A failed poll (billingd killed under it) is not an error.
			r, err := d.tryCtl("", "info")
			var in info
			if err == nil && r.code == 0 && decodeQuiet(r, &in) == nil {
				pos.Store(uint64(in.LastPosition))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	killAfterAcks := int64(n / 2)
	deadline := time.Now().Add(2 * time.Minute)
	for pub.nAcked.Load() < killAfterAcks || pos.Load() == uint64(basePos) {
		select {
		case <-pubDone:
			if pub.nAcked.Load() < killAfterAcks {
				t.Fatalf("the publisher stopped after %d acks and %d errors, before the kill point %d", pub.nAcked.Load(), pub.nErr.Load(), killAfterAcks)
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kill point within 2 minutes: %d publishes acked, store position %d (%d after the setup)", pub.nAcked.Load(), pos.Load(), basePos)
		}
		time.Sleep(time.Millisecond)
	}
	ackedAtKill := pub.nAcked.Load()
	posAtKill := pos.Load()
	publishing := true
	select {
	case <-pubDone:
		publishing = false
	default:
	}
	d.kill()
	killedAt := time.Since(begin)
	close(pub.stop)
	close(pollStop)
	<-pubDone
	<-pollDone
	nc.Close()
	var unacked []int
	for i, ok := range pub.acked {
		if !ok {
			unacked = append(unacked, i)
		}
	}
	t.Logf("kill -9 after %s: %d publishes acked (%.0f acks/s), %d events appended by the ledger since the setup, publisher still running: %v; %d to re-publish",
		killedAt.Round(time.Millisecond), ackedAtKill, float64(ackedAtKill)/killedAt.Seconds(), posAtKill-uint64(basePos), publishing, len(unacked))

	// Phase 2: restart on the same data dir, re-publish what was not acked.
	restart := time.Now()
	d2 := startDaemon(t, dataDir)
	_, js2 := connectJS(t, d2.natsURL(), window)
	b := d2.billable(load.month)
	t.Logf("after the restart (%s): %d records in the billable view, total %s", time.Since(restart).Round(time.Millisecond), b.records(), b.Total)
	if b.records() == n {
		t.Logf("note: every record was booked before the kill; this run crashed after the ledger's ingestion")
	}
	if b.records() > n {
		t.Fatalf("after the restart the billable view holds %d records, more than the %d published: double counting", b.records(), n)
	}
	todo := unacked
	for round := 1; len(todo) > 0; round++ {
		if round > 5 {
			t.Fatalf("%d records still not acknowledged after 5 rounds of re-publishing", len(todo))
		}
		rp := &publisher{js: js2, token: d.token, window: window, acked: make([]bool, n), stop: make(chan struct{})}
		rp.publish(load.payloads, todo)
		var next []int
		for _, i := range todo {
			if !rp.acked[i] {
				next = append(next, i)
			}
		}
		t.Logf("re-publish round %d: %d acked, %d failed", round, len(todo)-len(next), len(next))
		todo = next
	}

	// Phase 3: wait (bounded) for the exact total with every record once.
	converge := time.Now()
	var last billable
	var lastRecs uint64
	lastMove, stallLogged := time.Now(), false
	for {
		last = d2.billable(load.month)
		got, err := parseScaled(last.Total)
		if err != nil {
			t.Fatalf("billable total: %v", err)
		}
		recs := last.records()
		if recs > n {
			t.Fatalf("the billable view holds %d records (total %s), more than the %d published (expected total %s): double counting\n%s",
				recs, last.Total, n, formatScaled(load.total), consumerState(js2))
		}
		if recs == n && got == load.total {
			break
		}
		if recs != lastRecs {
			lastRecs, lastMove = recs, time.Now()
		} else if !stallLogged && time.Since(lastMove) > 10*time.Second {
			stallLogged = true
			t.Logf("no progress for 10 s at %d of %d records (total %s of %s); %s", recs, n, last.Total, formatScaled(load.total), consumerState(js2))
		}
		if time.Since(converge) > 3*time.Minute {
			t.Fatalf("no convergence within 3 minutes: %d of %d records, total %s of %s (missing %s); %s",
				recs, n, last.Total, formatScaled(load.total), formatScaled(load.total-got), consumerState(js2))
		}
		time.Sleep(100 * time.Millisecond)
	}
	ingestDone := time.Since(begin)
	t.Logf("converged %s after the re-publish (%s after the first publish): %d records, total %s; after the restart the ledger booked %.0f records/s",
		time.Since(converge).Round(time.Millisecond), ingestDone.Round(time.Millisecond), n, last.Total,
		float64(n-int(b.records()))/time.Since(restart).Seconds())

	// Messages the killed process had fetched but not acknowledged stay "ack
	// pending" until the consumer's AckWait (2 minutes) expires; then they are
	// redelivered and must be found duplicates. Wait for that (bounded), so
	// that a late double count cannot escape the checks below.
	drain := time.Now()
	for {
		ci, err := consumerInfo(js2)
		if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
			break
		}
		if time.Since(drain) > 3*time.Minute {
			t.Fatalf("the ingest consumer did not drain within 3 minutes: %s", consumerState(js2))
		}
		if time.Since(drain) < 100*time.Millisecond {
			t.Logf("converged, but messages await redelivery: %s", consumerState(js2))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if w := time.Since(drain); w > time.Second {
		t.Logf("the ingest consumer drained %s after convergence", w.Round(time.Millisecond))
	}

	// Exact rows.
	last = d2.billable(load.month)
	var diffs []string
	seen := map[rowKey]bool{}
	for _, r := range last.Rows {
		k := rowKey{r.AccountID, r.Service}
		e := load.rows[k]
		seen[k] = true
		cost, err := parseScaled(r.BilledCost)
		if e == nil || err != nil || r.Month != load.month || r.PayerAccountID != e.org || r.SourceAccountID != e.org ||
			cost != e.cost || r.UsageQuantity != strconv.FormatInt(e.quantity, 10) || uint64(r.RecordCount) != e.records || r.Currency != "USD" {
			diffs = append(diffs, fmt.Sprintf("%+v (expected %+v)", r, e))
		}
	}
	for k := range load.rows {
		if !seen[k] {
			diffs = append(diffs, fmt.Sprintf("missing row %v", k))
		}
	}
	if len(diffs) > 0 || last.records() != n || last.Total != formatScaled(load.total) {
		sort.Strings(diffs)
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("… %d more", len(diffs)-20))
		}
		t.Fatalf("%d records, total %s (want %d, %s), %d rows (want %d); differing rows:\n%s",
			last.records(), last.Total, n, formatScaled(load.total), len(last.Rows), len(load.rows), strings.Join(diffs, "\n"))
	}
	var dl deadLetters
	decode(t, d2.ctlOK("", "deadletter", "list"), &dl)
	if len(dl.DeadLetters) != 0 {
		t.Fatalf("nothing should be dead-lettered, got %v (first: %+v)", dl.ByReason, dl.DeadLetters[0])
	}

	// replay --verify: the live read models equal the replay from the events.
	rstart := time.Now()
	rep := replay(t, d2, 0, "--month", load.month, "--verify")
	if rep.Verified == nil || !*rep.Verified || len(rep.Differences) != 0 {
		t.Fatalf("replay --verify: %+v", rep)
	}
	if bm := model(t, rep.Replay, "billable"); bm.Totals["billed_cost"] != formatScaled(load.total) || bm.Totals["records"] != strconv.Itoa(n) || bm.Rows != uint64(len(load.rows)) {
		t.Fatalf("replay: billable %+v, want billed_cost %s, records %d, rows %d", bm, formatScaled(load.total), n, len(load.rows))
	}
	t.Logf("replay --verify of %d records in %d events: %.3f s in billctl (%s wall with the process)",
		rep.Records, rep.Events, rep.Seconds, time.Since(rstart).Round(time.Millisecond))
}

// consumerInfo reads the ingest consumer's state.
func consumerInfo(js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, durableStream, durableConsumer)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", durableConsumer, err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s info: %w", durableConsumer, err)
	}
	return ci, nil
}

// consumerState describes the ingest consumer for failure messages.
func consumerState(js jetstream.JetStream) string {
	ci, err := consumerInfo(js)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("consumer %s: pending %d, ack pending %d, redelivered %d, delivered stream seq %d, ack floor stream seq %d",
		durableConsumer, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream, ci.AckFloor.Stream)
}
