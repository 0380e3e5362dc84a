package commands

// Usage ingestion: exactly once, for ever (U2).
//
// Every usage id maps to one of N partitions (domain.UsagePartition). A partition
// has a single logical writer: the UsageWriter that holds the partition's index
// of every usage id it ever accepted (usage_id → content hash) and the position
// of the newest event in the partition. Events live on month-first streams
// "billing.usage.<booking-month>.<pp>", so a month replays with one subject
// filter, but the writer guards each append with the whole partition family
// "billing.usage.*.<pp>": the append succeeds only if no event was added to ANY
// month of the partition since the writer's index was last brought up to date
// (eventstore.Guard; JetStream's expected last sequence on a wildcard subject).
//
// So the guarantee does not depend on a time window, a process or a cache:
//   - two ingest processes may write the same partition; the loser of a race gets
//     a guard conflict, reads the events it missed into its index and decides
//     again, so a record both received is appended once;
//   - a restart rebuilds the index from the partition's events before the first
//     append (lazily, per partition);
//   - a duplicate arriving a month or a year later meets the same index, because
//     the index spans every month of the partition.
//
// One append = one JetStream message holding a UsageBatchRecorded of up to
// maxRecordsPerEvent records, accepted and dead-lettered together, so the
// append and replay costs are amortized over the batch and nothing can be
// accepted without its dead letters or the reverse.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Record statuses in ingestion results.
const (
	StatusAccepted  = "ACCEPTED"
	StatusDuplicate = "DUPLICATE"
	StatusRejected  = "REJECTED"
)

// DefaultUsagePartitions is the number of usage partitions (domain.UsagePartitions). It is part of the
// data layout: changing it on an existing store breaks deduplication.
const DefaultUsagePartitions = domain.UsagePartitions

// maxRecordsPerEvent keeps one event well under JetStream's 1 MB message limit.
const maxRecordsPerEvent = 1000

// UsageItem is one thing to ingest: a parsed record, or a raw payload that could
// not be parsed (it is dead-lettered as MALFORMED).
type UsageItem struct {
	// Record is the parsed record; nil for a malformed payload.
	Record *billingv1.UsageRecord
	// Raw is the payload that could not be parsed.
	Raw []byte
	// MalformedReason says why Raw could not be parsed.
	MalformedReason string
	// Origin tells where the item came from ("nats:usage.v1.batch line 3").
	Origin string
	// RedriveOf is the dead letter this item re-drives, if any.
	RedriveOf string
}

// UsageMetrics receives one call per record outcome (status, reason).
type UsageMetrics func(status, reason string)

// UsageWriter is the single logical writer of every usage partition.
type UsageWriter struct {
	store   eventstore.Store
	clock   Clock
	dir     domain.View
	closed  domain.MonthClosed
	metrics UsageMetrics
	parts   []*usagePartition
}

// UsageWriterOptions configure a UsageWriter.
type UsageWriterOptions struct {
	// Partitions is the number of partitions (default DefaultUsagePartitions).
	Partitions int
	// Closed tells which months a payer closed, besides the closes the
	// partitions learn from their UsageMonthClosed markers (optional).
	Closed domain.MonthClosed
	// Metrics counts outcomes (optional).
	Metrics UsageMetrics
}

// NewUsageWriter returns a writer booking usage with the organizations of dir.
func NewUsageWriter(store eventstore.Store, clock Clock, dir domain.View, opts UsageWriterOptions) *UsageWriter {
	if opts.Partitions <= 0 {
		opts.Partitions = DefaultUsagePartitions
	}
	w := &UsageWriter{store: store, clock: clock, dir: dir, closed: opts.Closed, metrics: opts.Metrics}
	for i := 0; i < opts.Partitions; i++ {
		w.parts = append(w.parts, &usagePartition{id: uint32(i)})
	}
	return w
}

// usagePartition is one partition's writer state. mu serializes this process's
// appends to the partition; other processes are kept out by the guard.
type usagePartition struct {
	mu       sync.Mutex
	id       uint32
	loaded   bool
	last     uint64              // newest position in the partition family
	seen     map[string][16]byte // usage_id → first 16 bytes of its content hash
	versions map[string]uint64   // stream → version
	closed   map[string]bool     // payer + " " + month closed (UsageMonthClosed markers, U3)
}

// isClosed tells whether payer closed m, as this partition has seen it: every
// close writes a marker into every partition in the same atomic append as its
// invoices, and this writer's guard covers the partition, so a close it has not
// seen makes its append conflict and it catches up before deciding again.
func (p *usagePartition) isClosed(w *UsageWriter) domain.MonthClosed {
	return func(payer string, m domain.Month) bool {
		return p.closed[payer+" "+m.String()] || (w.closed != nil && w.closed(payer, m))
	}
}

// Ingest ingests parsed records and answers per record, in order.
func (w *UsageWriter) Ingest(ctx context.Context, actor, origin string, records []*billingv1.UsageRecord) (*billingv1.IngestBatchResponse, error) {
	items := make([]UsageItem, len(records))
	for i, r := range records {
		items[i] = UsageItem{Record: r, Origin: origin}
	}
	return w.IngestItems(ctx, actor, items)
}

// DeadLetterMalformed durably dead-letters a payload that could not be parsed.
func (w *UsageWriter) DeadLetterMalformed(ctx context.Context, actor, origin string, raw []byte, reason string) (string, error) {
	res, err := w.IngestItems(ctx, actor, []UsageItem{{Raw: raw, MalformedReason: reason, Origin: origin}})
	if err != nil {
		return "", err
	}
	return res.GetResults()[0].GetDeadLetterId(), nil
}

// IngestItems ingests items and answers per item, in order. It returns an error
// only when the store failed; then some partitions may have been written and
// others not, and the caller retries the whole batch (deduplication makes that
// safe).
func (w *UsageWriter) IngestItems(ctx context.Context, actor string, items []UsageItem) (*billingv1.IngestBatchResponse, error) {
	now := w.clock.Now().UTC()
	results := make([]*billingv1.RecordResult, len(items))
	byPart := map[uint32][]int{}
	for i, it := range items {
		key := it.Record.GetUsageId()
		if it.Record == nil || key == "" {
			sum := sha256.Sum256(append([]byte(it.Origin+"\x00"), it.Raw...))
			key = string(sum[:])
			if it.Record != nil {
				b, _ := proto.Marshal(it.Record)
				sum = sha256.Sum256(b)
				key = string(sum[:])
			}
		}
		p := domain.UsagePartition(key, len(w.parts))
		byPart[p] = append(byPart[p], i)
	}
	parts := make([]uint32, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(a, b int) bool { return parts[a] < parts[b] })
	var posMu sync.Mutex
	var position uint64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, p := range parts {
		g.Go(func() error {
			pos, err := w.parts[p].ingest(gctx, w, actor, now, items, byPart[p], results)
			posMu.Lock()
			position = max(position, pos)
			posMu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	resp := &billingv1.IngestBatchResponse{Results: results, Position: position, RejectedByReason: map[string]uint32{}}
	for _, r := range results {
		switch r.GetStatus() {
		case StatusAccepted:
			resp.Accepted++
		case StatusDuplicate:
			resp.Duplicates++
		case StatusRejected:
			resp.Rejected++
			resp.RejectedByReason[r.GetReason()]++
		}
		if w.metrics != nil {
			w.metrics(r.GetStatus(), r.GetReason())
		}
	}
	return resp, nil
}

func shortHash(h []byte) [16]byte {
	var k [16]byte
	copy(k[:], h)
	return k
}

// load reads the partition's events that came after p.last into the index.
func (p *usagePartition) catchUp(ctx context.Context, store eventstore.Store) error {
	if p.seen == nil {
		p.seen = map[string][16]byte{}
		p.versions = map[string]uint64{}
		p.closed = map[string]bool{}
	}
	err := store.ReadAll(ctx, p.last, domain.UsagePartitionFilter(p.id), func(r eventstore.Record) error {
		p.last = r.Position
		p.versions[r.Event.GetStream()] = r.Event.GetStreamVersion()
		for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
			p.seen[b.GetRecord().GetUsageId()] = shortHash(b.GetContentHash())
		}
		if c := r.Event.GetUsageMonthClosed(); c != nil {
			p.closed[c.GetPayerAccountId()+" "+c.GetMonth()] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("usage partition %d: read: %w", p.id, err)
	}
	p.loaded = true
	return nil
}

// pending is one item's decision inside an attempt.
type pending struct {
	idx      int
	redrive  string
	booked   *billingv1.BookedUsage
	rejected *billingv1.UsageRejected
	result   *billingv1.RecordResult
}

// ingest decides and appends the items of one partition, retrying from a fresh
// index on a guard conflict. It returns the newest position it appended.
func (p *usagePartition) ingest(ctx context.Context, w *UsageWriter, actor string, now time.Time, items []UsageItem, idxs []int, results []*billingv1.RecordResult) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		if err := p.catchUp(ctx, w.store); err != nil {
			return 0, err
		}
	}
	todo := idxs
	var position uint64
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt >= 20 {
			return position, fmt.Errorf("usage partition %d: gave up after %d guard conflicts", p.id, attempt)
		}
		groups, order, err := p.decide(w, now, items, todo)
		if err != nil {
			return position, err
		}
		var retry []int
		for _, month := range order {
			g := groups[month]
			for start := 0; start < len(g); start += maxRecordsPerEvent {
				chunk := g[start:min(start+maxRecordsPerEvent, len(g))]
				pos, err := p.append(ctx, w, actor, now, month, chunk)
				if err != nil {
					var gc *eventstore.GuardConflictError
					var cc *eventstore.ConflictError
					if errors.As(err, &gc) || errors.As(err, &cc) {
						// Another writer moved the partition: learn what it wrote and
						// decide again for everything not yet appended.
						for _, rest := range g[start:] {
							retry = append(retry, rest.idx)
						}
						for _, m := range order[indexOf(order, month)+1:] {
							for _, rest := range groups[m] {
								retry = append(retry, rest.idx)
							}
						}
						if err := p.catchUp(ctx, w.store); err != nil {
							return position, err
						}
						break
					}
					return position, err
				}
				position = max(position, pos)
				for _, pd := range chunk {
					results[pd.idx] = pd.result
				}
			}
			if len(retry) > 0 {
				break
			}
		}
		// Decide again in input order: with two records of one usage id in the
		// batch, the first one is booked and the second is its duplicate or
		// conflict, whatever groups they were in.
		sort.Ints(retry)
		todo = retry
	}
	return position, nil
}

// batchView remembers, for one decision, the accounts found to have no owner,
// so a batch full of records of an unknown account reads the store once for
// it, not once per record.
type batchView struct {
	domain.View
	unknown map[string]bool
}

// AccountOwner implements domain.View.
func (b *batchView) AccountOwner(id string) (string, error) {
	if b.unknown[id] {
		return "", nil
	}
	o, err := b.View.AccountOwner(id)
	if err == nil && o == "" {
		b.unknown[id] = true
	}
	return o, err
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// decide classifies items against the index: duplicates are answered at once;
// accepted and rejected items are grouped by the month of the event that will
// carry them.
func (p *usagePartition) decide(w *UsageWriter, now time.Time, items []UsageItem, idxs []int) (map[string][]pending, []string, error) {
	groups := map[string][]pending{}
	var order []string
	add := func(month string, pd pending) {
		if _, ok := groups[month]; !ok {
			order = append(order, month)
		}
		groups[month] = append(groups[month], pd)
	}
	inBatch := map[string][16]byte{}
	view := &batchView{View: w.dir, unknown: map[string]bool{}}
	nowMonth := domain.MonthOf(now).String()
	closed := p.isClosed(w)
	for _, i := range idxs {
		it := items[i]
		rej := func(reason, msg string) {
			id := uuid.Must(NewV7At(now)).String()
			rj := &billingv1.UsageRejected{DeadLetterId: id, Reason: reason, Message: msg, Record: it.Record, Raw: it.Raw, Origin: it.Origin}
			month := nowMonth
			add(month, pending{idx: i, redrive: it.RedriveOf, rejected: rj, result: &billingv1.RecordResult{UsageId: it.Record.GetUsageId(), Status: StatusRejected, Reason: reason, Message: msg, DeadLetterId: id, Index: uint32(i)}})
		}
		if it.Record == nil {
			rej(domain.ReasonMalformed, it.MalformedReason)
			continue
		}
		if r := domain.ValidateUsage(it.Record, now); r != nil {
			rej(r.Reason, r.Message)
			continue
		}
		id := it.Record.GetUsageId()
		full := domain.UsageContentHash(it.Record)
		h := shortHash(full)
		prev, ok := p.seen[id]
		if !ok {
			prev, ok = inBatch[id]
		}
		if ok {
			if prev == h {
				res := &billingv1.RecordResult{UsageId: id, Status: StatusDuplicate, Index: uint32(i)}
				if it.RedriveOf != "" {
					// A re-driven record that is already in: its dead letter is resolved
					// by an event that carries only the resolution.
					add(nowMonth, pending{idx: i, redrive: it.RedriveOf, result: res})
				} else {
					add("", pending{idx: i, result: res})
				}
				continue
			}
			rej(domain.ReasonUsageIDConflict, fmt.Sprintf("usage_id %s was already recorded with different content; a usage id names one record for ever (U2)", id))
			continue
		}
		booked, r, err := domain.BookUsageHashed(view, it.Record, full, closed)
		if err != nil {
			return nil, nil, err
		}
		if r != nil {
			rej(r.Reason, r.Message)
			continue
		}
		inBatch[id] = h
		add(booked.GetBookingMonth(), pending{idx: i, redrive: it.RedriveOf, booked: booked, result: &billingv1.RecordResult{UsageId: id, Status: StatusAccepted, Index: uint32(i)}})
	}
	return groups, order, nil
}

// append writes one chunk as one event, guarded by the partition family.
func (p *usagePartition) append(ctx context.Context, w *UsageWriter, actor string, now time.Time, month string, chunk []pending) (uint64, error) {
	if month == "" {
		return 0, nil // duplicates only: nothing to write
	}
	batch := &billingv1.UsageBatchRecorded{Partition: p.id, Month: month}
	for _, pd := range chunk {
		if pd.booked != nil {
			batch.Records = append(batch.Records, pd.booked)
		}
		if pd.rejected != nil {
			batch.Rejected = append(batch.Rejected, pd.rejected)
		}
		if pd.redrive != "" {
			batch.RedrivenDeadLetterIds = append(batch.RedrivenDeadLetterIds, pd.redrive)
		}
	}
	id, err := NewV7At(now)
	if err != nil {
		return 0, err
	}
	ev := &billingv1.Event{EventId: id.String(), RecordedAt: timestamppb.New(now), Actor: actor, CorrelationId: id.String(), CausationId: id.String(),
		Payload: &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: batch}}
	stream := domain.UsageStream(month, p.id)
	recs, err := w.store.Append(ctx, eventstore.StreamAppend{
		Stream: stream, ExpectedVersion: p.versions[stream], Events: []*billingv1.Event{ev},
		Guard: &eventstore.Guard{Filter: domain.UsagePartitionFilter(p.id), LastPosition: p.last},
	})
	if err != nil {
		return 0, err
	}
	p.last = recs[0].Position
	p.versions[stream]++
	for _, b := range batch.Records {
		p.seen[b.GetRecord().GetUsageId()] = shortHash(b.GetContentHash())
	}
	return p.last, nil
}

// RecordJSON renders a record as protojson with proto field names (dead letters).
func RecordJSON(r *billingv1.UsageRecord) string {
	b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	return string(b)
}
