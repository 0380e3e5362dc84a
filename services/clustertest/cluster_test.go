package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// Sizes of the ingest test. 50,000 unique records are required by issue #8;
// the batch size keeps the run under a minute on two cores with -race.
const (
	uniqueRecords = 50_000
	batchSize     = 1_250 // 40 batches of new records
	dupBatchSize  = 500
	dupEvery      = 5 // a batch of re-sent duplicates after every 5th batch: 8 × 500
	seed          = 20260925
	// attemptTimeout bounds one attempt of a batch or command; a stream
	// without a leader makes the attempt fail and the test retry it.
	attemptTimeout = 5 * time.Second
	commandTimeout = 2 * time.Second
	maxAttempts    = 30
)

var (
	ledgerNow = time.Date(2026, 9, 25, 0, 0, 0, 0, time.UTC)
	months    = []string{"2026-08", "2026-09"}
	services  = []string{"AmazonEC2", "AmazonS3", "AmazonRDS", "AWSLambda", "AmazonDynamoDB"}
)

// org is a registered organization: its management account and members.
type org struct {
	mgmt    string
	members []string
}

// registerOrgs registers n organizations with three member accounts each
// through the command pipeline, and returns them.
func registerOrgs(t *testing.T, ctx context.Context, p *commands.Pipeline, n int, base int64) ([]org, uint64) {
	t.Helper()
	var out []org
	var last uint64
	for i := range n {
		id := base + int64(i)*100
		o := org{mgmt: fmt.Sprintf("%012d", id)}
		for m := 1; m <= 3; m++ {
			o.members = append(o.members, fmt.Sprintf("%012d", id+int64(m)))
		}
		res := execute(t, ctx, p, &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
			ManagementAccountId: o.mgmt, Name: "org " + o.mgmt, MemberAccountIds: o.members, RequestId: "register-" + o.mgmt,
		}}})
		out = append(out, o)
		last = max(last, res.GetPosition())
	}
	return out, last
}

// execute runs a command that must succeed, retrying (with its request_id)
// errors that are not rejections.
func execute(t *testing.T, ctx context.Context, p commands.Executor, req *billingv1.ExecuteRequest) *billingv1.CommandResult {
	t.Helper()
	res, attempts, err := executeRetrying(ctx, p, req, nil)
	if err != nil {
		t.Fatalf("%v after %d attempts", err, attempts)
	}
	return res
}

// executeRetrying runs a command until it succeeds or is rejected
// (*domain.Error), retrying every other error, and ABORTED, the pipeline's
// "gave up after too many conflicts; retry it" (onErr, when set, hears of
// each): with a request_id, a retry of a command that was in fact appended
// returns its recorded result.
func executeRetrying(ctx context.Context, p commands.Executor, req *billingv1.ExecuteRequest, onErr func(attempt int, err error)) (*billingv1.CommandResult, int, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, commandTimeout)
		res, err := p.Execute(actx, "clustertest", req)
		cancel()
		var de *domain.Error
		decided := err == nil || (errors.As(err, &de) && de.Code != domain.CodeAborted)
		if decided || attempt == maxAttempts || ctx.Err() != nil {
			return res, attempt, err
		}
		if onErr != nil {
			onErr(attempt, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// usageSet is the records of the test and what the read model must hold.
type usageSet struct {
	records []*billingv1.UsageRecord
	// per month: the exact sum of billed cost and the number of records
	total map[string]*apd.Decimal
	count map[string]uint64
}

// makeUsage builds n records with unique usage ids, spread over the accounts,
// services and both months, with billed costs of up to 6 decimals.
func makeUsage(t *testing.T, rng *rand.Rand, n int, accounts []string) usageSet {
	t.Helper()
	set := usageSet{total: map[string]*apd.Decimal{}, count: map[string]uint64{}}
	zero, _ := domain.ParseDecimal("0")
	for _, m := range months {
		set.total[m] = zero
	}
	first := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	span := ledgerNow.Sub(first) / time.Hour
	for i := range n {
		start := first.Add(time.Duration(rng.Int64N(int64(span))) * time.Hour)
		cost := fmt.Sprintf("%d.%06d", rng.IntN(20), rng.IntN(1_000_000))
		r := &billingv1.UsageRecord{
			UsageId: fmt.Sprintf("cluster-u-%06d", i), AccountId: accounts[rng.IntN(len(accounts))],
			ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(time.Hour)),
			Service: services[rng.IntN(len(services))], UsageType: "Usage", Operation: "Run", Region: "us-east-1",
			Quantity: fmt.Sprintf("%d.%03d", rng.IntN(100), rng.IntN(1000)), Unit: "Hrs", ListUnitPrice: "0.096",
			BilledCost: cost, Currency: "USD",
		}
		month := start.Format("2006-01")
		d, err := domain.ParseDecimal(cost)
		if err != nil {
			t.Fatal(err)
		}
		if set.total[month], err = domain.AddDecimal(set.total[month], d); err != nil {
			t.Fatal(err)
		}
		set.count[month]++
		set.records = append(set.records, r)
	}
	return set
}

// chaos runs cluster actions in order, each when the ingest reaches a given
// batch, concurrently with that batch.
type chaos struct {
	t       *testing.T
	steps   map[int]func()
	pending chan func()
	done    chan struct{}
}

func newChaos(t *testing.T) *chaos {
	c := &chaos{t: t, steps: map[int]func(){}, pending: make(chan func(), 16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for step := range c.pending {
			step()
		}
	}()
	return c
}

// at schedules fn for when batch starts.
func (c *chaos) at(batch int, fn func()) { c.steps[batch] = fn }

// reached tells that batch starts.
func (c *chaos) reached(batch int) {
	if fn, ok := c.steps[batch]; ok {
		c.pending <- fn
	}
}

// finish waits for every scheduled step to be done.
func (c *chaos) finish() {
	close(c.pending)
	<-c.done
}

// TestUsageIngestAcrossNodeAndLeaderLoss ingests 50,000 usage records (and
// 4,000 re-sent duplicates) through the real UsageWriter on a three-server
// cluster, stopping and restarting a follower and then the stream leader in
// the middle; see the package comment for what it checks.
func TestUsageIngestAcrossNodeAndLeaderLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	step := func(format string, args ...any) {
		t.Logf("%6.2fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	c := startCluster(t)
	admin := c.connect(t, "n2", "admin")
	writerConn := c.connect(t, "n0", "writer")
	store := openStore(t, ctx, writerConn)
	leader, err := waitHealthy(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	step("cluster up, BILLING at R3, leader %s", leader)

	clock := fixedClock{now: ledgerNow}
	pipeline := commands.New(store, clock, commands.Options{})
	orgs, _ := registerOrgs(t, ctx, pipeline, 4, 100_000_000_000)
	var accounts []string
	for _, o := range orgs {
		accounts = append(accounts, o.mgmt)
		accounts = append(accounts, o.members...)
	}
	step("registered %d organizations (%d accounts) through the command pipeline", len(orgs), len(accounts))

	dirCtx, stopDir := context.WithCancel(context.Background())
	dir := commands.NewDirectory(store)
	dirDone := make(chan error, 1)
	go func() { dirDone <- dir.Run(dirCtx) }()
	t.Cleanup(func() { stopDir(); <-dirDone })
	select {
	case <-dir.Ready():
	case err := <-dirDone:
		t.Fatalf("directory: %v", err)
	}
	writer := commands.NewUsageWriter(store, clock, dir, commands.UsageWriterOptions{})

	// The read side has its own connection, preferring another server, and a
	// real SQLite file; its runners follow the stream during the ingest.
	readerConn := c.connect(t, "n1", "projector")
	readStore := openStore(t, ctx, readerConn)
	db, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "readmodel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	usageRunner := supervise(t, db, readStore, projections.Usage{})
	proformaRunner := supervise(t, db, readStore, projections.Proforma{})

	set := makeUsage(t, rand.New(rand.NewPCG(seed, seed)), uniqueRecords, accounts)
	step("generated %d records (seed %d): %v records per month", len(set.records), seed, set.count)

	// Disruptions, each started when a batch starts and run while it is in
	// flight: a follower of the stream goes away and comes back, then the
	// stream leader does.
	ch := newChaos(t)
	var stoppedFollower, stoppedLeader string
	ch.at(6, func() {
		l, err := streamLeader(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		for _, n := range c.nodes {
			if n.name != l && n.name != "n2" { // keep the admin connection's server
				stoppedFollower = n.name
				break
			}
		}
		if stoppedFollower == "" {
			stoppedFollower = "n2"
		}
		step("stopping follower %s (leader %s)", stoppedFollower, l)
		c.node(stoppedFollower).stop()
		step("follower %s stopped", stoppedFollower)
	})
	ch.at(12, func() {
		if err := c.node(stoppedFollower).start(); err != nil {
			t.Error(err)
			return
		}
		l, err := waitHealthy(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		step("follower %s restarted and current again (leader %s)", stoppedFollower, l)
	})
	ch.at(20, func() {
		l, err := streamLeader(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		stoppedLeader = l
		step("stopping stream leader %s", l)
		c.node(l).stop()
		nl, err := streamLeader(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		step("leader %s stopped; new leader %s", l, nl)
	})
	ch.at(28, func() {
		if err := c.node(stoppedLeader).start(); err != nil {
			t.Error(err)
			return
		}
		l, err := waitHealthy(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		step("old leader %s restarted and current again (leader %s)", stoppedLeader, l)
	})

	var (
		accepted, retryDuplicates, duplicates uint64
		retried, failedAttempts               int
		sent                                  []*billingv1.UsageRecord // acknowledged so far
		dupRng                                = rand.New(rand.NewPCG(seed, seed+1))
	)
	ingest := func(name string, recs []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, int) {
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			res, err := writer.Ingest(actx, "clustertest", name, recs)
			cancel()
			if err == nil {
				return res, attempt
			}
			failedAttempts++
			step("%s: attempt %d failed, retrying the whole batch: %v", name, attempt, err)
			if attempt == maxAttempts || ctx.Err() != nil {
				t.Fatalf("%s: gave up after %d attempts: %v", name, attempt, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	batches := uniqueRecords / batchSize
	for b := range batches {
		ch.reached(b)
		recs := set.records[b*batchSize : (b+1)*batchSize]
		res, attempts := ingest(fmt.Sprintf("batch %d", b), recs)
		if res.GetRejected() != 0 {
			t.Fatalf("batch %d: %d rejected: %v", b, res.GetRejected(), res.GetRejectedByReason())
		}
		if attempts == 1 && (res.GetAccepted() != batchSize || res.GetDuplicates() != 0) {
			t.Fatalf("batch %d: %d accepted, %d duplicates; want %d and 0", b, res.GetAccepted(), res.GetDuplicates(), batchSize)
		}
		if res.GetAccepted()+res.GetDuplicates() != batchSize {
			t.Fatalf("batch %d (%d attempts): %d accepted + %d duplicates, want %d", b, attempts, res.GetAccepted(), res.GetDuplicates(), batchSize)
		}
		if attempts > 1 {
			// Records an earlier, failed attempt appended come back as duplicates.
			retried++
			retryDuplicates += uint64(res.GetDuplicates())
			step("batch %d succeeded on attempt %d: %d accepted, %d already appended by a failed attempt", b, attempts, res.GetAccepted(), res.GetDuplicates())
		}
		accepted += uint64(res.GetAccepted())
		sent = append(sent, recs...)

		if (b+1)%dupEvery == 0 {
			dups := make([]*billingv1.UsageRecord, dupBatchSize)
			for i := range dups {
				dups[i] = sent[dupRng.IntN(len(sent))]
			}
			res, _ := ingest(fmt.Sprintf("duplicates after batch %d", b), dups)
			if res.GetDuplicates() != dupBatchSize || res.GetAccepted() != 0 || res.GetRejected() != 0 {
				t.Fatalf("re-sent duplicates after batch %d: %d duplicates, %d accepted, %d rejected; want %d duplicates",
					b, res.GetDuplicates(), res.GetAccepted(), res.GetRejected(), dupBatchSize)
			}
			for i, r := range res.GetResults() {
				if r.GetStatus() != commands.StatusDuplicate {
					t.Fatalf("re-sent record %d (%s): status %s, want %s", i, r.GetUsageId(), r.GetStatus(), commands.StatusDuplicate)
				}
			}
			duplicates += uint64(res.GetDuplicates())
		}
	}
	ch.finish()
	if t.Failed() {
		return
	}
	step("ingested: %d accepted, %d appended by failed attempts (reported as duplicates on retry), %d re-sent duplicates; %d of %d batches retried, %d failed attempts",
		accepted, retryDuplicates, duplicates, retried, batches, failedAttempts)
	if accepted+retryDuplicates != uniqueRecords {
		t.Fatalf("%d accepted + %d appended by failed attempts = %d, want %d", accepted, retryDuplicates, accepted+retryDuplicates, uniqueRecords)
	}
	if want := uint64(batches / dupEvery * dupBatchSize); duplicates != want {
		t.Fatalf("%d re-sent duplicates reported, want %d", duplicates, want)
	}

	// Every server is back; the read side catches up with the whole log.
	if _, err := waitHealthy(ctx, admin); err != nil {
		t.Fatal(err)
	}
	last, err := readStore.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*supervisor{usageRunner, proformaRunner} {
		if err := s.waitFor(ctx, last); err != nil {
			t.Fatalf("%s projection did not reach position %d: %v", s.name, last, err)
		}
	}
	step("projections caught up to position %d (runner restarts: usage %d, proforma %d)", last, usageRunner.restartCount(), proformaRunner.restartCount())

	// The log holds every usage id exactly once and nothing was dead-lettered.
	seen := make(map[string]int, uniqueRecords)
	var events, deadLetters int
	if err := readStore.ReadAll(ctx, 0, projections.UsageFilter, func(r eventstore.Record) error {
		events++
		b := r.Event.GetUsageBatchRecorded()
		for _, u := range b.GetRecords() {
			seen[u.GetRecord().GetUsageId()]++
		}
		deadLetters += len(b.GetRejected())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != uniqueRecords || deadLetters != 0 {
		t.Fatalf("log: %d distinct usage ids, %d dead letters; want %d and 0", len(seen), deadLetters, uniqueRecords)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("usage id %s booked %d times", id, n)
		}
	}
	step("log: %d usage events hold each of the %d usage ids once", events, uniqueRecords)

	// The billable read model holds the exact totals, and a replay of each
	// month, up to the checkpoints the live digests reflect, equals them.
	var records uint64
	for _, month := range months {
		live, err := db.MonthDigest(ctx, month)
		if err != nil {
			t.Fatal(err)
		}
		pf, err := db.ProformaDigests(ctx, month)
		if err != nil {
			t.Fatal(err)
		}
		live.Digests = append(live.Digests, pf...)
		billable := digestNamed(t, live, readmodel.DigestBillable)
		wantTotal := domain.CanonicalDecimal(set.total[month])
		wantRecords := fmt.Sprint(set.count[month])
		if got := billable.GetTotals(); got["billed_cost"] != wantTotal || got["records"] != wantRecords {
			t.Fatalf("%s billable totals %v, want billed_cost %s and records %s", month, got, wantTotal, wantRecords)
		}
		records += set.count[month]

		replayStart := time.Now()
		replay, err := projections.ReplayMonthWith(ctx, readStore, month, projections.ReplayOptions{
			UpTo: live.GetCheckpoint(), Proforma: true, ProformaUpTo: digestNamed(t, live, readmodel.DigestProforma).GetCheckpoint(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if diffs := compareDigests(replay, live); len(diffs) > 0 {
			t.Fatalf("%s: replay differs from the live read models: %v", month, diffs)
		}
		step("%s: billable total %s over %s records; replay (%s) equals the live %d digests (billable %s…)",
			month, wantTotal, wantRecords, time.Since(replayStart).Round(time.Millisecond), len(live.GetDigests()), billable.GetDigest()[:12])
	}
	if records != uniqueRecords {
		t.Fatalf("read model holds %d records, want %d", records, uniqueRecords)
	}

	// Every stream's hash chain survived the leader change.
	rep, err := eventstore.VerifyAll(ctx, readStore, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact() {
		t.Fatalf("audit: %d broken streams, first %v", rep.BrokenStreams, rep.Breaks[0])
	}
	step("audit: %d events on %d streams, every hash chain intact", rep.Events, rep.Streams)
}

// digestNamed returns the digest called name.
func digestNamed(t *testing.T, r *billingv1.MonthDigestResponse, name string) *billingv1.ReadModelDigest {
	t.Helper()
	for _, d := range r.GetDigests() {
		if d.GetName() == name {
			return d
		}
	}
	t.Fatalf("no %s digest in %v", name, r)
	return nil
}

// compareDigests lists the differences between a replay and the live digests,
// as `billctl replay --verify` does: same names, digests and row counts.
func compareDigests(replay, live *billingv1.MonthDigestResponse) []string {
	var diffs []string
	byName := map[string]*billingv1.ReadModelDigest{}
	for _, d := range live.GetDigests() {
		byName[d.GetName()] = d
	}
	for _, d := range replay.GetDigests() {
		l, ok := byName[d.GetName()]
		switch {
		case !ok:
			diffs = append(diffs, d.GetName()+": missing from the live read models")
		case l.GetDigest() != d.GetDigest() || l.GetRows() != d.GetRows():
			diffs = append(diffs, fmt.Sprintf("%s: live %s (%d rows, %v), replay %s (%d rows, %v)",
				d.GetName(), l.GetDigest(), l.GetRows(), l.GetTotals(), d.GetDigest(), d.GetRows(), d.GetTotals()))
		}
		delete(byName, d.GetName())
	}
	for name := range byName {
		diffs = append(diffs, name+": missing from the replay")
	}
	slices.Sort(diffs)
	return diffs
}

// TestT4RaceDuringLeaderLoss races two invitations of one source organization
// (T4) from two pipelines on connections to different servers while the
// stream leader is stopped: exactly one wins, the other is rejected with
// TRANSFER_ALREADY_EXISTS, at once or when it is retried after the cluster
// has recovered. Two rounds, each with its own leader loss.
func TestT4RaceDuringLeaderLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	step := func(format string, args ...any) {
		t.Logf("%6.2fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	c := startCluster(t)
	admin := c.connect(t, "n0", "admin")
	adminStore := openStore(t, ctx, admin)
	setup := commands.New(adminStore, fixedClock{now: ledgerNow}, commands.Options{})
	orgs, registered := registerOrgs(t, ctx, setup, 6, 300_000_000_000) // two payers, then one source per round
	payers := orgs[:2]
	// The organizations exist before the race, on every replica: a follower
	// learns that an entry is committed only from the leader's next message,
	// so one that still lacks them when the leader stops would serve reads
	// without them until a new leader commits (see the package comment).
	waitApplied(t, ctx, c, registered)
	step("registered %d organizations, applied on every replica", len(orgs))

	const rounds = 2
	for round := range rounds {
		source := orgs[2+round].mgmt
		leader, err := waitHealthy(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		var followers []string
		for _, n := range c.nodes {
			if n.name != leader {
				followers = append(followers, n.name)
			}
		}
		// Each pipeline has its own connection (as two billingd processes
		// would), each preferring a different follower.
		reqs := make([]*billingv1.ExecuteRequest, 2)
		pipes := make([]*commands.Pipeline, 2)
		for i := range pipes {
			nc := c.connect(t, followers[i], fmt.Sprintf("pipeline-%d-%d", round, i))
			pipes[i] = commands.New(openStore(t, ctx, nc), fixedClock{now: ledgerNow}, commands.Options{})
			reqs[i] = &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{InviteBillSource: &billingv1.InviteBillSource{
				PayerAccountId: payers[i].mgmt, SourceAccountId: source, StartMonth: "2026-10",
				RequestId: fmt.Sprintf("t4-round%d-payer%d", round, i),
			}}}
		}

		// Stop the leader and race both invitations at the same moment. Each
		// side retries what fails without a decision (no leader, lost reply)
		// with its request_id, so the race is decided by the first attempts
		// that reach a leader, whichever that is.
		step("round %d: stopping stream leader %s while pipelines on %v invite source %s", round, leader, followers, source)
		start := make(chan struct{})
		results := make([]*billingv1.CommandResult, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			c.node(leader).stop()
			step("round %d: %s stopped", round, leader)
		})
		for i := range pipes {
			wg.Go(func() {
				<-start
				var attempts int
				results[i], attempts, errs[i] = executeRetrying(ctx, pipes[i], reqs[i], func(attempt int, err error) {
					step("round %d: payer %d attempt %d failed without a decision: %v", round, i, attempt, err)
				})
				step("round %d: payer %d decided after %d attempts: replayed %v, error %v", round, i, attempts, results[i].GetReplayed(), errs[i])
			})
		}
		close(start)
		wg.Wait()
		if err := c.node(leader).start(); err != nil {
			t.Fatal(err)
		}
		newLeader, err := waitHealthy(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		step("round %d: %s restarted, cluster healthy (leader %s)", round, leader, newLeader)

		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
			case domain.CodeOf(err) == domain.CodeTransferAlreadyExists:
			default:
				t.Fatalf("round %d: payer %d: %v, want success or %s", round, i, err, domain.CodeTransferAlreadyExists)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners (%v), want exactly 1", round, winners, errs)
		}

		// The store agrees: one link on the source, one invitation of it.
		recs, err := adminStore.ReadStream(ctx, domain.OrgStream(source))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("round %d: source stream has %d events, want 2 (registered, one link)", round, len(recs))
		}
		invited := 0
		if err := adminStore.ReadAll(ctx, 0, "billing.transfer.>", func(r eventstore.Record) error {
			if r.Event.GetBillSourceInvited().GetSourceAccountId() == source {
				invited++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if invited != 1 {
			t.Fatalf("round %d: %d invitations of %s in the log, want 1", round, invited, source)
		}
		step("round %d: exactly one winner; the loser got %s", round, domain.CodeTransferAlreadyExists)
	}
}
