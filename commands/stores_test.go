package commands_test

import (
	"testing"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
)

// storeFactories returns, per adapter, a function that opens a client of ONE shared
// store per test (each call is a separate client where the adapter has clients).
func storeFactories(t *testing.T) map[string]func() eventstore.Store {
	return map[string]func() eventstore.Store{
		"memstore": func() func() eventstore.Store {
			s := memstore.New()
			return func() eventstore.Store { return s }
		}(),
	}
}
