package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/services/lease"
)

// names are billingd's projections in its assignment order.
var names = []string{"usage", "proforma", "transfers", "invoices", "payments"}

// tracker is the work: it records which owner runs each name and every time
// two owners ran the same name at once.
type tracker struct {
	mu       sync.Mutex
	running  map[string]string // name → owner
	overlaps []string
	runs     map[string][]string // name → owners that started it, in order
	fail     func(owner, name string) bool
}

func newTracker() *tracker {
	return &tracker{running: map[string]string{}, runs: map[string][]string{}}
}

func (tr *tracker) work(owner string) lease.Work {
	return func(ctx context.Context, name string) error {
		tr.mu.Lock()
		if o, ok := tr.running[name]; ok {
			tr.overlaps = append(tr.overlaps, fmt.Sprintf("%s by %s and %s", name, o, owner))
		}
		tr.running[name] = owner
		tr.runs[name] = append(tr.runs[name], owner)
		fail := tr.fail != nil && tr.fail(owner, name)
		tr.mu.Unlock()
		defer func() {
			tr.mu.Lock()
			if tr.running[name] == owner {
				delete(tr.running, name)
			}
			tr.mu.Unlock()
		}()
		if fail {
			return errors.New("cannot apply this event")
		}
		<-ctx.Done()
		return nil
	}
}

// of lists the names owner runs, in assignment order.
func (tr *tracker) of(owner string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, n := range names {
		if tr.running[n] == owner {
			out = append(out, n)
		}
	}
	return out
}

func (tr *tracker) checkNoOverlap(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.overlaps) > 0 {
		t.Fatalf("work ran twice at once: %v", tr.overlaps)
	}
}

func startNATS(t *testing.T) string {
	t.Helper()
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return emb.ClientURL()
}

// proc is one process's manager.
type proc struct {
	m      *lease.Manager
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func startProc(t *testing.T, url, owner string, ttl time.Duration, tr *tracker) *proc {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	m, err := lease.New(context.Background(), nc, names, tr.work(owner), lease.Config{TTL: ttl, Owner: owner, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{m: m, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- m.Run(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop shuts the manager down gracefully (idempotent).
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return within 10 s of its context's end")
	}
	p.nc.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTwoProcessesSplitTheWorkAndHandOverOnStop: a process alone runs every
// name; a second one gets its share at once (3/2, the two first names on
// different processes), never with a name running twice; when one stops
// gracefully the other takes its names without waiting for the TTL.
func TestTwoProcessesSplitTheWorkAndHandOverOnStop(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	tr := newTracker()
	const ttl = 10 * time.Second // longer than the test may wait: hand-overs must not wait for expiry
	a := startProc(t, url, "a-1", ttl, tr)
	eventually(t, 5*time.Second, "a runs all five", func() bool { return len(tr.of("a-1")) == 5 })

	b := startProc(t, url, "b-2", ttl, tr)
	// Owners sorted a-1, b-2: names round-robin in their order.
	eventually(t, 5*time.Second, "a and b split the names 3/2", func() bool {
		return slices.Equal(tr.of("a-1"), []string{"usage", "transfers", "payments"}) &&
			slices.Equal(tr.of("b-2"), []string{"proforma", "invoices"})
	})
	if got := b.m.Held(); !slices.Equal(got, []string{"proforma", "invoices"}) {
		t.Fatalf("b holds %v", got)
	}

	start := time.Now()
	b.stop(t)
	eventually(t, 3*time.Second, "a runs all five again after b stopped", func() bool { return len(tr.of("a-1")) == 5 })
	t.Logf("hand-over after a graceful stop: %s", time.Since(start).Round(time.Millisecond))
	if got := a.m.Held(); len(got) != 5 {
		t.Fatalf("a holds %v", got)
	}
	tr.checkNoOverlap(t)
}

// TestCrashedProcessLosesItsLeasesWithinTheTTL: a process whose NATS
// connection dies (a crash, as far as the others can tell) stops its work by
// its watchdog before its leases expire, and the other process takes them
// once they have; a name never runs twice at once.
func TestCrashedProcessLosesItsLeasesWithinTheTTL(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	tr := newTracker()
	const ttl = time.Second
	startProc(t, url, "a-1", ttl, tr)
	b := startProc(t, url, "b-2", ttl, tr)
	eventually(t, 5*time.Second, "a and b split the names", func() bool {
		return len(tr.of("a-1")) == 3 && len(tr.of("b-2")) == 2
	})
	start := time.Now()
	b.nc.Close() // no release: its keys can only expire
	eventually(t, ttl, "b's work stopped by its watchdog", func() bool { return len(tr.of("b-2")) == 0 })
	stoppedAfter := time.Since(start)
	eventually(t, 5*ttl, "a runs all five", func() bool { return len(tr.of("a-1")) == 5 })
	t.Logf("b stopped its work %s after its connection died; a ran everything after %s (TTL %s)",
		stoppedAfter.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), ttl)
	tr.checkNoOverlap(t)
}

// TestFailedWorkMovesToAnotherProcess: work that fails in one process is
// released and refused there for a cooldown, so another process runs it.
func TestFailedWorkMovesToAnotherProcess(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	tr := newTracker()
	tr.fail = func(owner, name string) bool { return owner == "a-1" && name == "usage" } // an old binary, say
	startProc(t, url, "a-1", time.Second, tr)
	startProc(t, url, "b-2", time.Second, tr)
	eventually(t, 5*time.Second, "b runs usage", func() bool { return slices.Contains(tr.of("b-2"), "usage") })
	eventually(t, 5*time.Second, "every name runs", func() bool { return len(tr.of("a-1"))+len(tr.of("b-2")) == 5 })
	tr.checkNoOverlap(t)
}

// TestTakenLeaseStopsTheWork: a lease overwritten by someone else (another
// process took it after an expiry this one did not notice) is lost at the
// next renewal and its work stops; once freed it is taken again.
func TestTakenLeaseStopsTheWork(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	tr := newTracker()
	startProc(t, url, "a-1", time.Second, tr)
	eventually(t, 5*time.Second, "a runs all five", func() bool { return len(tr.of("a-1")) == 5 })

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	kv, err := js.KeyValue(context.Background(), lease.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "lease.transfers", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a stopped transfers", func() bool { return !slices.Contains(tr.of("a-1"), "transfers") })
	if err := kv.Delete(context.Background(), "lease.transfers"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a runs transfers again", func() bool { return slices.Contains(tr.of("a-1"), "transfers") })
	tr.checkNoOverlap(t)
}
