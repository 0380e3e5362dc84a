package projections

import (
	"context"
	"database/sql"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/readmodel"
)

// The usage and proforma projections add each batch to rows they read first.
// A Runner is the only writer of its projection's tables, so the values it
// last committed are the values in the database: the projection the Runner
// drives keeps them in memory (with each row's id) and skips the read of a row
// it has touched before. NewRunner gives each Runner its own empty cache
// (runnerLocal), and the Runner reports the end of each transaction (txEnder):
//
//   - a transaction that does not commit (an error, a rollback, a failed
//     commit) empties the cache, which then fills again from the database;
//   - so does a transaction that starts while the previous one was never
//     reported, and a change of the database's schema cookie (a migration or a
//     VACUUM, which may renumber row ids);
//   - a table's cache over maxCachedRows rows loses half of them, at random,
//     at the start of a transaction.
//
// A second Runner on the same database cannot make a cache stale without
// failing first: the checkpoint's compare-and-set (readmodel.AdvanceCheckpoint)
// rolls back whichever transaction comes second. The zero values Usage{} and
// Proforma{} (ReplayMonth, tools, direct ApplyBatch calls) use a cache that
// lives for one batch, i.e. they read every row they touch.

// runnerLocal is a projection that keeps state across the Runner's
// transactions; NewRunner runs forRunner and drives what it returns.
type runnerLocal interface {
	forRunner() Projection
}

// txEnder is a projection that wants to know how each Runner transaction ended.
type txEnder interface {
	txEnded(committed bool)
}

// maxCachedRows bounds each table's cache (billable rows; SKU aggregates; pro
// forma rows; the pricer's group choices): about 500 bytes a row with its key,
// so at most ~16 MB each. Past it, half the rows are forgotten (trim) and the
// rows in use come back from the database.
const maxCachedRows = 1 << 15

// trim forgets entries of m, in Go's random map order, until half of
// maxCachedRows are left, if it holds more than maxCachedRows.
func trim[K comparable, V any](m map[K]V) {
	if len(m) <= maxCachedRows {
		return
	}
	for k := range m {
		if len(m) <= maxCachedRows/2 {
			return
		}
		delete(m, k)
	}
}

// cacheTx is the transaction bookkeeping a cache shares.
type cacheTx struct {
	cookie int64 // the schema cookie the cached row ids belong to
	open   bool  // a transaction has used the cache and has not been reported ended
}

// begin prepares the cache for a transaction: clear empties it.
func (c *cacheTx) begin(ctx context.Context, tx *sql.Tx, clear func()) error {
	if c.open {
		clear() // the previous transaction's outcome is unknown
	}
	cookie, err := readmodel.SchemaCookie(ctx, tx)
	if err != nil {
		clear()
		return err
	}
	if cookie != c.cookie {
		clear()
		c.cookie = cookie
	}
	c.open = true
	return nil
}

// end records the end of the transaction.
func (c *cacheTx) end(committed bool, clear func()) {
	if c.open && !committed {
		clear()
	}
	c.open = false
}

// setStored sets d to the value domain.ParseDecimal gives for s, a stored
// amount, and reports whether s is one: the cache keeps exactly what reading
// the row back would give.
func setStored(d *apd.Decimal, s string) bool {
	if setPlainDecimal(d, s) {
		return true
	}
	v, err := domain.ParseDecimal(s)
	if err != nil {
		return false
	}
	d.Set(v)
	return true
}
