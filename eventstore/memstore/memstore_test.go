package memstore_test

import (
	"testing"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
	"github.com/billtransfer/ledger/eventstore/memstore"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(*testing.T) eventstore.Store { return memstore.New() })
}
