// Package commands is the write side's single pipeline: validate, load the
// aggregates a command touches, run the pure domain decision, append the events of
// every touched stream atomically with optimistic concurrency, and retry from a
// fresh load on conflict (bounded). A command carrying request_id is idempotent:
// its outcome is stored on stream "billing.request.<id>" in the same atomic append,
// so a retry returns the first result and appends nothing, in any process.
package commands

import "time"

// Clock tells the ledger time. Every time the ledger assigns comes from it.
type Clock interface {
	// Now returns the current ledger time (UTC).
	Now() time.Time
}
