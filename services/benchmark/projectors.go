package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create and drop the schemas
	"github.com/nats-io/nats.go"
)

// Split projectors (issue #8): the usage path of a split deployment on one
// PostgreSQL read model, with one and with two projector processes.
//
// Each setup is fresh: a schema of its own in the --projectors-postgres
// database, a billingd with --role command,ingest,query (embedded NATS,
// --readmodel on that schema), and n billingd --role projector processes on
// its NATS server and the same schema, which share the five projections by
// leases. Two figures per setup:
//
//   - e2e: --projector-records records on the batch path (500-record
//     requests, --requesters in flight) from the first request until the
//     query process answers MonthDigest with every record, at the store's last
//     position (its read-your-writes waits on every projection's checkpoint in
//     the read model), as ingest_batch_e2e does on SQLite;
//   - catch_up: the projector processes are stopped, as many records are
//     ingested into another month, and the projectors started again: from
//     their start until the query process counts every record. This is the
//     projectors' own throughput, which the e2e figure hides when ingestion
//     is the slower stage.
//
// Setups alternate (1, 2, 1, 2, ... for --projector-rounds rounds) so that a
// machine shared with other work disturbs both alike; each figure reports the
// best round and every round.

// splitSetup is one setup's measurement.
type splitSetup struct {
	e2e, catchUp         time.Duration
	e2eCPU, catchUpCPU   float64 // billingd CPU seconds, every process
	e2eBusy, catchUpBusy float64 // the machine's busy CPU seconds (PostgreSQL, NATS and other work included)
	split                string  // projections per projector process
	projectorStartupSecs float64 // catch-up: spawn to /healthz of every projector
}

// runProjectors measures the split-projector figures.
func runProjectors(ctx context.Context, cfg config) error {
	if cfg.projRecords <= 0 || cfg.projRounds <= 0 || cfg.accounts <= 0 || cfg.batch <= 0 || cfg.requesters <= 0 {
		return fmt.Errorf("--projector-records, --projector-rounds, --accounts, --batch and --requesters must be positive")
	}
	em, closeOut, err := newEmitter(cfg.out)
	if err != nil {
		return err
	}
	defer closeOut()
	tmp, err := os.MkdirTemp("", "ledger-bench-projectors-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			logf("kept %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	bin := cfg.billingd
	if bin == "" {
		logf("building billingd")
		if bin, err = buildBillingd(ctx, tmp); err != nil {
			return err
		}
	}
	em.emit(machine())
	runs := map[int][]splitSetup{}
	for round := range cfg.projRounds {
		for _, n := range []int{1, 2} {
			logf("round %d: %d projector process(es), %d records", round+1, n, cfg.projRecords)
			r, err := splitRun(ctx, cfg, bin, filepath.Join(tmp, fmt.Sprintf("r%d-p%d", round, n)), n, uint64(10*round+n))
			if err != nil {
				return fmt.Errorf("%d projector process(es): %w", n, err)
			}
			logf("  e2e %d records/s, catch-up %d records/s (%s)", int(rate(cfg.projRecords, r.e2e)), int(rate(cfg.projRecords, r.catchUp)), r.split)
			runs[n] = append(runs[n], r)
		}
	}
	N := cfg.projRecords
	best := func(n int, d func(splitSetup) time.Duration) (splitSetup, []float64) {
		var b splitSetup
		var all []float64
		for _, r := range runs[n] {
			all = append(all, rate(N, d(r)))
			if b.split == "" || d(r) < d(b) {
				b = r
			}
		}
		return b, all
	}
	perRecord := func(cpu float64) float64 { return round(cpu/float64(N)*1e6, 1) }
	for _, fig := range []struct {
		name string
		d    func(splitSetup) time.Duration
		cpu  func(splitSetup) float64
		busy func(splitSetup) float64
		note string
	}{
		{"projectors_postgres_e2e", func(r splitSetup) time.Duration { return r.e2e }, func(r splitSetup) float64 { return r.e2eCPU }, func(r splitSetup) float64 { return r.e2eBusy },
			"batch path into a command,ingest,query billingd; publish to every record in the PostgreSQL read model, all five projections at the last position"},
		{"projectors_postgres_catch_up", func(r splitSetup) time.Duration { return r.catchUp }, func(r splitSetup) float64 { return r.catchUpCPU }, func(r splitSetup) float64 { return r.catchUpBusy },
			"records already in the store; projector processes spawned (startup included) until every record is in the PostgreSQL read model, all five projections at the last position"},
	} {
		one, oneAll := best(1, fig.d)
		two, twoAll := best(2, fig.d)
		v1, v2 := rate(N, fig.d(one)), rate(N, fig.d(two))
		line := obj{
			{"figure", fig.name}, {"value", v2}, {"unit", "records/s"},
			{"baseline", baseline(strings.TrimPrefix(fig.name, "projectors_")+"_one_projector", v1, "records/s",
				kv{"runs", oneAll}, kv{"billingd_cpu_us_per_record", perRecord(fig.cpu(one))}, kv{"machine_cpu_us_per_record", perRecord(fig.busy(one))})},
			{"ratio", ratio(v2, v1)},
			{"projector_processes", 2}, {"records", N}, {"seconds", secs(fig.d(two))}, {"runs", twoAll},
			{"split", two.split}, {"billingd_cpu_us_per_record", perRecord(fig.cpu(two))}, {"machine_cpu_us_per_record", perRecord(fig.busy(two))},
		}
		if strings.HasSuffix(fig.name, "catch_up") {
			line = append(line, kv{"projector_startup_seconds", obj{{"one", one.projectorStartupSecs}, {"two", two.projectorStartupSecs}}})
		}
		em.emit(append(line, kv{"note", fig.note}))
	}
	return nil
}

// splitRun runs one setup with n projector processes under dir.
func splitRun(ctx context.Context, cfg config, bin, dir string, n int, seed uint64) (splitSetup, error) {
	var res splitSetup
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return res, err
	}
	target, drop, err := benchSchema(ctx, cfg.projPostgres)
	if err != nil {
		return res, err
	}
	defer drop()
	a, err := startBillingdWith(ctx, bin, dir, "a", "a.log", "--role", "command,ingest,query", "--nats-listen", "127.0.0.1:0", "--readmodel", target)
	if err != nil {
		return res, err
	}
	defer a.stop()
	var projectors []*billingd
	stopProjectors := func() {
		for _, p := range projectors {
			p.stop()
		}
		projectors = nil
	}
	defer stopProjectors()
	// The projector processes start at the same time, as a deployment
	// starts its replicas.
	startProjectors := func() error {
		type started struct {
			p   *billingd
			err error
		}
		ch := make(chan started, n)
		for i := range n {
			go func() {
				p, err := startBillingdWith(ctx, bin, dir, fmt.Sprintf("p%d", i), fmt.Sprintf("p%d.log", i),
					"--role", "projector", "--nats-url", a.natsURL, "--readmodel", target)
				ch <- started{p, err}
			}()
		}
		var first error
		for range n {
			s := <-ch
			if s.err != nil && first == nil {
				first = s.err
			}
			if s.p != nil {
				projectors = append(projectors, s.p)
			}
		}
		return first
	}
	cpu := func() float64 {
		total := procCPU(strconv.Itoa(a.cmd.Process.Pid))
		for _, p := range projectors {
			total += procCPU(strconv.Itoa(p.cmd.Process.Pid))
		}
		return total
	}

	if err := startProjectors(); err != nil {
		return res, err
	}
	if res.split, err = waitSplit(ctx, projectors); err != nil {
		return res, err
	}
	if err := a.register(ctx, cfg.accounts); err != nil {
		return res, err
	}
	nc, err := nats.Connect(a.natsURL, nats.Name("benchmark"))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	ingestToken = a.token

	// e2e, projectors running.
	w := generate(seed, cfg.accounts, batchMonth, "pe", cfg.projRecords, cfg.batch)
	before, busy := cpu(), machineBusy()
	r, err := ingestBatchE2E(ctx, nc, w, cfg.requesters, a.monthRecords, 0)
	if err != nil {
		return res, fmt.Errorf("e2e: %w", err)
	}
	res.e2e, res.e2eCPU, res.e2eBusy = r.total, cpu()-before, machineBusy()-busy

	// Catch-up: records first, then the projectors.
	stopProjectors()
	w2 := generate(seed+1000, cfg.accounts, durableMonth, "pc", cfg.projRecords, cfg.batch)
	c, err := sendBatches(ctx, nc, w2.batches, cfg.requesters)
	if err != nil {
		return res, fmt.Errorf("catch-up ingest: %w", err)
	}
	if got := int(c.accepted.Load()); got != cfg.projRecords {
		return res, fmt.Errorf("catch-up ingest: %d of %d accepted", got, cfg.projRecords)
	}
	before, busy = procCPU(strconv.Itoa(a.cmd.Process.Pid)), machineBusy() // the projectors start from 0
	start := time.Now()
	if err := startProjectors(); err != nil {
		return res, err
	}
	res.projectorStartupSecs = secs(time.Since(start))
	cost, err := waitRecords(ctx, a.monthRecords, durableMonth, uint64(cfg.projRecords), 10*time.Minute)
	if err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	res.catchUp, res.catchUpCPU, res.catchUpBusy = time.Since(start), cpu()-before, machineBusy()-busy
	if err := checkCost(durableMonth, cost, w2.micros); err != nil {
		return res, err
	}
	return res, nil
}

// waitSplit waits until the projector processes hold the five projections
// between them, each at least one, and describes the split.
func waitSplit(ctx context.Context, projectors []*billingd) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var parts []string
		total, empty := 0, false
		for _, p := range projectors {
			here, err := p.runsHere(ctx)
			if err != nil {
				return "", err
			}
			total += len(here)
			empty = empty || len(here) == 0
			parts = append(parts, strings.Join(here, ","))
		}
		if total == 5 && !empty {
			return strings.Join(parts, " | "), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("projections not split within 60 s: %s", strings.Join(parts, " | "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runsHere lists the projections b runs, from GET /readyz.
func (b *billingd) runsHere(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/readyz", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	var body struct {
		Projectors []struct {
			Name     string `json:"projection"`
			RunsHere bool   `json:"runs_here"`
		} `json:"projectors"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET /readyz: %w", err)
	}
	var out []string
	for _, p := range body.Projectors {
		if p.RunsHere {
			out = append(out, p.Name)
		}
	}
	return out, nil
}

// benchSchema creates a schema of its own in the database at base and
// returns base with search_path set to it, and a function that drops it.
func benchSchema(ctx context.Context, base string) (string, func(), error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("--projectors-postgres: %w", err)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	schema := fmt.Sprintf("bench_projectors_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = db.Close()
		return "", nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(dctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			logf("drop schema %s: %v", schema, err)
		}
		_ = db.Close()
	}, nil
}
