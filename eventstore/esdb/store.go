package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
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
	// GuardFamilies declares the families of streams that guards may cover
	// (eventstore.Guard filters with a wildcard, e.g. "billing.usage.*.07"):
	// every append to a stream of a declared family also writes a mark to the
	// family's guard stream, in the same atomic append, and a guarded append
	// expects the guard stream's revision. Every process writing to the store
	// must declare the same families. A guard on an undeclared family fails
	// with ErrWildcardGuard; a guard on the stream itself (no wildcard) needs
	// no declaration. See the package comment.
	GuardFamilies []string
	// Logger receives the client library's own log lines at debug level (it
	// logs every failed call, cancellations included; the adapter returns
	// each failure as an error anyway). nil = no client logging.
	Logger *slog.Logger
}

// Store is the EventStoreDB eventstore.Store; see the package comment for
// what it supports. It is safe for concurrent use.
type Store struct {
	client   *kurrentdb.Client
	owned    bool
	names    names
	declared []string

	mu sync.Mutex
	// tips caches, per stream, the newest version seen with the position and
	// hash of the event at that version (never wrong, possibly not the newest).
	tips map[string]tip
	// families caches, per declared family, its guard stream's length and
	// the family's newest position (never wrong for that length, possibly
	// not the newest).
	families map[string]familyTip
}

// familyTip is a family's state after the guard event at one revision.
type familyTip struct {
	// count is the number of events in the family's guard stream (0: none).
	count uint64
	// position is the newest position of any stream of the family then.
	position uint64
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
	conf, err := kurrentdb.ParseConnectionString(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("esdb: connection string: %w", err)
	}
	conf.Logger = clientLogger(cfg.Logger)
	client, err := kurrentdb.NewClient(conf)
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
func clientLogger(log *slog.Logger) kurrentdb.LoggingFunc {
	if log == nil {
		return kurrentdb.NoopLogging()
	}
	return func(level kurrentdb.LogLevel, format string, args ...any) {
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
func New(client *kurrentdb.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("esdb: New needs a client")
	}
	n, err := newNames(cfg.Namespace)
	if err != nil {
		return nil, err
	}
	fams, err := checkFamilies(cfg.GuardFamilies)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, names: n, declared: fams,
		tips: map[string]tip{}, families: map[string]familyTip{}}, nil
}

// Close closes the client when Open created it.
func (s *Store) Close() error {
	if s.owned {
		return s.client.Close()
	}
	return nil
}

// Append implements eventstore.Store; see the package comment for the
// mapping of versions, guards and positions. One stream outside every
// declared family is one EventStoreDB append; anything else (several
// streams, or a stream of a declared family, whose guard stream is written
// too) is one atomic multi-stream append.
func (s *Store) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	if err := eventstore.CheckAppend(appends); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, nil
	}
	if err := undeclaredGuard(appends, s.declared); err != nil {
		return nil, err
	}

	// The streams' own versions first: a wrong version is a *ConflictError
	// even when a guard fails too.
	tips := make([]tip, len(appends))
	for i, a := range appends {
		t, err := s.tipFor(ctx, a)
		if err != nil {
			return nil, err
		}
		tips[i] = t
	}
	expected, err := s.checkGuards(ctx, appends, tips)
	if err != nil {
		return nil, err
	}

	recs := make([][]eventstore.Record, len(appends))
	data := make([][]kurrentdb.EventData, len(appends))
	for i, a := range appends {
		if recs[i], data[i], err = seal(a, tips[i].hash); err != nil {
			return nil, err
		}
	}
	marks := marksOf(appends, s.declared)
	if len(appends) == 1 && len(marks) == 0 {
		if err := s.appendOne(ctx, appends[0], data[0], recs[0]); err != nil {
			return nil, err
		}
	} else if err := s.appendMany(ctx, appends, marks, expected, data, recs); err != nil {
		return nil, err
	}

	var out []eventstore.Record
	for i, a := range appends {
		last := recs[i][len(recs[i])-1]
		s.remember(a.Stream, tip{version: last.Event.GetStreamVersion(), position: last.Position, hash: last.Event.GetHash()})
		out = append(out, recs[i]...)
	}
	return out, nil
}

// seal numbers and chains the events of one stream append after the hash
// prev of its expected version, and encodes them for EventStoreDB.
func seal(a eventstore.StreamAppend, prev []byte) ([]eventstore.Record, []kurrentdb.EventData, error) {
	recs := make([]eventstore.Record, len(a.Events))
	data := make([]kurrentdb.EventData, len(a.Events))
	for i, in := range a.Events {
		ev := proto.Clone(in).(*billingv1.Event)
		if err := eventstore.Seal(ev, a.Stream, a.ExpectedVersion+uint64(i)+1, prev); err != nil {
			return nil, nil, err
		}
		prev = ev.GetHash()
		var err error
		if data[i], err = encodeEvent(ev); err != nil {
			return nil, nil, err
		}
		recs[i] = eventstore.Record{Event: ev}
	}
	return recs, data, nil
}

// checkGuards checks every guard of the append against the store before it:
// a guard on the stream itself against the stream's newest event (tips), a
// guard on a declared family against the family's newest position. It
// returns, per family guarded, the guard stream revision the append must
// expect (the server's check that no append of the family came in between),
// or *eventstore.GuardConflictError.
func (s *Store) checkGuards(ctx context.Context, appends []eventstore.StreamAppend, tips []tip) (map[string]kurrentdb.StreamState, error) {
	expected := map[string]kurrentdb.StreamState{}
	checked := map[string]uint64{} // family → its newest position
	for i, a := range appends {
		g := a.Guard
		if g == nil {
			continue
		}
		if !hasWildcard(g.Filter) {
			if tips[i].position != g.LastPosition {
				return nil, &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: tips[i].position}
			}
			continue
		}
		actual, seen := checked[g.Filter]
		if !seen {
			ft, err := s.familyState(ctx, g.Filter, g.LastPosition)
			if err != nil {
				return nil, err
			}
			actual = ft.position
			checked[g.Filter] = actual
			expected[g.Filter] = kurrentdb.NoStream{}
			if ft.count > 0 {
				expected[g.Filter] = kurrentdb.Revision(ft.count - 1)
			}
		}
		if actual != g.LastPosition {
			return nil, &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: actual}
		}
	}
	return expected, nil
}

// appendOne writes one stream with EventStoreDB's single-stream append.
func (s *Store) appendOne(ctx context.Context, a eventstore.StreamAppend, data []kurrentdb.EventData, recs []eventstore.Record) error {
	res, err := s.client.AppendToStream(ctx, s.names.server(a.Stream),
		kurrentdb.AppendToStreamOptions{StreamState: expectedRevision(a.ExpectedVersion)}, data...)
	if err != nil {
		if isWrongExpectedVersion(err) {
			return s.conflict(ctx, a, err)
		}
		return fmt.Errorf("esdb: append to %s: %w", a.Stream, err)
	}
	var single uint64
	if len(recs) == 1 {
		single, _ = positionOf(res.CommitPosition)
	}
	return s.positions(ctx, a, single, data, recs)
}

// appendMany writes several streams, and the guard stream of every declared
// family among them, in one atomic multi-stream append (KurrentDB 25.1+):
// each guard stream with the revision checkGuards found for a guarded family
// (expected), else with any revision.
func (s *Store) appendMany(ctx context.Context, appends []eventstore.StreamAppend, marks []guardMark,
	expected map[string]kurrentdb.StreamState, data [][]kurrentdb.EventData, recs [][]eventstore.Record) error {
	reqs := make([]kurrentdb.AppendStreamRequest, 0, len(marks)+len(appends))
	for _, m := range marks {
		ev, err := encodeMark(m)
		if err != nil {
			return err
		}
		state, ok := expected[m.Family]
		if !ok {
			state = kurrentdb.Any{}
		}
		reqs = append(reqs, kurrentdb.AppendStreamRequest{StreamName: s.names.guardStream(m.Family),
			Events: slices.Values([]kurrentdb.EventData{ev}), ExpectedStreamState: state})
	}
	for i, a := range appends {
		reqs = append(reqs, kurrentdb.AppendStreamRequest{StreamName: s.names.server(a.Stream),
			Events: slices.Values(data[i]), ExpectedStreamState: expectedRevision(a.ExpectedVersion)})
	}
	res, err := s.client.MultiStreamAppend(ctx, slices.Values(reqs))
	if err != nil {
		return s.manyFailed(ctx, appends, err)
	}
	for i, a := range appends {
		if err := s.positions(ctx, a, 0, data[i], recs[i]); err != nil {
			return err
		}
	}
	// Each family's state after this append: its guard stream's new length
	// and the newest position this append wrote to it.
	revisions := map[string]int64{}
	for _, r := range res.Responses {
		revisions[r.Stream] = r.StreamRevision
	}
	for _, m := range marks {
		rev, ok := revisions[s.names.guardStream(m.Family)]
		if !ok || rev < 0 {
			continue // no revision in the answer: the next guarded append reads it
		}
		var newest uint64
		for i, a := range appends {
			if eventstore.MatchFilter(m.Family, a.Stream) {
				newest = max(newest, recs[i][len(recs[i])-1].Position)
			}
		}
		s.rememberFamily(m.Family, familyTip{count: uint64(rev) + 1, position: newest})
	}
	return nil
}

// manyFailed turns the failure of a multi-stream append into the port's
// error: a revision conflict on a guard stream is the family's
// *eventstore.GuardConflictError, one on a ledger stream that stream's
// conflict; a server without multi-stream appends gives ErrMultiStreamAppend.
func (s *Store) manyFailed(ctx context.Context, appends []eventstore.StreamAppend, err error) error {
	streams := make([]string, len(appends))
	for i, a := range appends {
		streams[i] = a.Stream
	}
	var ke *kurrentdb.Error
	if errors.As(err, &ke) && ke.Code() == kurrentdb.ErrorCodeUnsupportedFeature {
		return fmt.Errorf("%w (streams %v)", ErrMultiStreamAppend, streams)
	}
	var rc *kurrentdb.StreamRevisionConflictError
	if !errors.As(err, &rc) {
		return fmt.Errorf("esdb: append to %v: %w", streams, err)
	}
	if family, ok := s.names.family(rc.Stream); ok {
		for _, a := range appends {
			if g := a.Guard; g != nil && g.Filter == family {
				ft, ferr := s.familyState(ctx, family, 0)
				if ferr != nil {
					return fmt.Errorf("esdb: append refused (%v); reading the family's position: %w", err, ferr)
				}
				return &eventstore.GuardConflictError{Filter: family, Expected: g.LastPosition, Actual: ft.position}
			}
		}
		return fmt.Errorf("esdb: append to %v: the guard stream of %s refused an append at any revision: %w", streams, family, err)
	}
	for _, a := range appends {
		if s.names.server(a.Stream) == rc.Stream {
			return s.conflict(ctx, a, err)
		}
	}
	return fmt.Errorf("esdb: append to %v: %w", streams, err)
}

// tipFor returns the event at the append's expected version, or
// *eventstore.ConflictError when that is not the stream's newest version
// (as far as a read can tell: the server's expected revision decides).
// Version 0 needs no read (the server checks that the stream does not
// exist) and a cached event at that version is trusted (the server rejects
// the append if the stream has moved on), except under a guard on the stream
// itself, whose check needs the stream's newest position: then the newest
// event is read, unless the cached one is at the guard's position.
func (s *Store) tipFor(ctx context.Context, a eventstore.StreamAppend) (tip, error) {
	v := a.ExpectedVersion
	literal := a.Guard != nil && !hasWildcard(a.Guard.Filter)
	if v == 0 && !literal {
		return tip{}, nil
	}
	s.mu.Lock()
	t, ok := s.tips[a.Stream]
	s.mu.Unlock()
	if ok && t.version == v && (!literal || t.position == a.Guard.LastPosition) {
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

// familyState returns a declared family's guard stream length and newest
// position. A cached state at position want is used as it is (the server
// checks the guard stream's revision); otherwise the guard stream's newest
// mark is read, and the newest of the events it marks. A family without a
// guard stream yet is searched for in $all (events written before the family
// was declared; normally none).
func (s *Store) familyState(ctx context.Context, family string, want uint64) (familyTip, error) {
	s.mu.Lock()
	ft, ok := s.families[family]
	s.mu.Unlock()
	if ok && ft.position == want && want > 0 {
		return ft, nil
	}
	ft, err := s.readFamily(ctx, family)
	if err != nil {
		return familyTip{}, err
	}
	s.rememberFamily(family, ft)
	return ft, nil
}

// readFamily reads a family's state from the server.
func (s *Store) readFamily(ctx context.Context, family string) (familyTip, error) {
	stream := s.names.guardStream(family)
	re, err := s.readOne(ctx, stream, kurrentdb.ReadStreamOptions{Direction: kurrentdb.Backwards, From: kurrentdb.End{}})
	if err != nil {
		return familyTip{}, fmt.Errorf("esdb: read the guard stream of %s: %w", family, err)
	}
	if re == nil {
		f, err := newServerFilter(s.names, family)
		if err != nil {
			return familyTip{}, err
		}
		p, err := s.searchLast(ctx, f)
		return familyTip{position: p}, err
	}
	m, err := decodeMark(re.Data, family)
	if err != nil {
		return familyTip{}, err
	}
	ft := familyTip{count: re.EventNumber + 1}
	for _, st := range m.Streams {
		ev, err := s.readOne(ctx, s.names.server(st.Stream), kurrentdb.ReadStreamOptions{Direction: kurrentdb.Forwards, From: kurrentdb.Revision(st.Version - 1)})
		if err != nil {
			return familyTip{}, fmt.Errorf("esdb: read %s version %d, marked by the guard stream of %s: %w", st.Stream, st.Version, family, err)
		}
		if ev == nil || ev.EventNumber != st.Version-1 {
			return familyTip{}, fmt.Errorf("%w: the guard stream of %s marks %s version %d, which does not exist", ErrForeignEvent, family, st.Stream, st.Version)
		}
		rec, err := s.record(st.Stream, ev)
		if err != nil {
			return familyTip{}, err
		}
		ft.position = max(ft.position, rec.Position)
	}
	return ft, nil
}

// rememberFamily caches a family's state unless a longer guard stream is cached.
func (s *Store) rememberFamily(family string, ft familyTip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.families[family]; ok && old.count > ft.count {
		return
	}
	s.families[family] = ft
}

// conflict builds the error for an append of one stream the server refused
// for its expected revision: *eventstore.GuardConflictError under a guard on
// the stream itself (the stream moved), else *eventstore.ConflictError with
// the stream's version read afresh.
func (s *Store) conflict(ctx context.Context, a eventstore.StreamAppend, rejection error) error {
	t, err := s.readTip(ctx, a.Stream)
	if err != nil {
		return fmt.Errorf("esdb: append to %s refused (%v); reading its version: %w", a.Stream, rejection, err)
	}
	if t.version > 0 {
		s.remember(a.Stream, t)
	}
	if g := a.Guard; g != nil && !hasWildcard(g.Filter) {
		return &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: t.position}
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
	var e *kurrentdb.Error
	return errors.As(err, &e) && e.IsErrorCode(kurrentdb.ErrorCodeWrongExpectedVersion)
}

// positions fills the records' positions after a successful append of one
// stream: single, when the write result gave the position of a single event,
// else read back from the stream, which also checks that they are the events
// sent (a result without a position comes, for one, from a retried append the
// server recognised by its event ids).
func (s *Store) positions(ctx context.Context, a eventstore.StreamAppend, single uint64, data []kurrentdb.EventData, recs []eventstore.Record) error {
	if single > 0 && len(recs) == 1 {
		recs[0].Position = single
		return nil
	}
	rs, err := s.client.ReadStream(ctx, s.names.server(a.Stream),
		kurrentdb.ReadStreamOptions{Direction: kurrentdb.Forwards, From: kurrentdb.Revision(a.ExpectedVersion)}, uint64(len(recs)))
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
	re, err := s.readOne(ctx, s.names.server(stream), kurrentdb.ReadStreamOptions{Direction: kurrentdb.Backwards, From: kurrentdb.End{}})
	if err != nil || re == nil {
		if err != nil {
			err = fmt.Errorf("esdb: read the newest event of %s: %w", stream, err)
		}
		return tip{}, err
	}
	rec, err := s.record(stream, re)
	if err != nil {
		return tip{}, err
	}
	return tip{version: rec.Event.GetStreamVersion(), position: rec.Position, hash: rec.Event.GetHash()}, nil
}

// readOne reads one event of EventStoreDB stream id as opts say (nil when
// there is none there, or the stream does not exist).
func (s *Store) readOne(ctx context.Context, id string, opts kurrentdb.ReadStreamOptions) (*kurrentdb.RecordedEvent, error) {
	rs, err := s.client.ReadStream(ctx, id, opts, 1)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	re, err := rs.Recv()
	switch {
	case isNotFound(err) || errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		return nil, err
	case re.Event == nil:
		return nil, fmt.Errorf("%w: %s: a link or an empty event", ErrForeignEvent, id)
	}
	return re.Event, nil
}

// record decodes an event read from ledger stream stream.
func (s *Store) record(stream string, ev *kurrentdb.RecordedEvent) (eventstore.Record, error) {
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
	var e *kurrentdb.Error
	return errors.As(err, &e) && e.IsErrorCode(kurrentdb.ErrorCodeResourceNotFound)
}

// ReadStream implements eventstore.Store, reading the stream forwards in
// batches of readBatch events.
func (s *Store) ReadStream(ctx context.Context, stream string) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	return s.readStreamFrom(ctx, stream, 0)
}

// ReadStreamAfter implements eventstore.TailReader: the stream's events from
// the revision after last's version.
func (s *Store) ReadStreamAfter(ctx context.Context, stream string, last eventstore.Record) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	v := last.Event.GetStreamVersion()
	if v == 0 || last.Event.GetStream() != stream {
		return nil, fmt.Errorf("esdb: read %s after a record of %q at version %d", stream, last.Event.GetStream(), v)
	}
	return s.readStreamFrom(ctx, stream, v)
}

// readStreamFrom reads the stream from revision from (version from+1) to its
// end, in batches of readBatch events.
func (s *Store) readStreamFrom(ctx context.Context, stream string, from uint64) ([]eventstore.Record, error) {
	var out []eventstore.Record
	for {
		got, err := s.readStreamBatch(ctx, stream, from+uint64(len(out)), &out)
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
		kurrentdb.ReadStreamOptions{Direction: kurrentdb.Forwards, From: kurrentdb.Revision(from)}, readBatch)
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
	opts := kurrentdb.SubscribeToAllOptions{From: kurrentdb.Start{}, Filter: f.sub, MaxSearchWindow: searchWindow, CheckpointInterval: 1}
	if from > 0 {
		opts.From = kurrentdb.Position{Commit: from, Prepare: from}
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
		case msg.CaughtUp != nil || *msg == (kurrentdb.SubscriptionEvent{}):
			// Servers before 24.2 send "caught up" without a timestamp,
			// which the client hands over as an empty event.
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
// wildcards (one stream) it reads that stream's newest event; for a declared
// guard family, the newest mark of its guard stream and the events it marks.
// Otherwise it reads $all backwards, newest first, for up to backScan events, and if none
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
	if slices.Contains(s.declared, f.filter) {
		ft, err := s.familyState(ctx, f.filter, 0)
		return ft.position, err
	}
	return s.searchLast(ctx, f)
}

// searchLast is the newest position matching f, searched in $all: backwards
// from its end for up to backScan events, then, if none of them matched, by
// the server with a filtered subscription from the start, keeping the last
// match.
func (s *Store) searchLast(ctx context.Context, f serverFilter) (uint64, error) {
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
	var from kurrentdb.AllPosition = kurrentdb.End{}
	for scanned := 0; scanned < backScan; {
		rs, err := s.client.ReadAll(ctx, kurrentdb.ReadAllOptions{Direction: kurrentdb.Backwards, From: from}, readBatch/4)
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
		from = kurrentdb.Position{Commit: oldest, Prepare: oldest}
	}
	return 0, oldest, nil
}
