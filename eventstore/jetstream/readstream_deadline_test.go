package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TestReadStreamWithoutAnswerIsAnError: a ReadStream whose direct get is not
// answered before its deadline must fail, not return the stream as empty.
// jetstreamext.GetBatch ends its iterator silently when the request times out,
// exactly as it does after the server's end-of-batch marker; a command that
// took that for an empty stream was rejected with NOT_FOUND for an
// organization that exists (found by services/clustertest, where the direct
// gets go unanswered for seconds while the stream elects a new leader). An
// expired context reproduces it deterministically on one server.
func TestReadStreamWithoutAnswerIsAnError(t *testing.T) {
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := jetstream.Open(t.Context(), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const stream = "billing.org.111111111111"
	if _, err := s.Append(t.Context(), eventstore.StreamAppend{Stream: stream, Events: []*billingv1.Event{{EventId: "e-1"}}}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	recs, err := s.ReadStream(ctx, stream)
	if err == nil {
		t.Fatalf("ReadStream with an expired context returned %d records and no error; want an error (the stream has 1 event)", len(recs))
	}

	// With time to answer, the event is there.
	recs, err = s.ReadStream(t.Context(), stream)
	if err != nil || len(recs) != 1 {
		t.Fatalf("ReadStream: %d records, %v; want 1", len(recs), err)
	}
}
