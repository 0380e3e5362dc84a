package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// UsageName is the usage projection's checkpoint key.
const UsageName = readmodel.UsageProjection

// UsageFilter selects every usage stream (billing.usage.<booking-month>.<partition>).
const UsageFilter = "billing.usage.>"

// Usage is the usage projection: the billable view (DESIGN R1) and the usage
// dead letter (U4), from the UsageBatchRecorded events. The zero value is ready
// to use.
//
// For each run of events the Runner hands it, it sums the accepted records per
// billable row in memory (billableAggregate, which ReplayMonth shares) and then
// reads, adds to and writes each touched row once, with exact decimals; SQL
// never adds amounts. Rejected entries become dead letters, and the ids in
// redriven_dead_letter_ids are marked resolved; a redrive of an id that was
// never recorded stops the runner (the events would be out of order).
//
// Behind a Runner it keeps the rows it has committed in memory (rowcache.go),
// so a row is read from the database only the first time it is touched, and
// written by its row id.
type Usage struct {
	cache *billableCache // nil: a cache for one batch (rowcache.go)
}

var (
	_ BatchProjection = Usage{}
	_ runnerLocal     = Usage{}
	_ txEnder         = Usage{}
)

func (Usage) forRunner() Projection { return Usage{cache: newBillableCache(true)} }

func (u Usage) txEnded(committed bool) {
	if u.cache != nil {
		u.cache.end(committed, u.cache.reset)
	}
}

// Name implements Projection.
func (Usage) Name() string { return UsageName }

// Filter implements Projection.
func (Usage) Filter() string { return UsageFilter }

// Apply implements Projection: ApplyBatch of one event.
func (u Usage) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	return u.ApplyBatch(ctx, tx, []eventstore.Record{rec})
}

// resolution is one id of a batch's redriven_dead_letter_ids.
type resolution struct {
	ev usageEvent
	id string
}

// ApplyBatch implements BatchProjection. Errors name the event at fault
// (*ApplyError), except a failure writing billable rows, which belong to the
// whole batch.
func (u Usage) ApplyBatch(ctx context.Context, tx *sql.Tx, recs []eventstore.Record) error {
	agg := newBillableAggregate()
	var (
		rejected    []readmodel.DeadLetterRow
		rejectedEv  []usageEvent
		resolutions []resolution
	)
	for _, rec := range recs {
		ev, ok, err := decodeUsageEvent(rec)
		if err == nil && ok {
			err = agg.addEvent(ev)
		}
		if err != nil {
			return usageApplyError(rec, err)
		}
		if !ok {
			continue
		}
		for i, rj := range ev.batch.GetRejected() {
			rejected = append(rejected, readmodel.DeadLetterRow{
				Rejected: rj, Month: ev.month, Position: rec.Position, Index: i, RecordedAt: ev.recordedAt,
			})
			rejectedEv = append(rejectedEv, ev)
		}
		for _, id := range ev.batch.GetRedrivenDeadLetterIds() {
			resolutions = append(resolutions, resolution{ev: ev, id: id})
		}
	}

	cache := u.cache
	if cache == nil {
		cache = newBillableCache(false)
	}
	if err := writeBillable(ctx, tx, agg, cache); err != nil {
		return err
	}
	// Every dead letter of the batch before any resolution: a resolution checks
	// that its dead letter was recorded at or before its own position.
	for i := range rejected {
		if err := readmodel.InsertDeadLetter(ctx, tx, &rejected[i]); err != nil {
			return usageApplyError(rejectedEv[i].rec, err)
		}
	}
	for _, r := range resolutions {
		if r.id == "" {
			return usageApplyError(r.ev.rec, fmt.Errorf("usage: empty id in redriven_dead_letter_ids"))
		}
		if err := readmodel.ResolveDeadLetter(ctx, tx, r.id, r.ev.month, r.ev.rec.Position, r.ev.recordedAt); err != nil {
			return usageApplyError(r.ev.rec, err)
		}
	}
	return nil
}

// writeBillable adds the aggregate to the stored rows: per touched row, one
// read (unless the cache holds the row) and one write, the addition done with apd.
func writeBillable(ctx context.Context, tx *sql.Tx, agg *billableAggregate, c *billableCache) error {
	if len(agg.rows) == 0 {
		return nil
	}
	if err := c.begin(ctx, tx); err != nil {
		return err
	}
	w, err := readmodel.NewBillableWriter(ctx, tx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }() // before the runner commits tx
	var next readmodel.BillableRow
	for key, sum := range agg.rows {
		e := c.rows[key]
		if e == nil {
			prev, id, err := w.Lookup(ctx, key)
			if err != nil {
				return err
			}
			if prev == nil {
				sum.rowInto(&next, key)
				id, err := w.Insert(ctx, &next)
				if err != nil {
					return err
				}
				e := &billableEntry{id: id}
				c.rows[key] = e
				c.store(e, &next)
				continue
			}
			if e, err = loadBillable(key, id, prev); err != nil {
				return err
			}
			c.rows[key] = e
		}
		if err := sum.addTo(&next, key, e); err != nil {
			return err
		}
		if err := w.Update(ctx, e.id, &next); err != nil {
			return err
		}
		c.store(e, &next)
	}
	return nil
}

// billableEntry is a stored billable row as the cache keeps it: its row id
// and the values reading it back would give.
type billableEntry struct {
	id        int64
	cost, qty apd.Decimal
	records   uint64
}

// billableCache is the usage projection's cache of billable rows (rowcache.go).
type billableCache struct {
	cacheTx
	persistent bool // kept across transactions (a Runner's), else for one batch
	rows       map[readmodel.BillableKey]*billableEntry
}

func newBillableCache(persistent bool) *billableCache {
	return &billableCache{persistent: persistent, rows: map[readmodel.BillableKey]*billableEntry{}}
}

func (c *billableCache) reset() { clear(c.rows) }

func (c *billableCache) begin(ctx context.Context, tx *sql.Tx) error {
	if !c.persistent {
		return nil
	}
	if err := c.cacheTx.begin(ctx, tx, c.reset); err != nil {
		return err
	}
	trim(c.rows)
	return nil
}

// store records that e's row, in the cache, now holds r.
func (c *billableCache) store(e *billableEntry, r *readmodel.BillableRow) {
	if !setStored(&e.cost, r.BilledCost) || !setStored(&e.qty, r.UsageQuantity) {
		delete(c.rows, r.BillableKey) // not a decimal: the next batch reads it, and fails as it would have
		return
	}
	e.records = r.RecordCount
}

// loadBillable is the entry of a row read from the database.
func loadBillable(key readmodel.BillableKey, id int64, r *readmodel.BillableRow) (*billableEntry, error) {
	e := &billableEntry{id: id, records: r.RecordCount}
	if !setStored(&e.cost, r.BilledCost) {
		_, err := domain.ParseDecimal(r.BilledCost)
		return nil, fmt.Errorf("usage: stored billed_cost of %+v: %w", key, err)
	}
	if !setStored(&e.qty, r.UsageQuantity) {
		_, err := domain.ParseDecimal(r.UsageQuantity)
		return nil, fmt.Errorf("usage: stored usage_quantity of %+v: %w", key, err)
	}
	return e, nil
}

// usageApplyError names the event a usage error belongs to.
func usageApplyError(rec eventstore.Record, err error) *ApplyError {
	return &ApplyError{
		Projection: UsageName,
		Position:   rec.Position,
		Stream:     rec.Event.GetStream(),
		EventID:    rec.Event.GetEventId(),
		Err:        err,
	}
}

// usageEvent is a UsageBatchRecorded as the usage read models use it.
type usageEvent struct {
	rec        eventstore.Record
	batch      *billingv1.UsageBatchRecorded
	month      string    // the booking month of the stream (billing.usage.<month>.<partition>)
	recordedAt time.Time // the envelope's recorded_at, UTC
}

const usageStreamPrefix = "billing.usage."

// decodeUsageEvent returns rec's UsageBatchRecorded and its month; ok is false
// for every other payload. The stream must be a usage stream of a valid month,
// the batch's month (when set) that month, and recorded_at valid: replaying a
// month reads that month's streams only, so a batch on the wrong stream would
// make the replay and the live tables disagree.
func decodeUsageEvent(rec eventstore.Record) (ev usageEvent, ok bool, err error) {
	p, isUsage := rec.Event.GetPayload().(*billingv1.Event_UsageBatchRecorded)
	if !isUsage {
		return usageEvent{}, false, nil
	}
	stream := rec.Event.GetStream()
	month, partition, found := strings.Cut(strings.TrimPrefix(stream, usageStreamPrefix), ".")
	if !strings.HasPrefix(stream, usageStreamPrefix) || !found || partition == "" || strings.Contains(partition, ".") {
		return usageEvent{}, false, fmt.Errorf("usage: UsageBatchRecorded on stream %q, not billing.usage.<YYYY-MM>.<partition>", stream)
	}
	if _, err := domain.ParseMonth(month); err != nil {
		return usageEvent{}, false, fmt.Errorf("usage: UsageBatchRecorded on stream %q: %w", stream, err)
	}
	batch := p.UsageBatchRecorded
	if batch.GetMonth() != "" && batch.GetMonth() != month {
		return usageEvent{}, false, fmt.Errorf("usage: UsageBatchRecorded of month %q on stream %q", batch.GetMonth(), stream)
	}
	at, err := requiredTime("recorded_at", rec.Event.GetRecordedAt())
	if err != nil {
		return usageEvent{}, false, fmt.Errorf("usage: UsageBatchRecorded: %w", err)
	}
	return usageEvent{rec: rec, batch: batch, month: month, recordedAt: at}, true, nil
}

// moneyCtx is the arithmetic of the in-memory sums: the same as
// domain.AddDecimal's (60 significant digits, failing rather than rounding), but
// adding into a reused decimal, so summing a record allocates nothing.
var moneyCtx = apd.BaseContext.WithPrecision(60)

// addExact sets acc to acc + x exactly; it fails rather than round.
func addExact(acc, x *apd.Decimal) error {
	cond, err := moneyCtx.Add(acc, acc, x)
	if err != nil {
		return err
	}
	if cond.Inexact() || cond.Rounded() {
		return fmt.Errorf("decimal sum exceeds %d digits", moneyCtx.Precision)
	}
	return nil
}

// billableSum is the in-memory sum of the records of one billable row.
type billableSum struct {
	cost, qty apd.Decimal
	records   uint64
	position  uint64 // the last event that added to it
}

// billableAggregate sums booked usage per billable row. The usage projection
// (one per runner batch) and ReplayMonth (one per replay) both fill it through
// addEvent, so live rows and replayed rows are computed by the same code. Its
// memory grows with the number of rows, not of records or events: a record's
// strings are kept only as the key of a new row.
type billableAggregate struct {
	rows map[readmodel.BillableKey]*billableSum
	tmp  apd.Decimal // parse buffer, reused for every value
}

func newBillableAggregate() *billableAggregate {
	return &billableAggregate{rows: make(map[readmodel.BillableKey]*billableSum)}
}

// addEvent adds every accepted record of ev. A record that cannot be billed
// (booked into another month than its stream's, without payer, source,
// account, service or currency, or with an amount that is not a decimal) is an
// error naming it: ingestion validated it, so this means a corrupt event.
func (a *billableAggregate) addEvent(ev usageEvent) error {
	for i, b := range ev.batch.GetRecords() {
		if err := a.add(ev.month, ev.rec.Position, b); err != nil {
			return fmt.Errorf("usage: record %d (usage_id %q): %w", i, b.GetRecord().GetUsageId(), err)
		}
	}
	return nil
}

func (a *billableAggregate) add(month string, position uint64, b *billingv1.BookedUsage) error {
	r := b.GetRecord()
	if r == nil {
		return fmt.Errorf("booked usage without its record")
	}
	if b.GetBookingMonth() != month {
		return fmt.Errorf("booking_month %q on a stream of month %q", b.GetBookingMonth(), month)
	}
	key := readmodel.BillableKey{
		Month:           month,
		PayerAccountID:  b.GetPayerAccountId(),
		SourceAccountID: b.GetSourceAccountId(),
		AccountID:       r.GetAccountId(),
		Service:         r.GetService(),
		Currency:        r.GetCurrency(),
	}
	if key.PayerAccountID == "" || key.SourceAccountID == "" || key.AccountID == "" || key.Service == "" || key.Currency == "" {
		return fmt.Errorf("payer %q, source %q, account %q, service %q and currency %q must all be set",
			key.PayerAccountID, key.SourceAccountID, key.AccountID, key.Service, key.Currency)
	}
	s := a.rows[key]
	if s == nil {
		s = new(billableSum)
		a.rows[key] = s
	}
	if err := a.addDecimal(&s.cost, "billed_cost", r.GetBilledCost()); err != nil {
		return err
	}
	if err := a.addDecimal(&s.qty, "quantity", r.GetQuantity()); err != nil {
		return err
	}
	s.records++
	s.position = position
	return nil
}

// addDecimal parses v into the reused buffer, exactly as domain.ParseDecimal
// does (a finite decimal), and adds it to acc.
func (a *billableAggregate) addDecimal(acc *apd.Decimal, field, v string) error {
	if !setPlainDecimal(&a.tmp, v) {
		d, err := domain.ParseDecimal(v)
		if err != nil {
			return fmt.Errorf("%s %q is not a finite decimal number", field, v)
		}
		a.tmp.Set(d)
	}
	if err := addExact(acc, &a.tmp); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// addTo sets out to the row after adding s to the stored row prev.
func (s *billableSum) addTo(out *readmodel.BillableRow, key readmodel.BillableKey, prev *billableEntry) error {
	cost, err := domain.AddDecimal(&prev.cost, &s.cost)
	if err != nil {
		return fmt.Errorf("usage: billed_cost of %+v: %w", key, err)
	}
	qty, err := domain.AddDecimal(&prev.qty, &s.qty)
	if err != nil {
		return fmt.Errorf("usage: usage_quantity of %+v: %w", key, err)
	}
	*out = readmodel.BillableRow{
		BillableKey:     key,
		BilledCost:      domain.CanonicalDecimal(cost),
		UsageQuantity:   domain.CanonicalDecimal(qty),
		RecordCount:     prev.records + s.records,
		UpdatedPosition: s.position,
	}
	return nil
}

// row is the row of s alone.
func (s *billableSum) row(key readmodel.BillableKey) *readmodel.BillableRow {
	r := new(readmodel.BillableRow)
	s.rowInto(r, key)
	return r
}

func (s *billableSum) rowInto(r *readmodel.BillableRow, key readmodel.BillableKey) {
	*r = readmodel.BillableRow{
		BillableKey:     key,
		BilledCost:      domain.CanonicalDecimal(&s.cost),
		UsageQuantity:   domain.CanonicalDecimal(&s.qty),
		RecordCount:     s.records,
		UpdatedPosition: s.position,
	}
}

// protoRows returns the aggregate as API rows (unordered; the digest sorts).
func (a *billableAggregate) protoRows() []*billingv1.BillableRow {
	out := make([]*billingv1.BillableRow, 0, len(a.rows))
	for key, s := range a.rows {
		out = append(out, s.row(key).Proto())
	}
	return out
}

// setPlainDecimal sets d to s when s is a plain decimal: an optional sign, then
// 1 to 18 digits with at most one '.' between two of them ("-12.0345"). It
// reports whether it did. The result is the very value, coefficient and
// exponent apd's parser (domain.ParseDecimal) gives, without its allocations;
// every other form (exponents, more digits, ".5") takes the general path.
func setPlainDecimal(d *apd.Decimal, s string) bool {
	i, neg := 0, false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, i = s[0] == '-', 1
	}
	var coeff uint64
	digits, frac := 0, -1 // frac: digits after the '.', -1 before it
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			coeff = coeff*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0 && digits > 0:
			frac = 0
		default:
			return false
		}
	}
	if digits == 0 || digits > 18 || frac == 0 {
		return false
	}
	d.Form = apd.Finite
	d.Negative = neg
	d.Exponent = -int32(max(frac, 0))
	d.Coeff.SetUint64(coeff)
	return true
}
