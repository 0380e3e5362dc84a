package projections_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// forEachStore runs fn as a parallel subtest against each store adapter, the
// in-process memstore and the JetStream adapter on an embedded NATS server
// (real file storage in a temporary directory), with SQLite read models; and
// against the memstore with PostgreSQL read models ("postgres", skipped with
// the reason when BILLING_TEST_POSTGRES is unset). fn opens its read model
// databases on rm (rm.Target, openDB).
func forEachStore(t *testing.T, fn func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) {
		t.Parallel()
		fn(t, memstore.New(), readmodeltest.SQLite)
	})
	t.Run("jetstream", func(t *testing.T) {
		t.Parallel()
		fn(t, newJetStream(t), readmodeltest.SQLite)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		if reason := readmodeltest.SkipReason(); reason != "" {
			t.Skip(reason)
		}
		fn(t, memstore.New(), readmodeltest.Postgres)
	})
}

// newJetStream starts an embedded NATS server with JetStream on a free port and
// opens the event store on it; both are shut down when the test ends.
func newJetStream(t testing.TB) eventstore.Store {
	t.Helper()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(e.Shutdown) // registered first, so it runs after the connection closes
	nc, err := nats.Connect(e.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect to embedded NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	s, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		t.Fatalf("open JetStream store: %v", err)
	}
	return s
}
