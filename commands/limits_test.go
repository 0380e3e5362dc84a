package commands

import (
	"testing"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
)

// TestDomainKnowsTheStoresAppendLimit: the month close sizes its one atomic
// append by domain.MaxAppendEvents, which must be the store's limit (X5).
func TestDomainKnowsTheStoresAppendLimit(t *testing.T) {
	if domain.MaxAppendEvents != eventstore.MaxAppendEvents {
		t.Fatalf("domain.MaxAppendEvents = %d, eventstore.MaxAppendEvents = %d", domain.MaxAppendEvents, eventstore.MaxAppendEvents)
	}
}
