package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
)

// TestReadAllInClusterIsComplete: on an R3 stream, ReadAll(from, filter)
// must deliver every matching event up to the store's last position at the
// time of the call, while another client keeps appending. A ReadAll that
// stopped on its consumer's "nothing pending" could end early: the ordered
// consumer may run on a replica that lags the leader, and its count misses
// the newest messages. The projection runner then moved its checkpoint past
// events it never applied (found by services/clustertest: the pro forma read
// model lost a batch of usage records). Each read here is checked against
// the full log read at the end.
func TestReadAllInClusterIsComplete(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	urls := startCluster(t)
	conn := func(u string) *nats.Conn {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	reader := openWhenReady(t, ctx, conn(urls[1]))

	const (
		filter  = "billing.usage.>"
		reads   = 300             // at most, and
		readFor = 4 * time.Second // for at most that long
		writers = 1
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		// Each writer has its own connection and stream; one in four of its
		// appends is outside the filter.
		store := openWhenReady(t, ctx, conn(urls[w%len(urls)]))
		wg.Go(func() {
			versions := map[string]uint64{}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				stream := fmt.Sprintf("billing.usage.2026-09.%02d", w)
				if i%4 == 3 {
					stream = fmt.Sprintf("billing.org.%012d", w)
				}
				recs, err := store.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[stream], Events: events(fmt.Sprint(i), 1)})
				var c *eventstore.ConflictError
				switch {
				case errors.As(err, &c):
					// Under this load an append is now and then refused although
					// nobody else writes the stream, and the version read just
					// after has not moved yet: the adapter then reports its best
					// guess, and the writer re-reads the stream before going on.
					time.Sleep(10 * time.Millisecond)
					recs, err := store.ReadStream(ctx, stream)
					if err != nil {
						t.Errorf("read %s: %v", stream, err)
						return
					}
					versions[stream] = uint64(len(recs))
				case err != nil:
					t.Errorf("append: %v", err)
					return
				default:
					versions[stream] = recs[0].Event.GetStreamVersion()
				}
			}
		})
	}
	type read struct {
		from, head uint64
		got        []uint64
	}
	var done []read
	var from uint64
	deadline := time.Now().Add(readFor)
	for len(done) < reads && time.Now().Before(deadline) && !t.Failed() {
		head, err := reader.LastPosition(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		if err := reader.ReadAll(ctx, from, filter, func(r eventstore.Record) error {
			got = append(got, r.Position)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		done = append(done, read{from, head, got})
		from = head
	}
	close(stop)
	wg.Wait()

	var all []uint64
	if err := reader.ReadAll(ctx, 0, filter, func(r eventstore.Record) error {
		all = append(all, r.Position)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	incomplete := 0
	for _, r := range done {
		// Every matching event in (from, head] must be there, first and in
		// order; later ones may follow (ReadAll reads its own bound).
		var want []uint64
		for _, p := range all {
			if p > r.from && p <= r.head {
				want = append(want, p)
			}
		}
		if len(r.got) < len(want) || !slices.Equal(r.got[:len(want)], want) {
			if incomplete < 3 {
				t.Errorf("ReadAll(%d) after LastPosition %d delivered %d events %v…, want at least the %d up to %d",
					r.from, r.head, len(r.got), r.got[:min(len(r.got), 5)], len(want), r.head)
			}
			incomplete++
		}
	}
	if incomplete > 0 {
		t.Fatalf("%d of %d reads missed events (%d events in the log)", incomplete, len(done), len(all))
	}
	t.Logf("%d reads, all complete (%d matching events)", len(done), len(all))
}
