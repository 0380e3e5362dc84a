package eventstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func auditEvent(id, name string) *billingv1.Event {
	return &billingv1.Event{
		EventId:    id,
		RecordedAt: timestamppb.New(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)),
		Actor:      "test",
		Payload: &billingv1.Event_OrganizationRegistered{OrganizationRegistered: &billingv1.OrganizationRegistered{
			ManagementAccountId: "111111111111",
			Name:                name,
		}},
	}
}

// fillStreams appends n events to each stream, interleaved across streams and
// in several appends per stream, and returns the number of events written.
func fillStreams(t *testing.T, s eventstore.Store, streams []string, n int) uint64 {
	t.Helper()
	ctx := context.Background()
	var total uint64
	for v := 0; v < n; v++ {
		for _, st := range streams {
			id := fmt.Sprintf("%s-%d", st, v+1)
			if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: st, ExpectedVersion: uint64(v), Events: []*billingv1.Event{auditEvent(id, id)}}); err != nil {
				t.Fatalf("append %s v%d: %v", st, v+1, err)
			}
			total++
		}
	}
	return total
}

var auditStreams = []string{"billing.org.111111111111", "billing.transfer.rt-1", "billing.usage.2026-09.07"}

func TestVerifyAllIntactMemstore(t *testing.T) {
	s := memstore.New()
	total := fillStreams(t, s, auditStreams, 5)
	var last uint64
	rep, err := eventstore.VerifyAll(context.Background(), s, "", func(n uint64) { last = n })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 3 || rep.Events != total || !rep.Intact() || len(rep.Breaks) != 0 {
		t.Fatalf("report = %+v, want 3 streams, %d events, no breaks (breaks: %v)", rep, total, rep.Breaks)
	}
	if last != total {
		t.Errorf("last progress = %d, want %d", last, total)
	}

	// A filter narrows the audit to the matching streams.
	rep, err = eventstore.VerifyAll(context.Background(), s, "billing.transfer.>", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 1 || rep.Events != 5 || !rep.Intact() {
		t.Fatalf("filtered report = %+v, want 1 stream, 5 events, intact", rep)
	}

	if _, err := eventstore.VerifyAll(context.Background(), s, "billing..x", nil); err == nil {
		t.Fatal("VerifyAll accepted an invalid filter")
	}
}

// startJetStream starts an embedded server and opens the JetStream adapter on it.
func startJetStream(t *testing.T) (*jetstream.Store, *nats.Conn) {
	t.Helper()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown) // registered first, so it runs after the connection closes
	nc, err := nats.Connect(e.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	s, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, nc
}

// forge publishes ev straight on its stream's subject with plain NATS, past
// the adapter, and waits for JetStream's acknowledgement.
func forge(t *testing.T, nc *nats.Conn, ev *billingv1.Event) {
	t.Helper()
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(ev.GetStream(), data, 5*time.Second)
	if err != nil {
		t.Fatalf("forge on %s: %v", ev.GetStream(), err)
	}
	if strings.Contains(string(reply.Data), `"error"`) {
		t.Fatalf("forge on %s: %s", ev.GetStream(), reply.Data)
	}
}

// lastOf is the newest stored event of stream.
func lastOf(t *testing.T, s eventstore.Store, stream string) *billingv1.Event {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), stream)
	if err != nil || len(recs) == 0 {
		t.Fatalf("ReadStream %s: %d records, %v", stream, len(recs), err)
	}
	return recs[len(recs)-1].Event
}

func TestVerifyAllFindsForgedEventJetStream(t *testing.T) {
	const victim = "billing.transfer.rt-1"
	cases := []struct {
		name   string
		tamper func(forged, last *billingv1.Event)
		reason string
	}{
		{
			// Altered payload, hash left as it was computed for other content.
			name: "wrong hash",
			tamper: func(forged, last *billingv1.Event) {
				if err := eventstore.Seal(forged, victim, last.GetStreamVersion()+1, last.GetHash()); err != nil {
					t.Fatal(err)
				}
				forged.GetOrganizationRegistered().Name = "Mallory Co"
			},
			reason: "hash does not match",
		},
		{
			// A self-consistent hash over the altered content, but linked to the
			// wrong predecessor.
			name: "wrong prev_hash",
			tamper: func(forged, last *billingv1.Event) {
				forged.GetOrganizationRegistered().Name = "Mallory Co"
				if err := eventstore.Seal(forged, victim, last.GetStreamVersion()+1, []byte("not the previous hash")); err != nil {
					t.Fatal(err)
				}
			},
			reason: "prev_hash does not match",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, nc := startJetStream(t)
			fillStreams(t, s, auditStreams, 3)

			rep, err := eventstore.VerifyAll(context.Background(), s, "billing.>", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Intact() || rep.Streams != 3 || rep.Events != 9 {
				t.Fatalf("before tampering: %+v, breaks %v", rep, rep.Breaks)
			}

			last := lastOf(t, s, victim)
			forged := auditEvent("forged", "forged")
			tc.tamper(forged, last)
			forge(t, nc, forged)
			// The honest writers carry on in the other streams.
			fillAfter := eventstore.StreamAppend{Stream: auditStreams[0], ExpectedVersion: 3, Events: []*billingv1.Event{auditEvent("after", "after")}}
			if _, err := s.Append(context.Background(), fillAfter); err != nil {
				t.Fatal(err)
			}

			rep, err = eventstore.VerifyAll(context.Background(), s, "billing.>", nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Streams != 3 || rep.Events != 11 || rep.BrokenStreams != 1 || len(rep.Breaks) != 1 {
				t.Fatalf("after tampering: %+v, breaks %v; want 3 streams, 11 events, one break", rep, rep.Breaks)
			}
			b := rep.Breaks[0]
			if b.Stream != victim || b.Version != 4 || !strings.Contains(b.Reason, tc.reason) {
				t.Fatalf("break = %v, want %s at version 4: %s", b, victim, tc.reason)
			}
		})
	}
}
