package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Defaults applied by Open to a zero Config.
const (
	// DefaultStreamName is the JetStream stream holding every event.
	DefaultStreamName = "BILLING"
	// DefaultSubject is the subject filter of that stream.
	DefaultSubject = "billing.>"
)

const (
	// readBatch is the number of messages asked for per direct get and pull.
	readBatch = 1000
	// maxInflightBatches bounds this Store's atomic batches in flight; the
	// server allows 50 per stream across all clients.
	maxInflightBatches = 32
	// inflightRetries bounds retries of the server's "too many inflight batches".
	inflightRetries = 50
	// maxCachedTips bounds the (stream → newest version) cache; it is reset when full.
	maxCachedTips = 100_000
	// cleanupTimeout bounds deleting an ordered consumer after a read.
	cleanupTimeout = 5 * time.Second
	// numPendingHeader carries, on each message of a batched direct get, how
	// many matching messages follow it.
	numPendingHeader = "Nats-Num-Pending"
	// msgGetSubject is the JetStream API's (leader-served) message get, under
	// the default API prefix that Open's natsjs.New uses; %s is the stream.
	msgGetSubject = natsjs.DefaultAPIPrefix + "STREAM.MSG.GET.%s"
	// apiTimeout bounds a raw API request whose context has no deadline, like
	// natsjs's default timeout.
	apiTimeout = 5 * time.Second
)

// Server error codes the adapter maps.
const (
	errCodeWrongLastSeq         natsjs.ErrorCode = natsjs.JSErrCodeStreamWrongLastSequence
	errCodeWrongLastSeqConstant natsjs.ErrorCode = natsjs.JSErrCodeStreamWrongLastSequenceConstant
	errCodeTooManyInflight      natsjs.ErrorCode = jetstreamext.JSErrCodeAtomicPublishTooManyInflight
)

// Config names the JetStream stream that holds the events.
type Config struct {
	// StreamName is the JetStream stream; "" means DefaultStreamName.
	StreamName string
	// Subjects the stream captures; empty means [DefaultSubject]. Every event
	// store stream name must match one of them.
	Subjects []string
	// Replicas is the stream's replication factor: 1 (the default, embedded
	// server) or 3 (cluster mode).
	Replicas int
}

// Store is the JetStream eventstore.Store. It is safe for concurrent use; it
// does not own the NATS connection.
type Store struct {
	js       natsjs.JetStream
	stream   natsjs.Stream
	name     string
	subjects []string
	// batchSlots limits this Store's atomic batches in flight.
	batchSlots chan struct{}

	mu sync.Mutex
	// tips caches, per stream, the newest version seen with the sequence and hash
	// of the event at that version. Versions map to sequences for ever (nothing
	// is ever deleted), so an entry is never wrong, only possibly not the newest.
	tips map[string]tip
}

// tip is the event at one version of a stream.
type tip struct {
	version uint64
	seq     uint64
	hash    []byte
}

var _ eventstore.Store = (*Store)(nil)

// Open creates the JetStream stream, or updates its configuration, and returns
// a Store on it. The stream uses file storage, atomic batch publish, direct
// gets, no limits and no discarding of old messages, and denies deleting and
// purging. It fails when the server is older than 2.12 (no atomic batches).
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	if nc == nil {
		return nil, errors.New("jetstream: Open needs a NATS connection")
	}
	if cfg.StreamName == "" {
		cfg.StreamName = DefaultStreamName
	}
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = []string{DefaultSubject}
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	st, err := js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{
		Name:               cfg.StreamName,
		Description:        "billing ledger events, one subject per aggregate stream (eventstore/jetstream)",
		Subjects:           cfg.Subjects,
		Storage:            natsjs.FileStorage,
		Replicas:           cfg.Replicas,
		Retention:          natsjs.LimitsPolicy,
		Discard:            natsjs.DiscardNew,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         -1,
		AllowAtomicPublish: true,
		AllowDirect:        true,
		DenyDelete:         true,
		DenyPurge:          true,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create or update stream %s: %w", cfg.StreamName, err)
	}
	if info := st.CachedInfo(); info == nil || !info.Config.AllowAtomicPublish || !info.Config.AllowDirect {
		return nil, fmt.Errorf("jetstream: stream %s lacks atomic batch publish or direct get: nats-server 2.12 or newer is required", cfg.StreamName)
	}
	return &Store{
		js:         js,
		stream:     st,
		name:       cfg.StreamName,
		subjects:   slices.Clone(cfg.Subjects),
		batchSlots: make(chan struct{}, maxInflightBatches),
		tips:       make(map[string]tip),
	}, nil
}

// Append implements eventstore.Store; see the package comment for how expected
// versions become JetStream expected subject sequences and how several events
// are written as one atomic batch.
func (s *Store) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	if err := eventstore.CheckAppend(appends); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, nil
	}
	for _, a := range appends {
		if !s.captures(a.Stream) {
			return nil, fmt.Errorf("%w: %s is outside the subjects %v of JetStream stream %s", eventstore.ErrInvalidStream, a.Stream, s.subjects, s.name)
		}
	}

	var (
		msgs []*nats.Msg
		recs []eventstore.Record
	)
	for _, a := range appends {
		var (
			t   tip
			err error
		)
		if a.Guard != nil {
			t, err = s.guardedTipAt(ctx, a.Stream, a.ExpectedVersion, a.Guard.LastPosition)
		} else {
			t, err = s.tipAt(ctx, a.Stream, a.ExpectedVersion)
		}
		if err != nil {
			return nil, err
		}
		prev := t.hash
		for i, in := range a.Events {
			ev := proto.Clone(in).(*billingv1.Event)
			if err := eventstore.Seal(ev, a.Stream, a.ExpectedVersion+uint64(i)+1, prev); err != nil {
				return nil, err
			}
			prev = ev.GetHash()
			data, err := proto.Marshal(ev)
			if err != nil {
				return nil, fmt.Errorf("jetstream: encode event: %w", err)
			}
			m := nats.NewMsg(a.Stream)
			m.Data = data
			switch {
			case i > 0:
				// Only the first message of a stream: the server refuses the header
				// on a subject already written earlier in the same batch.
			case a.Guard != nil:
				// The guard instead of the stream's own check: the server compares
				// the sequence with the newest message on any subject matching the
				// filter, this one included.
				m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(a.Guard.LastPosition, 10))
				m.Header.Set(natsjs.ExpectedLastSubjSeqSubjHeader, a.Guard.Filter)
			default:
				m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(t.seq, 10))
			}
			msgs = append(msgs, m)
			recs = append(recs, eventstore.Record{Event: ev})
		}
	}

	first, err := s.publish(ctx, msgs)
	if err != nil {
		if isWrongLastSequence(err) {
			return nil, s.conflict(ctx, appends, err)
		}
		return nil, fmt.Errorf("jetstream: append: %w", err)
	}
	for i := range recs {
		recs[i].Position = first + uint64(i)
	}
	s.remember(recs)
	return recs, nil
}

// captures reports whether the JetStream stream's subjects include stream.
func (s *Store) captures(stream string) bool {
	for _, f := range s.subjects {
		if eventstore.MatchFilter(f, stream) {
			return true
		}
	}
	return false
}

// tipAt returns the sequence and hash of the event at version v of stream
// (zero values for v = 0), or *eventstore.ConflictError when the stream's
// newest version is not v.
func (s *Store) tipAt(ctx context.Context, stream string, v uint64) (tip, error) {
	if v == 0 {
		return tip{}, nil // the server checks that the subject has no message
	}
	s.mu.Lock()
	t, ok := s.tips[stream]
	s.mu.Unlock()
	if ok && t.version == v {
		return t, nil
	}
	t, err := s.lastOf(ctx, stream)
	if err != nil {
		return tip{}, err
	}
	if t.version != v {
		return tip{}, &eventstore.ConflictError{Stream: stream, Expected: v, Actual: t.version}
	}
	s.rememberTip(stream, t)
	return t, nil
}

// guardedTipAt is tipAt for a stream appended under a guard with last
// position p. The server checks only the guard: that no message on any subject
// matching its filter, this stream's included, is newer than p. So version v
// is right if it is the stream's newest version among the messages up to p,
// and those never change once p is written. This is proven without a read when
// both are 0 (nothing matches, so the stream is empty) or when the cached event
// at version v is the one at p; otherwise the stream's newest event is read
// from the stream leader, which has stored p, since p was acknowledged or
// read. A version other than v is *eventstore.ConflictError, as in tipAt.
func (s *Store) guardedTipAt(ctx context.Context, stream string, v, p uint64) (tip, error) {
	if v == 0 && p == 0 {
		return tip{}, nil
	}
	s.mu.Lock()
	t, ok := s.tips[stream]
	s.mu.Unlock()
	if ok && t.version == v && t.seq == p {
		return t, nil
	}
	t, err := s.leaderLastOf(ctx, stream)
	if err != nil {
		return tip{}, err
	}
	if t.version != v {
		if t.version > 0 {
			s.rememberTip(stream, t)
		}
		return tip{}, &eventstore.ConflictError{Stream: stream, Expected: v, Actual: t.version}
	}
	if v > 0 {
		s.rememberTip(stream, t)
	}
	return t, nil
}

// leaderLastOf is lastOf answered by the stream leader (see getLast).
func (s *Store) leaderLastOf(ctx context.Context, stream string) (tip, error) {
	msg, err := s.getLast(ctx, stream)
	if err != nil || msg == nil {
		return tip{}, err
	}
	var ev billingv1.Event
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		return tip{}, fmt.Errorf("jetstream: decode event at sequence %d: %w", msg.Sequence, err)
	}
	if ev.GetStream() != stream {
		return tip{}, fmt.Errorf("jetstream: event at sequence %d names stream %q, not %s", msg.Sequence, ev.GetStream(), stream)
	}
	return tip{version: ev.GetStreamVersion(), seq: msg.Sequence, hash: ev.GetHash()}, nil
}

// storedMsg is the message of a JetStream API message get response.
type storedMsg struct {
	Subject  string `json:"subject"`
	Sequence uint64 `json:"seq"`
	Data     []byte `json:"data"`
}

// getLast returns the newest message on any subject matching filter (a
// subject, or a filter with wildcards), or nil when there is none. It uses the
// JetStream API's message get ($JS.API.STREAM.MSG.GET) rather than a direct
// get: it is answered by the stream leader, not by a replica that may lag, and
// it looks the message up with the same store function (LoadLastMsg) as the
// server's check of Nats-Expected-Last-Subject-Sequence-Subject, which
// supports wildcards. One request; the server finds the newest matching
// message from its per-subject index, at a cost that grows with the number of
// matching subjects, not with the number of messages.
func (s *Store) getLast(ctx context.Context, filter string) (*storedMsg, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{filter})
	if err != nil {
		return nil, fmt.Errorf("jetstream: encode message get: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	reply, err := s.js.Conn().RequestWithContext(ctx, fmt.Sprintf(msgGetSubject, s.name), req)
	if err != nil {
		return nil, fmt.Errorf("jetstream: last message on %s: %w", filter, err)
	}
	var resp struct {
		Error   *natsjs.APIError `json:"error"`
		Message *storedMsg       `json:"message"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("jetstream: last message on %s: decode response: %w", filter, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, fmt.Errorf("jetstream: last message on %s: %w", filter, resp.Error)
	case resp.Message == nil:
		return nil, fmt.Errorf("jetstream: last message on %s: empty response", filter)
	}
	return resp.Message, nil
}

// lastOf reads the newest event of stream with a direct get; version 0 when
// the stream has none.
func (s *Store) lastOf(ctx context.Context, stream string) (tip, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, stream)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return tip{}, nil
	}
	if err != nil {
		return tip{}, fmt.Errorf("jetstream: last event of %s: %w", stream, err)
	}
	var ev billingv1.Event
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		return tip{}, fmt.Errorf("jetstream: decode event at sequence %d: %w", msg.Sequence, err)
	}
	return tip{version: ev.GetStreamVersion(), seq: msg.Sequence, hash: ev.GetHash()}, nil
}

// remember caches the newest appended event of each stream in recs.
func (s *Store) remember(recs []eventstore.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.rememberTipLocked(r.Event.GetStream(), tip{version: r.Event.GetStreamVersion(), seq: r.Position, hash: r.Event.GetHash()})
	}
}

func (s *Store) rememberTip(stream string, t tip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rememberTipLocked(stream, t)
}

func (s *Store) rememberTipLocked(stream string, t tip) {
	if old, ok := s.tips[stream]; ok && old.version >= t.version {
		return
	}
	if len(s.tips) >= maxCachedTips {
		clear(s.tips)
	}
	s.tips[stream] = t
}

// publish writes msgs all or nothing and returns the sequence of the first.
func (s *Store) publish(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 1 {
		ack, err := s.js.PublishMsg(ctx, msgs[0])
		if err != nil {
			return 0, err
		}
		if ack.Stream != s.name {
			return 0, fmt.Errorf("jetstream: subject %s was stored in stream %s, not %s", msgs[0].Subject, ack.Stream, s.name)
		}
		return ack.Sequence, nil
	}

	select {
	case s.batchSlots <- struct{}{}:
		defer func() { <-s.batchSlots }()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	for attempt := 0; ; attempt++ {
		ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs)
		if err == nil {
			if ack.Stream != s.name || ack.BatchSize != uint64(len(msgs)) || ack.Sequence < uint64(len(msgs)) {
				return 0, fmt.Errorf("jetstream: unexpected batch ack %+v for %d messages", *ack, len(msgs))
			}
			return ack.Sequence - uint64(len(msgs)) + 1, nil
		}
		// "Too many inflight" rejects the batch's first message: nothing is
		// staged, so sending it again under a new batch id is safe.
		if !hasCode(err, errCodeTooManyInflight) || attempt == inflightRetries {
			return 0, err
		}
		select {
		case <-time.After(time.Duration(attempt+1) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// conflict builds the error for an append the server rejected: for the first
// StreamAppend whose condition no longer holds, *eventstore.GuardConflictError
// if it has a guard (the server checked the guard, not the version), else
// *eventstore.ConflictError.
func (s *Store) conflict(ctx context.Context, appends []eventstore.StreamAppend, rejection error) error {
	for _, a := range appends {
		if g := a.Guard; g != nil {
			actual, err := s.LastPositionMatching(ctx, g.Filter)
			if err != nil {
				return fmt.Errorf("jetstream: append rejected (%v); reading the guard's actual position: %w", rejection, err)
			}
			if actual != g.LastPosition {
				return &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: actual}
			}
			continue
		}
		t, err := s.lastOf(ctx, a.Stream)
		if err != nil {
			return fmt.Errorf("jetstream: append rejected (%v); reading the actual version: %w", rejection, err)
		}
		if t.version != a.ExpectedVersion {
			if t.version > 0 {
				s.rememberTip(a.Stream, t)
			}
			return &eventstore.ConflictError{Stream: a.Stream, Expected: a.ExpectedVersion, Actual: t.version}
		}
	}
	// Every condition still looks as expected: the competing write is in flight
	// on a cluster, or this server's replica lags. Report the first guard (the
	// widest condition), else the first stream, with the best guess the port
	// allows.
	for _, a := range appends {
		if g := a.Guard; g != nil {
			return &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: g.LastPosition}
		}
	}
	a := appends[0]
	return &eventstore.ConflictError{Stream: a.Stream, Expected: a.ExpectedVersion, Actual: a.ExpectedVersion + 1}
}

// isWrongLastSequence reports whether the server refused an expected last
// (subject) sequence.
func isWrongLastSequence(err error) bool {
	return hasCode(err, errCodeWrongLastSeq) || hasCode(err, errCodeWrongLastSeqConstant)
}

func hasCode(err error, code natsjs.ErrorCode) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// ReadStream implements eventstore.Store with batched direct gets on the
// stream's subject.
func (s *Store) ReadStream(ctx context.Context, stream string) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	return s.readStreamFrom(ctx, stream, 1)
}

// ReadStreamAfter implements eventstore.TailReader: the stream's messages
// after last's stream sequence.
func (s *Store) ReadStreamAfter(ctx context.Context, stream string, last eventstore.Record) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	if last.Position == 0 || last.Event.GetStream() != stream {
		return nil, fmt.Errorf("jetstream: read %s after a record of %q at %d", stream, last.Event.GetStream(), last.Position)
	}
	recs, err := s.readStreamFrom(ctx, stream, last.Position+1)
	if err == nil && len(recs) > 0 && recs[0].Event.GetStreamVersion() != last.Event.GetStreamVersion()+1 {
		return nil, fmt.Errorf("jetstream: %s after version %d continues with version %d", stream, last.Event.GetStreamVersion(), recs[0].Event.GetStreamVersion())
	}
	return recs, err
}

// readStreamFrom reads the stream's messages from stream sequence next on.
func (s *Store) readStreamFrom(ctx context.Context, stream string, next uint64) ([]eventstore.Record, error) {
	var out []eventstore.Record
	for {
		msgs, err := jetstreamext.GetBatch(ctx, s.js, s.name, readBatch,
			jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(stream))
		if err != nil {
			return nil, fmt.Errorf("jetstream: read %s: %w", stream, err)
		}
		got, pending, empty := 0, uint64(0), false
		for msg, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				empty = true
				break
			}
			if err != nil {
				return nil, fmt.Errorf("jetstream: read %s: %w", stream, err)
			}
			rec, err := decode(msg.Data, msg.Sequence)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
			got++
			next = msg.Sequence + 1
			if pending, err = strconv.ParseUint(msg.Header.Get(numPendingHeader), 10, 64); err != nil {
				return nil, fmt.Errorf("jetstream: read %s: bad %s header: %w", stream, numPendingHeader, err)
			}
		}
		if got == 0 && !empty {
			// GetBatch ends its iterator silently when the request times out,
			// as it does after the server's end-of-batch marker: with nothing
			// received and no "no messages" answer, the read did not happen,
			// and taking it for an empty stream would decide on wrong state
			// (found by services/clustertest during a leader election).
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("jetstream: read %s: %w", stream, err)
			}
			return nil, fmt.Errorf("jetstream: read %s: no answer from the server", stream)
		}
		if got == 0 || pending == 0 {
			return out, nil
		}
	}
}

// ReadAll implements eventstore.Store with an ordered consumer that stops at
// the newest matching message at the time of the call, as the stream leader
// knows it (the stream's last sequence without a filter, else
// LastPositionMatching), and never earlier: in a cluster the consumer may run
// on a replica that lags the leader, so its count of pending messages can miss
// the newest ones (TestReadAllInClusterIsComplete).
func (s *Store) ReadAll(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	var (
		last uint64
		err  error
	)
	if filter == "" || filter == ">" {
		last, err = s.LastPosition(ctx)
	} else {
		last, err = s.LastPositionMatching(ctx, filter)
	}
	if err != nil {
		return err
	}
	if last <= from {
		return nil
	}
	return s.consume(ctx, from, filter, last, fn)
}

// Subscribe implements eventstore.Store with an ordered consumer.
func (s *Store) Subscribe(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	return s.consume(ctx, from, filter, 0, fn)
}

// consume delivers the events after from that match filter, in order, through
// an ordered consumer; it stops after sequence last (which must be a matching
// message, so that it comes), or never when last is 0.
func (s *Store) consume(ctx context.Context, from uint64, filter string, last uint64, fn func(eventstore.Record) error) error {
	cfg := natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:   from + 1,
	}
	if filter != "" && filter != ">" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := s.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("jetstream: consumer from %d on %q: %w", from, filter, err)
	}
	it, err := cons.Messages(natsjs.PullMaxMessages(readBatch))
	if err != nil {
		return fmt.Errorf("jetstream: consumer from %d on %q: %w", from, filter, err)
	}
	defer func() {
		it.Stop()
		// An ordered consumer is ephemeral and in memory; delete it now rather
		// than leaving it to the server's inactivity timeout.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = s.js.DeleteConsumer(dctx, s.name, info.Name)
			cancel()
		}
	}()
	for {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("jetstream: consume from %d on %q: %w", from, filter, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream: message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if last > 0 && seq > last {
			return nil
		}
		rec, err := decode(msg.Data(), seq)
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		if last > 0 && seq >= last {
			return nil
		}
	}
}

// LastPosition implements eventstore.Store: the stream's last sequence.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// LastPositionMatching implements eventstore.Store: the sequence of the newest
// message on a subject matching filter, read from the stream leader (getLast).
func (s *Store) LastPositionMatching(ctx context.Context, filter string) (uint64, error) {
	if filter == "" {
		filter = ">"
	}
	if err := eventstore.ValidateFilter(filter); err != nil {
		return 0, err
	}
	msg, err := s.getLast(ctx, filter)
	if err != nil || msg == nil {
		return 0, err
	}
	return msg.Sequence, nil
}

func decode(data []byte, seq uint64) (eventstore.Record, error) {
	ev := new(billingv1.Event)
	if err := proto.Unmarshal(data, ev); err != nil {
		return eventstore.Record{}, fmt.Errorf("jetstream: decode event at sequence %d: %w", seq, err)
	}
	return eventstore.Record{Event: ev, Position: seq}, nil
}
