package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Executor runs commands. The pipeline implements it; decorators (logging) wrap it.
type Executor interface {
	// Execute runs one command on behalf of actor.
	Execute(ctx context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error)
}

// Options configure a Pipeline.
type Options struct {
	// Policy holds the domain limits (zero = domain.DefaultPolicy).
	Policy domain.Policy
	// MaxAttempts bounds the retries on a version conflict (default 8).
	MaxAttempts int
}

// Pipeline is the command pipeline: load, decide, append with OCC, retry.
type Pipeline struct {
	store eventstore.Store
	clock Clock
	opts  Options
	// cache keeps the streams decisions read, when the store can read a
	// stream's tail (eventstore.TailReader); nil otherwise.
	cache *streamCache
}

var _ Executor = (*Pipeline)(nil)

// New returns a pipeline over store, taking time from clock.
func New(store eventstore.Store, clock Clock, opts Options) *Pipeline {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.Policy.MaxInboundTransfers == 0 {
		opts.Policy = domain.DefaultPolicy
	}
	p := &Pipeline{store: store, clock: clock, opts: opts}
	if _, ok := store.(eventstore.TailReader); ok {
		p.cache = newStreamCache(maxCachedBytes)
	}
	return p
}

// maxCachedBytes bounds the stream cache by the encoded size of the events it
// holds (a month stream's invoice events take up to 256 KiB each); it starts
// afresh when full.
const maxCachedBytes = 64 << 20

// streamCache keeps, per stream a decision read, its records, so that the
// next decision on that stream reads only what was appended since
// (eventstore.TailReader) instead of the whole stream: a distributor's
// organization holds two events per source, and every invitation reads it.
// Streams are append-only, so a cached prefix is never wrong; the optimistic
// concurrency of the append still decides. Decisions treat events as
// read-only, so one cached event serves many decisions.
type streamCache struct {
	mu      sync.Mutex
	streams map[string][]eventstore.Record
	bytes   map[string]int // encoded size of each stream's cached events
	total   int
	limit   int // maxCachedBytes (tests set less)
}

func newStreamCache(limit int) *streamCache {
	return &streamCache{streams: map[string][]eventstore.Record{}, bytes: map[string]int{}, limit: limit}
}

// get returns the cached records of stream (nil when none); the caller must
// not change the slice's elements.
func (c *streamCache) get(stream string) []eventstore.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := c.streams[stream]
	return recs[:len(recs):len(recs)]
}

// put caches the records of stream unless a longer prefix is cached; a
// stream larger than the whole cache is not kept.
func (c *streamCache) put(stream string, recs []eventstore.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.streams[stream]
	if len(recs) <= len(old) {
		return
	}
	size := c.bytes[stream]
	for _, r := range recs[len(old):] {
		size += proto.Size(r.Event)
	}
	if size > c.limit {
		c.total -= c.bytes[stream]
		delete(c.streams, stream)
		delete(c.bytes, stream)
		return
	}
	if c.total-c.bytes[stream]+size > c.limit {
		clear(c.streams)
		clear(c.bytes)
		c.total = 0
	}
	c.total += size - c.bytes[stream]
	c.streams[stream] = recs
	c.bytes[stream] = size
}

// Command extracts the command message and its name from a request.
func Command(req *billingv1.ExecuteRequest) (proto.Message, string, error) {
	m := req.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("command")
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil, "", domain.Reject(domain.CodeInvalidArgument, "the request carries no command")
	}
	msg := m.Get(fd).Message().Interface()
	return msg, string(fd.Message().Name()), nil
}

// requestID reads the request_id field every command carries (field 15).
func requestID(cmd proto.Message) string {
	fd := cmd.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name("request_id"))
	if fd == nil {
		return ""
	}
	return cmd.ProtoReflect().Get(fd).String()
}

// Execute runs one command. Rejections are *domain.Error; nothing is appended for
// a rejected command.
func (p *Pipeline) Execute(ctx context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	cmd, name, err := Command(req)
	if err != nil {
		return nil, err
	}
	rid := requestID(cmd)
	var hash []byte
	if rid != "" {
		if !validRequestID(rid) {
			return nil, domain.Reject(domain.CodeInvalidArgument, "request_id %q must be 1 to 128 letters, digits, '-' or '_'", rid)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
		if err != nil {
			return nil, fmt.Errorf("encode command: %w", err)
		}
		sum := sha256.Sum256(append([]byte(name+"\x00"), b...))
		hash = sum[:]
	}
	generatedID := "rt-" + newRandomHex(12)
	correlation := rid
	if correlation == "" {
		correlation = uuid.Must(NewV7At(p.clock.Now())).String()
	}
	var lastConflict error
	for attempt := 0; attempt < p.opts.MaxAttempts; attempt++ {
		if rid != "" {
			res, found, err := p.recorded(ctx, rid, name, hash)
			if err != nil || found {
				return res, err
			}
		}
		now := p.clock.Now().UTC()
		view := newLoader(ctx, p.store)
		view.cache = p.cache
		out, err := domain.Decide(view, cmd, domain.Env{Now: now, Policy: p.opts.Policy, NewTransferID: generatedID})
		if err != nil {
			if rid != "" && view.err == nil {
				// A concurrent retry of this very request may have committed between
				// our look-up of the request and the load of the state that made us
				// reject it; its record is atomic with its events, so look again.
				if res, found, rerr := p.recorded(ctx, rid, name, hash); rerr != nil || found {
					return res, rerr
				}
			}
			return nil, err
		}
		if view.err != nil {
			return nil, view.err
		}
		appends, ids, err := p.build(ctx, view, out, actor, correlation, now)
		if err != nil {
			return nil, err
		}
		result := &billingv1.CommandResult{AggregateId: out.AggregateID, EventIds: ids, Created: out.Created, CorrelationId: correlation}
		if rid != "" {
			rec := &billingv1.Event{EventId: uuid.Must(NewV7At(now)).String(), RecordedAt: timestamppb.New(now), Actor: actor, CorrelationId: correlation, CausationId: correlation,
				Payload: &billingv1.Event_CommandRecorded{CommandRecorded: &billingv1.CommandRecorded{RequestId: rid, Command: name, CommandHash: hash, Result: result}}}
			appends = append(appends, eventstore.StreamAppend{Stream: domain.RequestStream(rid), ExpectedVersion: 0, Events: []*billingv1.Event{rec}})
		}
		recs, err := p.appendGuarded(ctx, view, appends)
		if err == nil {
			out := proto.Clone(result).(*billingv1.CommandResult)
			if len(recs) > 0 {
				out.Position = recs[len(recs)-1].Position
			}
			return out, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("append %s: %w", name, err)
		}
		lastConflict = err
		// Back off a little, with jitter, before deciding again on fresh state.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * time.Duration(1+randByte()%5) * time.Millisecond):
		}
	}
	return nil, domain.Reject(domain.CodeAborted, "%s gave up after %d attempts because other commands kept changing the same records (%v); retry it", name, p.opts.MaxAttempts, lastConflict)
}

// recorded looks up the stored outcome of a request id.
func (p *Pipeline) recorded(ctx context.Context, rid, name string, hash []byte) (*billingv1.CommandResult, bool, error) {
	recs, err := p.store.ReadStream(ctx, domain.RequestStream(rid))
	if err != nil {
		return nil, false, fmt.Errorf("read request %s: %w", rid, err)
	}
	if len(recs) == 0 {
		return nil, false, nil
	}
	cr := recs[0].Event.GetCommandRecorded()
	if cr.GetCommand() != name || string(cr.GetCommandHash()) != string(hash) {
		return nil, true, domain.Reject(domain.CodeRequestIDConflict, "request_id %s was already used for a different %s command; use a new request_id", rid, cr.GetCommand())
	}
	res := proto.Clone(cr.GetResult()).(*billingv1.CommandResult)
	res.Replayed = true
	res.Position = recs[0].Position
	return res, true, nil
}

// build turns an outcome into store appends, filling every envelope.
func (p *Pipeline) build(ctx context.Context, view *loader, out domain.Outcome, actor, correlation string, now time.Time) ([]eventstore.StreamAppend, []string, error) {
	var appends []eventstore.StreamAppend
	var ids []string
	for _, ch := range out.Changes {
		expected, ok := view.versions[ch.Stream]
		if !ok {
			// A stream the decision writes without having read it (e.g. a new
			// billing group): its current version still guards the append.
			if _, err := view.read(ch.Stream); err != nil {
				return nil, nil, err
			}
			expected = view.versions[ch.Stream]
		}
		var guard *eventstore.Guard
		if fam := domain.DecisionFamily(ch.Stream); fam != "" {
			// read pinned the family's position before it read the stream.
			guard = &eventstore.Guard{Filter: fam, LastPosition: view.families[fam]}
		}
		events := make([]*billingv1.Event, 0, len(ch.Events))
		for _, e := range ch.Events {
			e = proto.Clone(e).(*billingv1.Event)
			id, err := NewV7At(now)
			if err != nil {
				return nil, nil, err
			}
			e.EventId = id.String()
			e.RecordedAt = timestamppb.New(now)
			e.Actor = actor
			e.CorrelationId = correlation
			e.CausationId = correlation
			ids = append(ids, e.EventId)
			events = append(events, e)
		}
		appends = append(appends, eventstore.StreamAppend{Stream: ch.Stream, ExpectedVersion: expected, Events: events, Guard: guard})
	}
	return appends, ids, nil
}

func isConflict(err error) bool {
	var gc *eventstore.GuardConflictError
	return eventstore.IsConflict(err) || errors.As(err, &gc)
}

// maxGuardRefreshes bounds the appends of one decision whose usage guards are
// refreshed because other months' usage moved a partition (see appendGuarded).
const maxGuardRefreshes = 50

// appendGuarded appends; when the decision read a month's usage (a close), each
// usage partition stream it writes is guarded by its partition family, with the
// same filter text as the usage writers, so that no usage record booked into the
// month can slip past the close on a JetStream cluster either. Usage of other
// months moves those families all the time; when only that happened, the
// decision still holds: the guards are refreshed and the same events appended
// again, without reading the month once more.
func (p *Pipeline) appendGuarded(ctx context.Context, view *loader, appends []eventstore.StreamAppend) ([]eventstore.Record, error) {
	if len(view.usageMonths) == 0 {
		return p.store.Append(ctx, appends...)
	}
	for attempt := 0; ; attempt++ {
		for i := range appends {
			if g, ok := view.guards[appends[i].Stream]; ok {
				appends[i].Guard = &eventstore.Guard{Filter: g.Filter, LastPosition: g.LastPosition}
			}
		}
		recs, err := p.store.Append(ctx, appends...)
		var gc *eventstore.GuardConflictError
		if err == nil || !errors.As(err, &gc) || attempt >= maxGuardRefreshes {
			return recs, err
		}
		unchanged, rerr := view.refreshUsageGuards()
		if rerr != nil {
			return nil, rerr
		}
		if !unchanged {
			return nil, err // the month itself moved: decide again
		}
	}
}

// loader is the pipeline's domain.View over the store. It remembers the version of
// every stream it read; those versions guard the append.
type loader struct {
	ctx      context.Context
	store    eventstore.Store
	versions map[string]uint64
	events   map[string][]*billingv1.Event
	// orgs caches the organizations folded from events: a month close asks
	// for the payer's once per account it invoices.
	orgs map[string]domain.Org
	err  error
	// usageMonths holds, per month whose usage was read (EachBookedUsage), the
	// position of the newest usage event of the month that was read.
	usageMonths map[string]uint64
	// guards holds the guard of each usage partition stream of those months.
	guards map[string]eventstore.Guard
	// cache is the pipeline's stream cache (nil: read whole streams).
	cache *streamCache
	// families holds, per decision family (domain.DecisionFamilies) the
	// decision read from, the family's newest position taken before its first
	// read: every append to a stream of the family is guarded by it.
	families map[string]uint64
}

var (
	_ domain.View         = (*loader)(nil)
	_ domain.FamilyReader = (*loader)(nil)
)

func newLoader(ctx context.Context, store eventstore.Store) *loader {
	return &loader{ctx: ctx, store: store, versions: map[string]uint64{}, events: map[string][]*billingv1.Event{}, orgs: map[string]domain.Org{}, families: map[string]uint64{}}
}

// pinFamily takes a decision family's newest position, once per decision and
// before any of its streams is read, so that whatever the decision reads of
// the family is at or after it and any later append to the family fails the
// guard (the decision is then made again on fresh state).
func (l *loader) pinFamily(family string) error {
	if _, ok := l.families[family]; ok {
		return nil
	}
	pos, err := l.store.LastPositionMatching(l.ctx, family)
	if err != nil {
		err = fmt.Errorf("position of %s: %w", family, err)
		l.err = err
		return err
	}
	l.families[family] = pos
	return nil
}

// EachFamilyEvent implements domain.FamilyReader for the decision families:
// it reads the family up to its pinned position, and the decision's appends
// to the family are guarded by that position.
func (l *loader) EachFamilyEvent(family string, fn func(*billingv1.Event) error) error {
	if !slices.Contains(domain.DecisionFamilies(), family) {
		return fmt.Errorf("read %s: not a decision family, so a decision on it could not be guarded", family)
	}
	if err := l.pinFamily(family); err != nil {
		return err
	}
	pinned := l.families[family]
	err := l.store.ReadAll(l.ctx, 0, family, func(r eventstore.Record) error {
		if r.Position > pinned {
			return nil // newer than the guard: the append will fail and decide again
		}
		return fn(r.Event)
	})
	if err != nil && l.err == nil && !isDomainError(err) {
		err = fmt.Errorf("read %s: %w", family, err)
		l.err = err
	}
	return err
}

// maxUsageRereads bounds the catch-up reads of EachBookedUsage under ingest.
const maxUsageRereads = 100

// EachBookedUsage implements domain.MonthUsageReader. It reads the month's
// usage, then the position of every partition family, then checks that the
// month has nothing newer than what was read (else it reads on): so every usage
// event of the month at or before the families' positions was read, and a guard
// at those positions keeps out anything booked later.
func (l *loader) EachBookedUsage(month string, fn func(*billingv1.BookedUsage) error) error {
	if l.usageMonths == nil {
		l.usageMonths, l.guards = map[string]uint64{}, map[string]eventstore.Guard{}
	}
	if _, done := l.usageMonths[month]; done {
		return fmt.Errorf("usage of %s read twice in one decision", month)
	}
	for pp := uint32(0); pp < domain.UsagePartitions; pp++ {
		l.versions[domain.UsageStream(month, pp)] = 0
	}
	var from uint64
	for i := 0; ; i++ {
		err := l.store.ReadAll(l.ctx, from, domain.UsageMonthFilter(month), func(r eventstore.Record) error {
			from = r.Position
			l.versions[r.Event.GetStream()] = r.Event.GetStreamVersion()
			for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
				if err := fn(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read usage of %s: %w", month, err)
		}
		l.usageMonths[month] = from
		unchanged, err := l.refreshUsageGuards()
		if err != nil {
			return err
		}
		if unchanged {
			return nil
		}
		if i >= maxUsageRereads {
			return domain.Reject(domain.CodeAborted, "usage of %s kept arriving while it was read for the close; retry", month)
		}
	}
}

// refreshUsageGuards takes the position of every usage partition family, then
// reports whether each month read still ends where it was read.
func (l *loader) refreshUsageGuards() (bool, error) {
	for pp := uint32(0); pp < domain.UsagePartitions; pp++ {
		f := domain.UsagePartitionFilter(pp)
		pos, err := l.store.LastPositionMatching(l.ctx, f)
		if err != nil {
			return false, fmt.Errorf("usage partition %d position: %w", pp, err)
		}
		for month := range l.usageMonths {
			l.guards[domain.UsageStream(month, pp)] = eventstore.Guard{Filter: f, LastPosition: pos}
		}
	}
	for month, read := range l.usageMonths {
		pos, err := l.store.LastPositionMatching(l.ctx, domain.UsageMonthFilter(month))
		if err != nil {
			return false, fmt.Errorf("usage of %s position: %w", month, err)
		}
		if pos != read {
			return false, nil
		}
	}
	return true, nil
}

func (l *loader) read(stream string) ([]*billingv1.Event, error) {
	if evs, ok := l.events[stream]; ok {
		return evs, nil
	}
	if fam := domain.DecisionFamily(stream); fam != "" {
		if err := l.pinFamily(fam); err != nil {
			return nil, err
		}
	}
	recs, err := l.readRecords(stream)
	if err != nil {
		err = fmt.Errorf("read %s: %w", stream, err)
		l.err = err
		return nil, err
	}
	evs := make([]*billingv1.Event, len(recs))
	var v uint64
	for i, r := range recs {
		evs[i] = r.Event
		v = r.Event.GetStreamVersion()
	}
	l.events[stream] = evs
	l.versions[stream] = v
	return evs, nil
}

// readRecords reads a whole stream: the cached records and the tail
// appended since, or, without a cache, the stream itself.
func (l *loader) readRecords(stream string) ([]eventstore.Record, error) {
	tr, ok := l.store.(eventstore.TailReader)
	if !ok || l.cache == nil {
		return l.store.ReadStream(l.ctx, stream)
	}
	cached := l.cache.get(stream)
	if len(cached) == 0 {
		recs, err := l.store.ReadStream(l.ctx, stream)
		if err == nil {
			l.cache.put(stream, recs)
		}
		return recs, err
	}
	tail, err := tr.ReadStreamAfter(l.ctx, stream, cached[len(cached)-1])
	if err != nil {
		return nil, err
	}
	if len(tail) == 0 {
		return cached, nil
	}
	recs := append(cached, tail...) // cached has no spare capacity: a new array
	l.cache.put(stream, recs)
	return recs, nil
}

// Org implements domain.View.
func (l *loader) Org(id string) (domain.Org, error) {
	if o, ok := l.orgs[id]; ok {
		return o, nil
	}
	evs, err := l.read(domain.OrgStream(id))
	if err != nil {
		return domain.FoldOrg(evs), err
	}
	o := domain.FoldOrg(evs) // a value: sharing it between callers is safe
	l.orgs[id] = o
	return o, nil
}

// Transfer implements domain.View.
func (l *loader) Transfer(id string) (domain.Transfer, error) {
	evs, err := l.read(domain.TransferStream(id))
	return domain.FoldTransfer(evs), err
}

// AccountOwner implements domain.View.
func (l *loader) AccountOwner(id string) (string, error) {
	evs, err := l.read(domain.AccountStream(id))
	for _, e := range evs {
		if c := e.GetAccountClaimed(); c != nil {
			return c.GetManagementAccountId(), err
		}
	}
	return "", err
}

// Events implements domain.View.
func (l *loader) Events(stream string) ([]*billingv1.Event, error) { return l.read(stream) }

// NewV7At returns a UUIDv7 whose 48-bit millisecond time part is t (the ledger
// clock), so event ids sort by ledger time even under a simulated clock.
func NewV7At(t time.Time) (uuid.UUID, error) {
	var u uuid.UUID
	if _, err := rand.Read(u[6:]); err != nil {
		return u, err
	}
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = (u[6] & 0x0f) | 0x70 // version 7
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u, nil
}

func newRandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randByte() byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return b[0]
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Logged wraps an executor with structured logging of every command's outcome.
func Logged(next Executor, log *slog.Logger) Executor { return logged{next: next, log: log} }

type logged struct {
	next Executor
	log  *slog.Logger
}

// Execute implements Executor.
func (l logged) Execute(ctx context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	start := time.Now()
	_, name, _ := Command(req)
	res, err := l.next.Execute(ctx, actor, req)
	var de *domain.Error
	switch {
	case err == nil:
		l.log.Info("command", "command", name, "actor", actor, "aggregate", res.GetAggregateId(), "events", len(res.GetEventIds()),
			"replayed", res.GetReplayed(), "correlation_id", res.GetCorrelationId(), "position", res.GetPosition(), "ms", time.Since(start).Milliseconds())
	case errors.As(err, &de):
		l.log.Info("command rejected", "command", name, "actor", actor, "code", de.Code, "message", de.Message, "request_id", requestIDOf(req))
	default:
		l.log.Error("command failed", "command", name, "actor", actor, "err", err, "request_id", requestIDOf(req))
	}
	return res, err
}

// requestIDOf returns the request_id of the request's command ("" when none).
func requestIDOf(req *billingv1.ExecuteRequest) string {
	cmd, _, err := Command(req)
	if err != nil {
		return ""
	}
	return requestID(cmd)
}

// isDomainError reports whether err is (or wraps) a *domain.Error: a
// rejection, not a failure of the store.
func isDomainError(err error) bool {
	var de *domain.Error
	return errors.As(err, &de)
}
