package eventstore

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Seal places ev into its stream's hash chain: it sets stream, stream_version and
// prev_hash, then hash = SHA-256(prev_hash || deterministic encoding of ev with
// hash empty). Adapters call it for every event they append, so all adapters
// produce the same chain for the same events.
func Seal(ev *billingv1.Event, stream string, version uint64, prevHash []byte) error {
	ev.Stream = stream
	ev.StreamVersion = version
	ev.PrevHash = append([]byte(nil), prevHash...)
	h, err := ComputeHash(ev)
	if err != nil {
		return err
	}
	ev.Hash = h
	return nil
}

// ComputeHash returns SHA-256(prev_hash || deterministic encoding of ev with hash
// empty). It does not modify ev.
func ComputeHash(ev *billingv1.Event) ([]byte, error) {
	c := proto.Clone(ev).(*billingv1.Event)
	c.Hash = nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("eventstore: encode for hash: %w", err)
	}
	h := sha256.New()
	h.Write(ev.GetPrevHash())
	h.Write(b)
	return h.Sum(nil), nil
}

// ChainError describes the first broken link found in a stream.
type ChainError struct {
	// Stream with the break.
	Stream string
	// Version of the first event that does not link or does not hash.
	Version uint64
	// Reason names what is wrong.
	Reason string
}

// Error implements error.
func (e *ChainError) Error() string {
	return fmt.Sprintf("hash chain broken in %s at version %d: %s", e.Stream, e.Version, e.Reason)
}

// VerifyChain checks one stream's records, in version order: versions run 1..n
// without gaps, each prev_hash equals the previous hash, and each hash recomputes.
// It returns the first break as *ChainError, or nil.
func VerifyChain(stream string, recs []Record) error {
	var prev []byte
	for i, r := range recs {
		ev := r.Event
		want := uint64(i + 1)
		if ev.GetStream() != stream {
			return &ChainError{Stream: stream, Version: want, Reason: fmt.Sprintf("event names stream %q", ev.GetStream())}
		}
		if ev.GetStreamVersion() != want {
			return &ChainError{Stream: stream, Version: want, Reason: fmt.Sprintf("found version %d", ev.GetStreamVersion())}
		}
		if !bytes.Equal(ev.GetPrevHash(), prev) {
			return &ChainError{Stream: stream, Version: want, Reason: "prev_hash does not match the previous event's hash"}
		}
		h, err := ComputeHash(ev)
		if err != nil {
			return &ChainError{Stream: stream, Version: want, Reason: err.Error()}
		}
		if !bytes.Equal(h, ev.GetHash()) {
			return &ChainError{Stream: stream, Version: want, Reason: "hash does not match the event's content"}
		}
		prev = ev.GetHash()
	}
	return nil
}
