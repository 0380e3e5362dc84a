// Command benchmark is `make bench` (issue #3 §9, DESIGN §7): it measures usage
// ingestion and month replay end to end against a real billingd, each figure
// beside a baseline measured on the same server in the same run.
//
//	go run ./services/benchmark [--records 200000] [--accounts 1000] [--out FILE]
//
// It builds billingd into a temporary directory, starts it on a temporary data
// directory (embedded NATS with JetStream file storage, SQLite read models,
// --simulated-clock 2026-10-05 so usage of 2026-08 and 2026-09 is valid),
// registers the accounts through the Connect API, then measures:
//
//   - jetstream raw async publish of the very messages the durable path sends
//     (one ~200-byte record per message) and of the batch path's 500-record
//     payloads, to a scratch stream BENCH_RAW: no decoding, dedup or projection;
//   - ingest_batch_e2e: 500-record JSON Lines requests on usage.v1.batch, several
//     in flight, from the first request until QueryService.MonthDigest counts
//     every record in the billable read model;
//   - ingest_durable_e2e: one record per JetStream message on usage.v1.records,
//     async publish with a bounded window, until the read model counts them all;
//   - replay: projections.ReplayMonthWith over the month, in a child process (so
//     its peak RSS is the replay's own), beside a raw ordered-consumer read of
//     the same stored messages; then the month is doubled and replayed again, to
//     show replay memory does not grow with the events;
//   - billingd's peak RSS (VmHWM) when idle, after each ingestion and after replay.
//
// It prints one JSON line per figure on stdout (and to --out), the first line
// describing the machine (with the 1-minute load average). Ingest figures carry
// a "cpu" member: CPU seconds used by billingd, by the benchmark and by every
// other process during the figure, and billingd's CPU per record, which
// contention on a shared machine distorts much less than throughput. Progress
// goes to stderr.
//
// With --profile DIR it instead times each ingest stage alone (JSON decoding,
// validation, hashing, booking, event encoding and decoding, the usage
// projection at several events per transaction), then runs the ingest paths
// and the replay in this process (the same writer, directory, NATS responders
// and projection runners billingd wires, on an embedded server) under
// runtime/pprof, writing DIR/{stages,batch,durable,replay}.cpu.pprof and
// DIR/after_ingest.heap.pprof; see profile.go. --fetch-batch, --runner-batch
// --no-usage-projection and --no-proforma-projection vary that harness.
//
// With --projectors-postgres URL it instead measures a split deployment on
// that PostgreSQL database with one and with two projector processes
// (issue #8); see projectors.go.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	records      int
	accounts     int
	batch        int
	requesters   int
	window       int
	rawWindow    int
	out          string
	billingd     string
	profileDir   string
	keep         bool
	noDouble     bool
	child        string
	natsURL      string
	month        string
	expect       int
	fetchBatch   int
	runnerBatch  int
	noProjection bool
	noProforma   bool
	stagesOnly   bool
	projPostgres string
	projRecords  int
	projRounds   int
}

func parseFlags() config {
	var c config
	flag.IntVar(&c.records, "records", 200_000, "usage records per ingest path")
	flag.IntVar(&c.accounts, "accounts", 1000, "accounts (in organizations of up to 100)")
	flag.IntVar(&c.batch, "batch", 500, "records per request on the batch path")
	flag.IntVar(&c.requesters, "requesters", 8, "batch requests in flight")
	flag.IntVar(&c.window, "window", 4096, "async publishes awaiting their ack (durable path and its raw baseline)")
	flag.IntVar(&c.rawWindow, "raw-batch-window", 64, "async publishes in flight for the raw 500-record messages")
	flag.StringVar(&c.out, "out", "", "also write the JSON lines to this file")
	flag.StringVar(&c.billingd, "billingd", "", "use this billingd binary instead of building one")
	flag.StringVar(&c.profileDir, "profile", "", "run the in-process harness under pprof and write profiles to this directory")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (data dir, billingd log)")
	flag.BoolVar(&c.noDouble, "no-double", false, "skip doubling the month and the second replay")
	// Internal: the replay children.
	flag.StringVar(&c.child, "child", "", "internal: replay | rawread")
	flag.StringVar(&c.natsURL, "nats-url", "", "internal: NATS URL for --child")
	flag.StringVar(&c.month, "month", "", "internal: month for --child")
	flag.IntVar(&c.expect, "expect", 0, "internal: records expected by --child")
	flag.IntVar(&c.fetchBatch, "fetch-batch", 0, "--profile only: ingest.Server.FetchBatch (0 = its default, as billingd)")
	flag.IntVar(&c.runnerBatch, "runner-batch", 0, "--profile only: projections.RunnerConfig.BatchSize of the usage runner (0 = its default, as billingd)")
	flag.BoolVar(&c.noProjection, "no-usage-projection", false, "--profile only: run without the usage projection (the writer's ceiling; completion is then counted by a replay)")
	flag.BoolVar(&c.noProforma, "no-proforma-projection", false, "--profile only: run without the proforma projection runner (billingd runs it)")
	flag.BoolVar(&c.stagesOnly, "stages-only", false, "--profile only: time the stages (DIR/stages.cpu.pprof) and stop")
	flag.StringVar(&c.projPostgres, "projectors-postgres", "", "instead: the split-projector figures (one and two billingd --role projector processes) on this PostgreSQL database (a schema per setup, dropped after); see projectors.go")
	flag.IntVar(&c.projRecords, "projector-records", 100_000, "--projectors-postgres: usage records per figure and setup")
	flag.IntVar(&c.projRounds, "projector-rounds", 2, "--projectors-postgres: rounds of the two setups (best reported)")
	flag.Parse()
	return c
}

func main() {
	cfg := parseFlags()
	// A closed stdout (| head) must not kill the run before it stops billingd
	// and removes its temporary directory.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case cfg.child != "":
		err = runChild(ctx, cfg)
	case cfg.profileDir != "":
		err = runProfile(ctx, cfg)
	case cfg.projPostgres != "":
		err = runProjectors(ctx, cfg)
	default:
		err = run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark:", err)
		os.Exit(1)
	}
}

// logf reports progress on stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// kv is one member of an ordered JSON object.
type kv struct {
	k string
	v any
}

// obj is a JSON object whose members keep their order.
type obj []kv

// MarshalJSON implements json.Marshaler.
func (o obj) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.k)
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// emitter writes the JSON lines to stdout and to --out.
type emitter struct{ w []io.Writer }

func newEmitter(out string) (*emitter, func(), error) {
	e := &emitter{w: []io.Writer{os.Stdout}}
	if out == "" {
		return e, func() {}, nil
	}
	f, err := os.Create(out)
	if err != nil {
		return nil, nil, err
	}
	e.w = append(e.w, f)
	return e, func() { _ = f.Close() }, nil
}

func (e *emitter) emit(o obj) {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	b = append(b, '\n')
	for _, w := range e.w {
		_, _ = w.Write(b)
	}
}

// machine is the first line: what the figures were measured on.
func machine() obj {
	arch := runtime.GOARCH
	if out, err := exec.Command("uname", "-m").Output(); err == nil {
		arch = strings.TrimSpace(string(out))
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	git := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		git = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
			git += "-dirty"
		}
	}
	return obj{{"machine", arch}, {"cpus", runtime.NumCPU()}, {"cpu_model", model}, {"go", runtime.Version()}, {"git", git}, {"load1", loadAvg()}}
}

// round keeps d decimals.
func round(x float64, d int) float64 {
	p := 1.0
	for range d {
		p *= 10
	}
	if x >= 0 {
		return float64(int64(x*p+0.5)) / p
	}
	return float64(int64(x*p-0.5)) / p
}

// rate is n per second over d, rounded to a whole number.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round(float64(n)/d.Seconds(), 0)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 3)
}

func secs(d time.Duration) float64 { return round(d.Seconds(), 3) }

// baseline is the "baseline" member of a figure line.
func baseline(name string, value float64, unit string, extra ...kv) obj {
	return append(obj{{"name", name}, {"value", value}, {"unit", unit}}, extra...)
}
