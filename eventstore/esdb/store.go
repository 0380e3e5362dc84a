package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const (
	// readBatch is the number of events asked for per stream or $all read.
	readBatch = 1000
	// backScan is how many of the newest $all events LastPositionMatching
	// reads itself, backwards, before it asks the server to search the rest
	// with a filtered subscription.
	backScan = 2048
	// searchWindow is the filtered subscription's MaxSearchWindow: the server
	// sends a checkpoint after this many events without a match.
	searchWindow = 512
	// maxCachedTips bounds the (stream → newest version) cache; it is reset when full.
	maxCachedTips = 100_000
	// resubscribeLimit bounds the consecutive failed (re)subscriptions of Subscribe.
	resubscribeLimit = 8
)

// Config configures Open.
type Config struct {
	// URL is the EventStoreDB connection string, e.g.
	// "esdb://localhost:2113?tls=false" or, for a cluster,
	// "esdb+discover://admin:changeit@node1:2113?nodePreference=leader".
	URL string
	// Namespace, when set, keeps every ledger stream under
	// "<Namespace>:<stream>", so that several ledgers (or test runs) share one
	// server without seeing each other's events. 1 to 64 of [A-Za-z0-9_-].
	Namespace string
	// InProcessGuards accepts guards whose filter has a wildcard
	// (eventstore.Guard over a family of streams) and checks them in this
	// process: under a lock per filter text, the family's newest position is
	// read and compared, then the stream is appended with its expected
	// revision. That holds only while this Store is the only writer of the
	// family (one ingest process), and every append to the family carries the
	// guard with the same filter text. Off (the default), such an append fails
	// with ErrWildcardGuard. Guards on the stream itself (a filter without
	// wildcards) are always exact and need no option.
	InProcessGuards bool
	// Logger receives the client library's own log lines at debug level (it
	// logs every failed call, cancellations included; the adapter returns
	// each failure as an error anyway). nil = no client logging.
	Logger *slog.Logger
}

// Store is the EventStoreDB eventstore.Store; see the package comment for
// what it supports. It is safe for concurrent use.
type Store struct {
	client          *esdbclient.Client
	owned           bool
	names           names
	inProcessGuards bool

	mu sync.Mutex
	// tips caches, per stream, the newest version seen with the position and
	// hash of the event at that version (never wrong, possibly not the newest).
	tips map[string]tip
	// guards holds one lock per wildcard guard filter (InProcessGuards).
	guards map[string]*sync.Mutex
}

// tip is the event at one version of a stream (zero: the stream is empty).
type tip struct {
	version  uint64
	position uint64
	hash     []byte
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to EventStoreDB and returns a Store that owns the client
// (Close closes it). It reads the newest event of $all once, so a wrong
// address or missing permission to read $all fails here.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	conf, err := esdbclient.ParseConnectionString(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("esdb: connection string: %w", err)
	}
	conf.Logger = clientLogger(cfg.Logger)
	client, err := esdbclient.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("esdb: client: %w", err)
	}
	s, err := New(client, cfg)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.owned = true
	if _, err := s.LastPosition(ctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("esdb: %s: %w", cfg.URL, err)
	}
	return s, nil
}

// clientLogger adapts the client library's logging to log (nil = none).
func clientLogger(log *slog.Logger) esdbclient.LoggingFunc {
	if log == nil {
		return esdbclient.NoopLogging()
	}
	return func(level esdbclient.LogLevel, format string, args ...any) {
		// The client passes its arguments as one slice (Configuration.applyLogger).
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		log.Debug(fmt.Sprintf(format, args...), "component", "eventstoredb-client", "client_level", level)
	}
}

// New returns a Store on a client the caller owns; cfg.URL is not used.
func New(client *esdbclient.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("esdb: New needs a client")
	}
	n, err := newNames(cfg.Namespace)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, names: n, inProcessGuards: cfg.InProcessGuards,
		tips: map[string]tip{}, guards: map[string]*sync.Mutex{}}, nil
}

// Close closes the client when Open created it.
func (s *Store) Close() error {
	if s.owned {
		return s.client.Close()
	}
	return nil
}

// Append implements eventstore.Store for one stream per append; see the
// package comment for the mapping of versions, guards and positions.
func (s *Store) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	if err := eventstore.CheckAppend(appends); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, nil
	}
	if err := unsupported(appends, s.inProcessGuards); err != nil {
		return nil, err
	}
	a := appends[0]
	if g := a.Guard; g != nil && hasWildcard(g.Filter) {
		l := s.guardLock(g.Filter)
		l.Lock()
		defer l.Unlock()
	}

	t, err := s.tipFor(ctx, a)
	if err != nil {
		return nil, err
	}
	if g := a.Guard; g != nil {
		actual, err := s.guardPosition(ctx, a, t)
		if err != nil {
			return nil, err
		}
		if actual != g.LastPosition {
			return nil, &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: actual}
		}
	}

	recs := make([]eventstore.Record, len(a.Events))
	data := make([]esdbclient.EventData, len(a.Events))
	prev := t.hash
	for i, in := range a.Events {
		ev := proto.Clone(in).(*billingv1.Event)
		if err := eventstore.Seal(ev, a.Stream, a.ExpectedVersion+uint64(i)+1, prev); err != nil {
			return nil, err
		}
		prev = ev.GetHash()
		if data[i], err = encodeEvent(ev); err != nil {
			return nil, err
		}
		recs[i] = eventstore.Record{Event: ev}
	}

	res, err := s.client.AppendToStream(ctx, s.names.server(a.Stream),
		esdbclient.AppendToStreamOptions{ExpectedRevision: expectedRevision(a.ExpectedVersion)}, data...)
	if err != nil {
		if isWrongExpectedVersion(err) {
			return nil, s.conflict(ctx, a, err)
		}
		return nil, fmt.Errorf("esdb: append to %s: %w", a.Stream, err)
	}
	if err := s.positions(ctx, a, res, data, recs); err != nil {
		return nil, err
	}
	last := recs[len(recs)-1]
	s.remember(a.Stream, tip{version: last.Event.GetStreamVersion(), position: last.Position, hash: last.Event.GetHash()})
	return recs, nil
}

// tipFor returns the event at the append's expected version, or
// *eventstore.ConflictError when that is not the stream's newest version
// (as far as a read can tell: the server's expected revision decides).
// Without a guard, version 0 needs no read (the server checks that the
// stream does not exist) and a cached event at that version is trusted (the
// server rejects the append if the stream has moved on). Under a guard the
// stream's newest event is read, unless the cached event at that version is
// at the guard's position.
func (s *Store) tipFor(ctx context.Context, a eventstore.StreamAppend) (tip, error) {
	v := a.ExpectedVersion
	if v == 0 && a.Guard == nil {
		return tip{}, nil
	}
	s.mu.Lock()
	t, ok := s.tips[a.Stream]
	s.mu.Unlock()
	if ok && t.version == v && (a.Guard == nil || t.position == a.Guard.LastPosition) {
		return t, nil
	}
	t, err := s.readTip(ctx, a.Stream)
	if err != nil {
		return tip{}, err
	}
	if t.version > 0 {
		s.remember(a.Stream, t)
	}
	if t.version != v {
		return tip{}, &eventstore.ConflictError{Stream: a.Stream, Expected: v, Actual: t.version}
	}
	return t, nil
}

// guardPosition is the newest position of the guard's family before the
// append: for a filter without wildcards (which then names the stream
// itself) the position of the stream's newest event t, which the expected
// revision makes exact; for a wildcard filter the newest matching position,
// read under the filter's lock (InProcessGuards).
func (s *Store) guardPosition(ctx context.Context, a eventstore.StreamAppend, t tip) (uint64, error) {
	if !hasWildcard(a.Guard.Filter) {
		return t.position, nil
	}
	return s.LastPositionMatching(ctx, a.Guard.Filter)
}

// guardLock returns the lock of a wildcard guard filter.
func (s *Store) guardLock(filter string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.guards[filter]
	if !ok {
		l = new(sync.Mutex)
		s.guards[filter] = l
	}
	return l
}

// conflict builds the error for an append the server refused with "wrong
// expected version": *eventstore.GuardConflictError for a guarded append
// (the guard's family moved), else *eventstore.ConflictError with the
// stream's version read afresh.
func (s *Store) conflict(ctx context.Context, a eventstore.StreamAppend, rejection error) error {
	t, err := s.readTip(ctx, a.Stream)
	if err != nil {
		return fmt.Errorf("esdb: append to %s refused (%v); reading its version: %w", a.Stream, rejection, err)
	}
	if t.version > 0 {
		s.remember(a.Stream, t)
	}
	if g := a.Guard; g != nil {
		actual := t.position
		if hasWildcard(g.Filter) {
			if actual, err = s.LastPositionMatching(ctx, g.Filter); err != nil {
				return fmt.Errorf("esdb: append to %s refused (%v); reading the guard's position: %w", a.Stream, rejection, err)
			}
		}
		return &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: actual}
	}
	actual := t.version
	if actual == a.ExpectedVersion {
		actual = a.ExpectedVersion + 1 // refused, yet it looks unchanged: the port's best guess
	}
	return &eventstore.ConflictError{Stream: a.Stream, Expected: a.ExpectedVersion, Actual: actual}
}

// isWrongExpectedVersion reports whether the server refused an append's
// expected revision.
func isWrongExpectedVersion(err error) bool {
	var e *esdbclient.Error
	return errors.As(err, &e) && e.IsErrorCode(esdbclient.ErrorCodeWrongExpectedVersion)
}

// positions fills the records' positions after a successful append. The
// write result carries the commit position of the last event; a single event
// takes it from there. Several events (or a result without a position, as
// when the server recognised a retried append by its event ids) are read
// back from the stream, which also checks that they are the events sent.
func (s *Store) positions(ctx context.Context, a eventstore.StreamAppend, res *esdbclient.WriteResult, data []esdbclient.EventData, recs []eventstore.Record) error {
	if len(recs) == 1 {
		if p, err := positionOf(res.CommitPosition); err == nil {
			recs[0].Position = p
			return nil
		}
	}
	rs, err := s.client.ReadStream(ctx, s.names.server(a.Stream),
		esdbclient.ReadStreamOptions{Direction: esdbclient.Forwards, From: esdbclient.Revision(a.ExpectedVersion)}, uint64(len(recs)))
	if err != nil {
		return fmt.Errorf("esdb: read back the append to %s: %w", a.Stream, err)
	}
	defer rs.Close()
	for i := range recs {
		re, err := rs.Recv()
		if err != nil {
			return fmt.Errorf("esdb: read back event %d of the append to %s: %w", i+1, a.Stream, err)
		}
		ev := re.Event
		if ev == nil || ev.EventID != data[i].EventID || ev.EventNumber != a.ExpectedVersion+uint64(i) {
			return fmt.Errorf("esdb: read back the append to %s: revision %d is not the event appended", a.Stream, a.ExpectedVersion+uint64(i))
		}
		if recs[i].Position, err = positionOf(ev.Position.Commit); err != nil {
			return err
		}
	}
	return nil
}

// remember caches the event at the newest version seen of a stream.
func (s *Store) remember(stream string, t tip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.tips[stream]; ok && old.version >= t.version {
		return
	}
	if len(s.tips) >= maxCachedTips {
		clear(s.tips)
	}
	s.tips[stream] = t
}

// readTip reads a stream's newest event (zero tip when the stream does not exist).
func (s *Store) readTip(ctx context.Context, stream string) (tip, error) {
	rs, err := s.client.ReadStream(ctx, s.names.server(stream),
		esdbclient.ReadStreamOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
	if isNotFound(err) {
		return tip{}, nil
	}
	if err != nil {
		return tip{}, fmt.Errorf("esdb: read the newest event of %s: %w", stream, err)
	}
	defer rs.Close()
	re, err := rs.Recv()
	switch {
	case isNotFound(err) || errors.Is(err, io.EOF):
		return tip{}, nil
	case err != nil:
		return tip{}, fmt.Errorf("esdb: read the newest event of %s: %w", stream, err)
	}
	rec, err := s.record(stream, re.Event)
	if err != nil {
		return tip{}, err
	}
	return tip{version: rec.Event.GetStreamVersion(), position: rec.Position, hash: rec.Event.GetHash()}, nil
}

// record decodes an event read from ledger stream stream.
func (s *Store) record(stream string, ev *esdbclient.RecordedEvent) (eventstore.Record, error) {
	if ev == nil {
		return eventstore.Record{}, fmt.Errorf("%w: %s: a link or an empty event", ErrForeignEvent, stream)
	}
	pos, err := positionOf(ev.Position.Commit)
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("%s at revision %d: %w", stream, ev.EventNumber, err)
	}
	return decodeEvent(ev.Data, stream, ev.EventNumber, pos)
}

func isNotFound(err error) bool {
	var e *esdbclient.Error
	return errors.As(err, &e) && e.IsErrorCode(esdbclient.ErrorCodeResourceNotFound)
}

// ReadStream implements eventstore.Store, reading the stream forwards in
// batches of readBatch events.
func (s *Store) ReadStream(ctx context.Context, stream string) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	var out []eventstore.Record
	for {
		got, err := s.readStreamBatch(ctx, stream, uint64(len(out)), &out)
		if err != nil {
			return nil, err
		}
		if got < readBatch {
			return out, nil
		}
	}
}

// readStreamBatch appends to out up to readBatch events of stream from
// revision from, and returns how many it read. It reads until the server ends
// the batch (io.EOF), so a batch cut short by an error is an error, not the
// end of the stream.
func (s *Store) readStreamBatch(ctx context.Context, stream string, from uint64, out *[]eventstore.Record) (int, error) {
	rs, err := s.client.ReadStream(ctx, s.names.server(stream),
		esdbclient.ReadStreamOptions{Direction: esdbclient.Forwards, From: esdbclient.Revision(from)}, readBatch)
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("esdb: read %s: %w", stream, err)
	}
	defer rs.Close()
	got := 0
	for {
		re, err := rs.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return got, nil
		case isNotFound(err):
			return got, nil
		case err != nil:
			return 0, fmt.Errorf("esdb: read %s from revision %d: %w", stream, from, err)
		}
		rec, err := s.record(stream, re.Event)
		if err != nil {
			return 0, err
		}
		if want := from + uint64(got) + 1; rec.Event.GetStreamVersion() != want {
			return 0, fmt.Errorf("%w: %s: version %d where %d was expected", ErrForeignEvent, stream, rec.Event.GetStreamVersion(), want)
		}
		*out = append(*out, rec)
		got++
	}
}

// ReadAll implements eventstore.Store with a filtered subscription to $all
// from the position after from, ended at the store's last position at the
// time of the call.
func (s *Store) ReadAll(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	f, err := newServerFilter(s.names, filter)
	if err != nil {
		return err
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	if last <= from {
		return nil
	}
	_, err = s.follow(ctx, from, f, last, fn)
	return err
}

// Subscribe implements eventstore.Store with a filtered subscription to $all.
// When the server drops the subscription (a leader change, a slow consumer),
// it subscribes again after the last position delivered, so fn sees every
// event once; it gives up after resubscribeLimit drops in a row without
// progress.
func (s *Store) Subscribe(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	f, err := newServerFilter(s.names, filter)
	if err != nil {
		return err
	}
	failures := 0
	for {
		next, err := s.follow(ctx, from, f, 0, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var dropped *droppedError
		if !errors.As(err, &dropped) {
			return err
		}
		if next > from {
			failures = 0
		}
		failures++
		if failures > resubscribeLimit {
			return fmt.Errorf("esdb: subscription dropped %d times in a row: %w", failures, err)
		}
		from = next
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(failures) * 100 * time.Millisecond):
		}
	}
}

// droppedError is a subscription the server or the connection ended.
type droppedError struct{ err error }

func (e *droppedError) Error() string { return fmt.Sprintf("esdb: subscription dropped: %v", e.err) }
func (e *droppedError) Unwrap() error { return e.err }

// follow delivers, in order, the ledger events matching f after position
// from, through a subscription to $all with f as its server-side filter. With
// bound > 0 it stops after the event at bound, at the first event or
// checkpoint beyond it, or when the subscription catches up with the live end
// of $all (which is at or after bound); with bound 0 it runs until ctx ends,
// fn fails, or the subscription drops (*droppedError). It returns the last
// position it delivered or passed (from, if none).
func (s *Store) follow(ctx context.Context, from uint64, f serverFilter, bound uint64, fn func(eventstore.Record) error) (uint64, error) {
	opts := esdbclient.SubscribeToAllOptions{From: esdbclient.Start{}, Filter: f.sub, MaxSearchWindow: searchWindow, CheckpointInterval: 1}
	if from > 0 {
		opts.From = esdbclient.Position{Commit: from, Prepare: from}
	}
	sub, err := s.client.SubscribeToAll(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return from, ctx.Err()
		}
		return from, &droppedError{err: fmt.Errorf("subscribe to $all from %d: %w", from, err)}
	}
	defer sub.Close()
	done := from
	for {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			if ctx.Err() != nil {
				return done, ctx.Err()
			}
			return done, &droppedError{err: msg.SubscriptionDropped.Error}
		case msg.CaughtUp != nil:
			if bound > 0 {
				return done, nil
			}
		case msg.CheckPointReached != nil:
			// Everything before the checkpoint has been searched; the event at
			// it, if any, may still come, so only a checkpoint beyond bound ends.
			if bound > 0 && msg.CheckPointReached.Commit > bound {
				return done, nil
			}
		case msg.EventAppeared != nil:
			ev := msg.EventAppeared.Event
			if ev == nil {
				continue // a link whose event is gone; the adapter writes none
			}
			pos := ev.Position.Commit
			if msg.EventAppeared.Commit != nil {
				pos = *msg.EventAppeared.Commit
			}
			if pos, err = positionOf(pos); err != nil {
				return done, fmt.Errorf("%s at revision %d: %w", ev.StreamID, ev.EventNumber, err)
			}
			if pos <= from {
				continue
			}
			if bound > 0 && pos > bound {
				return done, nil
			}
			if stream, ok := f.match(s.names, ev.StreamID); ok {
				rec, err := decodeEvent(ev.Data, stream, ev.EventNumber, pos)
				if err != nil {
					return done, err
				}
				if err := fn(rec); err != nil {
					return done, err
				}
			}
			done = pos
			if bound > 0 && pos == bound {
				return done, nil
			}
		}
	}
}

// LastPosition implements eventstore.Store: the position of the newest
// ledger event of the store's namespace in $all.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	return s.LastPositionMatching(ctx, "")
}

// LastPositionMatching implements eventstore.Store. For a filter without
// wildcards (one stream) it reads that stream's newest event. Otherwise it
// reads $all backwards, newest first, for up to backScan events, and if none
// of them matches, asks the server to search the older part with a filtered
// subscription from the start, keeping the last match: the cost grows with
// the distance from the end of $all to the newest match, and is paid by the
// server when that distance is large.
func (s *Store) LastPositionMatching(ctx context.Context, filter string) (uint64, error) {
	f, err := newServerFilter(s.names, filter)
	if err != nil {
		return 0, err
	}
	if f.filter != "" && !hasWildcard(f.filter) {
		t, err := s.readTip(ctx, f.filter)
		return t.position, err
	}
	found, oldest, err := s.scanBack(ctx, f)
	if err != nil || found > 0 || oldest <= 1 {
		return found, err
	}
	var last uint64
	_, err = s.follow(ctx, 0, f, oldest-1, func(r eventstore.Record) error {
		if r.Position < oldest {
			last = r.Position
		}
		return nil
	})
	return last, err
}

// scanBack reads $all backwards from its end, up to backScan events, and
// returns the position of the first (newest) ledger event matching f, or 0
// with the position of the oldest event read (0 when it read all of $all).
func (s *Store) scanBack(ctx context.Context, f serverFilter) (found, oldest uint64, err error) {
	var from esdbclient.AllPosition = esdbclient.End{}
	for scanned := 0; scanned < backScan; {
		rs, err := s.client.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: from}, readBatch/4)
		if err != nil {
			return 0, 0, fmt.Errorf("esdb: read $all backwards: %w", err)
		}
		got := 0
		for {
			re, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rs.Close()
				return 0, 0, fmt.Errorf("esdb: read $all backwards: %w", err)
			}
			ev := re.Event
			if ev == nil {
				continue
			}
			pos := ev.Position.Commit
			if re.Commit != nil {
				pos = *re.Commit
			}
			if oldest != 0 && pos >= oldest {
				continue // a backwards read may start with the event it started from
			}
			got++
			scanned++
			oldest = pos
			if _, ok := f.match(s.names, ev.StreamID); ok {
				rs.Close()
				p, err := positionOf(pos)
				return p, 0, err
			}
		}
		rs.Close()
		if got == 0 {
			return 0, 0, nil // the start of $all
		}
		from = esdbclient.Position{Commit: oldest, Prepare: oldest}
	}
	return 0, oldest, nil
}
