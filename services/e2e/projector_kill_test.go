package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// killLeaseTTL is the --lease-ttl of TestProjectorKilledHandsOver: short, so
// that the expiry the test waits for takes seconds, not the default 10 s.
const killLeaseTTL = 2 * time.Second

// killSetup registers P=111111111111 and S=222222222222 (member
// 222222222223) and the transfer S→P from 2026-09, accepted: September usage
// of S is billed to P, and has a pro forma.
const killSetup = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner Co"}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
{"command":"InviteBillSource","transfer_id":"rt-kill","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}
{"command":"AcceptTransfer","transfer_id":"rt-kill"}
`

// killLateCommands are applied after the kill: events for the transfers and
// payments projections, which the killed process held with the usage one
// (lease assigns usage, transfers and payments to the same process of two).
// 333333333333 pays for itself in September (its transfer starts in
// November).
const killLateCommands = `{"command":"RegisterOrganization","management_account_id":"333333333333","name":"Late Co"}
{"command":"InviteBillSource","transfer_id":"rt-late","payer_account_id":"111111111111","source_account_id":"333333333333","start_month":"2026-11"}
{"command":"AcceptTransfer","transfer_id":"rt-late"}
{"command":"SetPaymentProfile","payer_account_id":"111111111111","seller":"Amazon Web Services, Inc.","currency":"USD","payment_method":"CARD"}
{"command":"RecordPayment","payment_id":"pay-kill","payer_account_id":"111111111111","amount":"100","currency":"USD","method":"CARD"}
`

// projectionSet is the five projections, sorted.
var projectionSet = []string{"invoices", "payments", "proforma", "transfers", "usage"}

// TestProjectorKilledHandsOver (issue #8): a split deployment on the real
// binaries, one PostgreSQL read model and one NATS server. billingd A runs
// --role command,ingest,query with the embedded NATS server; billingd P1 and
// P2 run --role projector on A's NATS and the same PostgreSQL schema, with a
// 2 s --lease-ttl, and split the five projections 3/2 by leases.
//
// A first batch of usage is sent and projected (every checkpoint in the read
// model at the store's last position). A second batch is sent and, without
// waiting for it to be projected, the projector holding the usage projection
// is killed with SIGKILL: no graceful stop, its leases and membership are not
// released, and a read-model transaction may be in flight. Commands for the
// transfers and payments projections and a third batch of usage follow while
// nobody runs those projections. The survivor must take all five projections
// when the killed process's keys expire (about the TTL), and the query
// process must then count every record exactly once: the billable rows and
// totals equal what was sent, and billctl replay --verify finds the live
// digests (QueryService.MonthDigest of A) equal to a replay of the log.
//
// A real process is killed because a goroutine cannot be: an in-process
// "crash" would still release the leases or at least close the NATS
// connection cleanly. Skipped without BILLING_TEST_POSTGRES.
func TestProjectorKilledHandsOver(t *testing.T) {
	t.Parallel()
	start := time.Now()
	target := readmodeltest.Postgres.Target(t) // skips without BILLING_TEST_POSTGRES; dropped after the processes stop
	ttl := killLeaseTTL.String()
	dir := t.TempDir()
	a := startDaemon(t, filepath.Join(dir, "a"),
		"--role", "command,ingest,query", "--nats-listen", "127.0.0.1:0", "--readmodel", target, "--lease-ttl", ttl)
	natsURL := a.natsURL()
	p1 := startDaemon(t, filepath.Join(dir, "p1"),
		"--role", "projector", "--nats-url", natsURL, "--readmodel", target, "--lease-ttl", ttl)
	p2 := startDaemon(t, filepath.Join(dir, "p2"),
		"--role", "projector", "--nats-url", natsURL, "--readmodel", target, "--lease-ttl", ttl)

	// The five projections split as the leases assign them to two members
	// (round-robin over usage, proforma, transfers, invoices, payments): the
	// one holding usage also runs transfers and payments, the other proforma
	// and invoices. Waiting for exactly that (not any 3/2 split, which a
	// hand-over in progress can show) means the split is settled.
	var held1, held2 []string
	waitFor(t, 15*time.Second, "the projectors split the five projections", func() (bool, string) {
		held1, held2 = runsHere(p1), runsHere(p2)
		sort.Strings(held1)
		sort.Strings(held2)
		first, second := []string{"payments", "transfers", "usage"}, []string{"invoices", "proforma"}
		return slices.Equal(held1, first) && slices.Equal(held2, second) || slices.Equal(held1, second) && slices.Equal(held2, first),
			fmt.Sprintf("P1 runs %v, P2 runs %v", held1, held2)
	})
	t.Logf("P1 runs %v, P2 runs %v", held1, held2)
	victim, survivor, victimHeld := p1, p2, held1
	if slices.Contains(held2, "usage") {
		victim, survivor, victimHeld = p2, p1, held2
	}

	a.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", killSetup))
	a.ctlOK("", "clock", "set", "2026-10-05")
	want := newKillUsage()

	// Batch 1, projected by both processes.
	want.send(t, a, "k1", 1500, []string{"222222222222", "222222222223"})
	caughtUp(t, a, 15*time.Second)
	if b := a.billable("2026-09"); b.records() != 1500 {
		t.Fatalf("after batch 1: %d records in the billable report, want 1500", b.records())
	}

	// Batch 2 goes in, and the usage projector is killed without waiting for
	// it: usually while it still applies the batch (the log line shows the
	// checkpoints in the read model right after the kill).
	want.send(t, a, "k2", 1500, []string{"222222222222", "222222222223"})
	killedAt := time.Now()
	victim.kill()
	if r, err := readyz(a); err == nil {
		t.Logf("killed the projector running %v (SIGKILL); store at %d, checkpoints in the read model %+v", victimHeld, r.LastPosition, r.Projectors)
	}

	// While nobody runs usage, transfers and payments: new events for each.
	a.ctlOK("", "apply", "-f", writeFile(t, "late.jsonl", killLateCommands))
	want.send(t, a, "k3", 1000, []string{"222222222223", "333333333333"})

	// The survivor takes the killed process's projections when its keys
	// expire, and no sooner: nothing released them.
	waitFor(t, 10*killLeaseTTL, "the survivor runs all five projections", func() (bool, string) {
		got := runsHere(survivor)
		sort.Strings(got)
		return slices.Equal(got, projectionSet), fmt.Sprintf("survivor runs %v", got)
	})
	handOver := time.Since(killedAt)
	t.Logf("hand-over after SIGKILL: %s (--lease-ttl %s)", handOver.Round(time.Millisecond), killLeaseTTL)
	// The killed process renewed its keys at most TTL/3 before it died, so
	// they expire between 2/3 TTL and TTL after the kill. Sooner would mean
	// something released them (the kill was not a crash); much later, that
	// the expiry was not noticed.
	if handOver < killLeaseTTL/2 || handOver > 2*killLeaseTTL {
		t.Errorf("hand-over took %s, want about the lease TTL (%s)", handOver.Round(time.Millisecond), killLeaseTTL)
	}

	// Every record exactly once, and the live digests equal the replay.
	caughtUp(t, a, 30*time.Second)
	want.check(t, a, "2026-09")
	rep := replay(t, a, 0, "--month", "2026-09", "--verify")
	if rep.Verified == nil || !*rep.Verified || len(rep.Differences) != 0 {
		t.Fatalf("replay 2026-09 --verify: the live read models differ from the replay: %v", rep.Differences)
	}
	for _, name := range []string{"billable", "proforma", "cost", "payments"} {
		if l, r := model(t, rep.Live, name), model(t, rep.Replay, name); l.Digest != r.Digest || l.Rows != r.Rows {
			t.Errorf("%s: live %+v, replay %+v", name, l, r)
		}
	}
	b := model(t, rep.Live, "billable")
	if b.Totals["records"] != fmt.Sprint(want.records) || b.Totals["billed_cost"] != formatScaled(want.total) {
		t.Errorf("live billable digest totals %v, want records %d billed_cost %s", b.Totals, want.records, formatScaled(want.total))
	}
	if pf := model(t, rep.Live, "proforma"); pf.Totals["records"] != fmt.Sprint(want.records) || pf.Totals["billable_cost"] != formatScaled(want.total) {
		t.Errorf("live proforma digest totals %v, want records %d billable_cost %s", pf.Totals, want.records, formatScaled(want.total))
	}
	var pay paymentReport
	decode(t, a.ctlOK("", "report", "payments", "--payer", "111111111111"), &pay)
	if len(pay.PayerBalances) != 1 || pay.PayerBalances[0].Unapplied != "100.00" {
		t.Errorf("report payments --payer 111111111111: %+v, want 100.00 unapplied credit (recorded after the kill)", pay)
	}
	var tr struct {
		Transfers []struct {
			TransferID string `json:"transfer_id"`
			Status     string `json:"status"`
		} `json:"transfers"`
	}
	decode(t, a.ctlOK("", "report", "transfers", "--source", "333333333333"), &tr)
	if len(tr.Transfers) != 1 || tr.Transfers[0].TransferID != "rt-late" || tr.Transfers[0].Status != "ACCEPTED" {
		t.Errorf("report transfers --source 333333333333: %+v, want rt-late ACCEPTED (accepted after the kill)", tr.Transfers)
	}

	// The survivor took the projections over cleanly: no runner met a
	// checkpoint moved by the killed process, no work failed.
	log, err := os.ReadFile(survivor.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"leased work failed", "committed by another process", "level=ERROR"} {
		if strings.Contains(string(log), bad) {
			t.Errorf("the survivor logged %q:\n%s", bad, tail(survivor.logPath, 16<<10))
		}
	}
	t.Logf("%d records, billed %s, in %s", want.records, formatScaled(want.total), time.Since(start).Round(time.Millisecond))
}

// killUsage is what TestProjectorKilledHandsOver sent: the September billable
// rows it expects, exactly.
type killUsage struct {
	rows    map[billableKey]*billableWant
	records uint64
	total   int64 // sum of billed_cost, in 1e-4 units
}

type billableKey struct{ payer, source, account, service string }

type billableWant struct {
	cost     int64 // 1e-4 units
	quantity int64
	records  uint64
}

func newKillUsage() *killUsage { return &killUsage{rows: map[billableKey]*billableWant{}} }

// killPayer is who pays for an account's September usage: 111111111111 for
// the organization it took over with rt-kill, the organization itself else.
func killPayer(account string) (payer, source string) {
	if account == "333333333333" {
		return account, account
	}
	return "111111111111", "222222222222"
}

// send sends n September records with ids prefix-0… over NATS (billctl usage
// send), spread over accounts and three services, with distinct exact costs,
// and requires every one to be accepted.
func (u *killUsage) send(t *testing.T, d *daemon, prefix string, n int, accounts []string) {
	t.Helper()
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda"}
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	for i := range n {
		acct, svc := accounts[i%len(accounts)], services[(i/len(accounts))%len(services)]
		cost, qty := int64(1+(i*7919)%99999), int64(1+i%10)
		at := base.Add(time.Duration(i%600) * time.Hour)
		fmt.Fprintf(&b, `{"usage_id":"%s-%05d","account_id":"%s","charge_period_start":"%s","charge_period_end":"%s","service":"%s","usage_type":"Usage","operation":"Run","region":"us-east-1","quantity":"%d","unit":"Hrs","list_unit_price":"0.01","billed_cost":"%s","currency":"USD"}`+"\n",
			prefix, i, acct, at.Format(time.RFC3339), at.Add(time.Hour).Format(time.RFC3339), svc, qty, formatScaled(cost))
		payer, source := killPayer(acct)
		k := billableKey{payer, source, acct, svc}
		w := u.rows[k]
		if w == nil {
			w = &billableWant{}
			u.rows[k] = w
		}
		w.cost += cost
		w.quantity += qty
		w.records++
		u.records++
		u.total += cost
	}
	var sum sendSummary
	r := d.ctlOK(b.String(), "usage", "send", "-f", "-")
	decode(t, r, &sum)
	if sum.Records != n || sum.Accepted != n {
		t.Fatalf("usage send %s: want %d accepted:\n%s", prefix, n, r)
	}
}

// check compares the billable report of month with what was sent: the same
// rows, each cost, quantity and record count exactly, and the total.
func (u *killUsage) check(t *testing.T, d *daemon, month string) {
	t.Helper()
	b := d.billable(month)
	got := map[billableKey]billableRow{}
	for _, r := range b.Rows {
		k := billableKey{r.PayerAccountID, r.SourceAccountID, r.AccountID, r.Service}
		if _, dup := got[k]; dup {
			t.Errorf("billable row %+v twice", k)
		}
		got[k] = r
	}
	for k, w := range u.rows {
		r, ok := got[k]
		if !ok {
			t.Errorf("billable row %+v missing (want %d records)", k, w.records)
			continue
		}
		cost, err := parseScaled(r.BilledCost)
		if err != nil {
			t.Errorf("row %+v: billed_cost %q: %v", k, r.BilledCost, err)
		}
		if cost != w.cost || r.UsageQuantity != fmt.Sprint(w.quantity) || uint64(r.RecordCount) != w.records || r.Currency != "USD" {
			t.Errorf("row %+v: billed_cost %s quantity %s records %d, want %s %d %d",
				k, r.BilledCost, r.UsageQuantity, r.RecordCount, formatScaled(w.cost), w.quantity, w.records)
		}
		delete(got, k)
	}
	for k, r := range got {
		t.Errorf("unexpected billable row %+v: %+v", k, r)
	}
	if b.Total != formatScaled(u.total) || b.records() != u.records {
		t.Errorf("billable %s: total %s over %d records, want %s over %d", month, b.Total, b.records(), formatScaled(u.total), u.records)
	}
}

// readyzOut is GET /readyz.
type readyzOut struct {
	Ready        bool   `json:"ready"`
	LastPosition uint64 `json:"last_position"`
	Projectors   []struct {
		Name       string `json:"projection"`
		Checkpoint uint64 `json:"checkpoint"`
		Lag        uint64 `json:"lag_positions"`
		RunsHere   bool   `json:"runs_here"`
	} `json:"projectors"`
	Error string `json:"error"`
}

// readyz reads GET /readyz of d (503 is an answer too).
func readyz(d *daemon) (readyzOut, error) {
	var out readyzOut
	client := &http.Client{Timeout: 3 * time.Second}
	res, err := client.Get("http://" + d.http + "/readyz")
	if err != nil {
		return out, err
	}
	defer func() { _ = res.Body.Close() }()
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("GET /readyz (%s): %w", res.Status, err)
	}
	return out, nil
}

// runsHere lists the projections d runs, per its /readyz (nil when it does
// not answer).
func runsHere(d *daemon) []string {
	r, err := readyz(d)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range r.Projectors {
		if p.RunsHere {
			out = append(out, p.Name)
		}
	}
	return out
}

// caughtUp waits until the query process q reports all five projections'
// checkpoints in the read model at the store's last position (its /readyz;
// runners with nothing of their filter to apply move their checkpoint at
// their idle tick).
func caughtUp(t *testing.T, q *daemon, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "every projection at the store's last position", func() (bool, string) {
		r, err := readyz(q)
		if err != nil {
			return false, err.Error()
		}
		if r.LastPosition == 0 || len(r.Projectors) != len(projectionSet) {
			return false, fmt.Sprintf("%+v", r)
		}
		for _, p := range r.Projectors {
			if p.Checkpoint < r.LastPosition {
				return false, fmt.Sprintf("%+v", r)
			}
		}
		return true, ""
	})
}

// waitFor polls cond every 25 ms until it holds, failing the test with cond's
// last description after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s; last: %s", timeout, what, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
