package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
)

// startCluster runs a three-server JetStream cluster in this process and
// returns the servers' client URLs. The servers stop when the test ends.
func startCluster(t *testing.T) []string {
	t.Helper()
	const size = 3
	routePorts := make([]int, size)
	routes := make([]string, size)
	for i := range routePorts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routePorts[i] = l.Addr().(*net.TCPAddr).Port
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i])
		l.Close()
	}
	urls := make([]string, size)
	for i := range size {
		srv, err := natsserver.NewServer(&natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       natsserver.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    natsserver.ClusterOpts{Name: "billing", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     natsserver.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("cluster server %d not ready", i)
		}
		urls[i] = srv.ClientURL()
	}
	return urls
}

// openWhenReady opens an R3 Store, retrying while the cluster elects its
// JetStream meta leader.
func openWhenReady(t *testing.T, ctx context.Context, nc *nats.Conn) *jetstream.Store {
	t.Helper()
	for {
		// Without a meta leader a request gets no answer: bound each attempt.
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := jetstream.Open(actx, nc, jetstream.Config{Replicas: 3})
		cancel()
		if err == nil {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Open on the cluster: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestGuardInCluster runs guarded writers, each on its own month of one
// partition and all with the same guard filter, on an R3 stream through all
// three servers. On a replicated stream the server checks a guard before
// proposing the message, against the stored messages and the guards in flight
// with the same filter text; this checks that no accepted append skipped a
// newer event of the family: in the family's order, the event before each
// append's first event is at the append's guard position. (A write to a stream
// of the family WITHOUT that guard may slip past a guard in flight on R3; see
// the package comment.)
func TestGuardInCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	urls := startCluster(t)
	stores := make([]*jetstream.Store, len(urls))
	for i, u := range urls {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		stores[i] = openWhenReady(t, ctx, nc)
	}

	const (
		family  = "billing.usage.*.07"
		writers = 6
		appends = 15 // successful appends per writer
	)
	type appended struct {
		guard uint64
		first uint64
	}
	var (
		mu   sync.Mutex
		done []appended
		wg   sync.WaitGroup
	)
	for w := range writers {
		s := stores[w%len(stores)]
		stream := fmt.Sprintf("billing.usage.2026-%02d.07", w+1)
		wg.Go(func() {
			var version uint64
			for i := 0; i < appends; {
				last, err := s.LastPositionMatching(ctx, family)
				if err != nil {
					t.Error(err)
					return
				}
				n := 1 + i%2
				recs, err := s.Append(ctx, eventstore.StreamAppend{
					Stream: stream, ExpectedVersion: version, Events: events(fmt.Sprintf("w%d-%d", w, i), n),
					Guard: &eventstore.Guard{Filter: family, LastPosition: last},
				})
				var g *eventstore.GuardConflictError
				switch {
				case errors.As(err, &g) && g.Filter == family && g.Expected == last:
					continue // another writer of the family went first: reload and retry
				case err != nil:
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				done = append(done, appended{guard: last, first: recs[0].Position})
				mu.Unlock()
				version += uint64(n)
				i++
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	var order []uint64
	if err := stores[0].ReadAll(ctx, 0, family, func(r eventstore.Record) error {
		order = append(order, r.Position)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := make(map[uint64]uint64, len(order)) // position → the family's previous position
	for i, p := range order {
		if i > 0 {
			before[p] = order[i-1]
		}
	}
	if len(done) != writers*appends {
		t.Fatalf("%d appends, want %d", len(done), writers*appends)
	}
	for _, a := range done {
		if before[a.first] != a.guard {
			t.Fatalf("append at %d was guarded by %d, but the family's previous event is at %d", a.first, a.guard, before[a.first])
		}
	}
	for w := range writers {
		stream := fmt.Sprintf("billing.usage.2026-%02d.07", w+1)
		recs, err := stores[0].ReadStream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if err := eventstore.VerifyChain(stream, recs); err != nil {
			t.Fatal(err)
		}
	}
}
