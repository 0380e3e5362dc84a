package commands_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
)

// storeFactories returns, per adapter, a function that opens a client of ONE shared
// store per test. For JetStream every call opens a separate NATS connection and
// Store (as a second billingd process would), all on one embedded server.
func storeFactories(t *testing.T) map[string]func() eventstore.Store {
	return map[string]func() eventstore.Store{
		"memstore": func() func() eventstore.Store {
			s := memstore.New()
			return func() eventstore.Store { return s }
		}(),
		"jetstream": func() func() eventstore.Store {
			var url string
			return func() eventstore.Store {
				if url == "" {
					emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(emb.Shutdown)
					url = emb.ClientURL()
				}
				nc, err := nats.Connect(url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				s, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}(),
	}
}
