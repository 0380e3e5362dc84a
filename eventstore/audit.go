package eventstore

import (
	"bytes"
	"context"
	"fmt"
)

// MaxAuditBreaks bounds AuditReport.Breaks; AuditReport.BrokenStreams still
// counts every broken stream.
const MaxAuditBreaks = 100

// auditProgressEvery is how many events VerifyAll reads between progress calls.
const auditProgressEvery = 256

// AuditReport is the result of VerifyAll.
type AuditReport struct {
	// Streams is the number of distinct streams read.
	Streams uint64
	// Events is the number of events read.
	Events uint64
	// BrokenStreams is the number of streams with a broken chain (it can exceed
	// len(Breaks), which is capped at MaxAuditBreaks).
	BrokenStreams uint64
	// Breaks holds the first break of each broken stream, in the order they were
	// found, at most MaxAuditBreaks of them.
	Breaks []*ChainError
}

// Intact reports whether no break was found.
func (r *AuditReport) Intact() bool { return r.BrokenStreams == 0 }

// auditTip is what VerifyAll keeps per stream: the last version and hash seen,
// and whether the stream is already reported broken.
type auditTip struct {
	version uint64
	hash    []byte
	broken  bool
}

// VerifyAll walks the hash chain of every stream matching filter ("" =
// everything) in one ReadAll pass from the start of the log. Each event must
// carry version = previous + 1 (the first 1), prev_hash = the previous event's
// hash (empty for version 1), and a hash that recomputes (ComputeHash). Only the
// first break of each stream is reported: after it, the rest of that stream is
// counted but not checked. Memory is O(streams): per stream only the last
// version and hash are kept.
//
// ReadAll does not say which stream an event was read from, so the event's own
// stream field decides which chain it belongs to. That is sound because every
// adapter maps streams one to one onto its storage (the JetStream adapter
// stores each event on the subject named by its stream), so an event forged on
// a stream's subject either names that stream, and is checked against its
// chain, or names another one, and then breaks that other chain.
//
// progress, when not nil, is called now and then with the number of events
// read so far, and once at the end. A read error is returned with a nil report.
func VerifyAll(ctx context.Context, store Store, filter string, progress func(events uint64)) (*AuditReport, error) {
	if filter != "" {
		if err := ValidateFilter(filter); err != nil {
			return nil, err
		}
	}
	rep := &AuditReport{}
	tips := map[string]*auditTip{}
	brk := func(t *auditTip, stream string, version uint64, reason string) {
		t.broken = true
		t.hash = nil
		rep.BrokenStreams++
		if len(rep.Breaks) < MaxAuditBreaks {
			rep.Breaks = append(rep.Breaks, &ChainError{Stream: stream, Version: version, Reason: reason})
		}
	}
	err := store.ReadAll(ctx, 0, filter, func(r Record) error {
		rep.Events++
		if progress != nil && rep.Events%auditProgressEvery == 0 {
			progress(rep.Events)
		}
		ev := r.Event
		stream := ev.GetStream()
		t, ok := tips[stream]
		if !ok {
			t = &auditTip{}
			tips[stream] = t
			rep.Streams++
		}
		if t.broken {
			return nil
		}
		want := t.version + 1
		if stream == "" {
			brk(t, stream, want, fmt.Sprintf("event %q at position %d names no stream", ev.GetEventId(), r.Position))
			return nil
		}
		if ev.GetStreamVersion() != want {
			brk(t, stream, want, fmt.Sprintf("found version %d at position %d", ev.GetStreamVersion(), r.Position))
			return nil
		}
		if !bytes.Equal(ev.GetPrevHash(), t.hash) {
			brk(t, stream, want, "prev_hash does not match the previous event's hash")
			return nil
		}
		h, err := ComputeHash(ev)
		if err != nil {
			brk(t, stream, want, err.Error())
			return nil
		}
		if !bytes.Equal(h, ev.GetHash()) {
			brk(t, stream, want, "hash does not match the event's content")
			return nil
		}
		t.version = want
		t.hash = h // freshly computed, so nothing of the event stays alive
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eventstore: audit read: %w", err)
	}
	if progress != nil {
		progress(rep.Events)
	}
	return rep, nil
}
