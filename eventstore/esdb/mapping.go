package esdb

// The pure parts of the adapter: how stream names, versions, positions,
// events and subject filters map onto EventStoreDB. No I/O here; mapping_test.go
// tests all of it without a server.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Errors of the things EventStoreDB cannot do (see the package comment).
var (
	// ErrMultiStreamAppend is returned for an Append that must write
	// several streams at once (several StreamAppends, or one stream of a
	// declared guard family, which also writes the family's guard stream)
	// when the server has no atomic multi-stream append: that needs
	// KurrentDB 25.1 or newer. Nothing is written. It wraps
	// errors.ErrUnsupported.
	ErrMultiStreamAppend = fmt.Errorf("esdb: this server has no atomic append to several streams (KurrentDB 25.1 or newer has it): %w", errors.ErrUnsupported)
	// ErrWildcardGuard is returned for a Guard whose filter has a wildcard
	// that is not one of Config.GuardFamilies: the adapter can only guard a
	// family whose every append it marks (see the package comment). Nothing
	// is written. It wraps errors.ErrUnsupported.
	ErrWildcardGuard = fmt.Errorf("esdb: a guard over a family of streams needs the family's filter in Config.GuardFamilies: %w", errors.ErrUnsupported)
	// ErrNoPosition is returned when the server sends an event without its
	// $all position: stream reads carry it from EventStoreDB 22.6 on (this
	// adapter needs 23.10 or newer).
	ErrNoPosition = errors.New("esdb: the server did not send the event's $all position (EventStoreDB 23.10 or newer is required)")
	// ErrForeignEvent is returned when a ledger stream holds an event this
	// adapter did not write: not a billing.v1.Event, or one whose stream or
	// version disagrees with where EventStoreDB keeps it.
	ErrForeignEvent = errors.New("esdb: a ledger stream holds an event that is not the ledger's")
)

// namespacePattern is what Config.Namespace may be.
var namespacePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// namespaceSeparator ends the namespace in an EventStoreDB stream name; it
// cannot occur in a ledger stream name.
const namespaceSeparator = ":"

// names maps ledger stream names to EventStoreDB stream names and back. With
// a namespace "ns", "billing.org.1" is kept in "ns:billing.org.1"; without one,
// under its own name. EventStoreDB's own streams start with '$' and are never
// ledger streams.
type names struct{ prefix string }

func newNames(namespace string) (names, error) {
	if namespace == "" {
		return names{}, nil
	}
	if !namespacePattern.MatchString(namespace) {
		return names{}, fmt.Errorf("esdb: namespace %q must be 1 to 64 letters, digits, '-' or '_'", namespace)
	}
	return names{prefix: namespace + namespaceSeparator}, nil
}

// server is the EventStoreDB stream name of a ledger stream.
func (n names) server(stream string) string { return n.prefix + stream }

// ledger is the ledger stream name kept in EventStoreDB stream id, and
// whether id is a ledger stream of this namespace at all.
func (n names) ledger(id string) (string, bool) {
	if !strings.HasPrefix(id, n.prefix) {
		return "", false
	}
	s := id[len(n.prefix):]
	if eventstore.ValidateStream(s) != nil {
		return "", false
	}
	return s, true
}

// expectedRevision maps the ledger's ExpectedVersion (the number of events
// the caller saw; 0 = the stream must not exist) to EventStoreDB's expected
// revision (the 0-based number of the stream's last event): version v > 0 is
// revision v-1.
func expectedRevision(version uint64) kurrentdb.StreamState {
	if version == 0 {
		return kurrentdb.NoStream{}
	}
	return kurrentdb.Revision(version - 1)
}

// versionOf is the ledger version of the event at EventStoreDB revision r:
// the ledger numbers a stream's events from 1, EventStoreDB from 0.
func versionOf(revision uint64) uint64 { return revision + 1 }

// positionOf checks and returns an event's $all position. The adapter's
// Position is EventStoreDB's commit position: never 0 for an event (the log
// starts with the server's own records), and math.MaxUint64 when the server
// did not send it.
func positionOf(commit uint64) (uint64, error) {
	if commit == 0 || commit == math.MaxUint64 {
		return 0, ErrNoPosition
	}
	return commit, nil
}

// eventID derives the EventStoreDB event id of a sealed event from its hash:
// a UUID version 8 (RFC 9562, "custom") holding the hash's first 122 bits.
// The hash covers the stream, the version, the previous hash and the content,
// so the id is unique per (stream, version, content), and an append retried
// with the very same events carries the same ids, which EventStoreDB
// recognises as the same write (its idempotent append).
func eventID(hash []byte) (uuid.UUID, error) {
	var u uuid.UUID
	if len(hash) < len(u) {
		return u, fmt.Errorf("esdb: event hash of %d bytes; seal the event first", len(hash))
	}
	copy(u[:], hash)
	u[6] = (u[6] & 0x0f) | 0x80 // version 8
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 9562 variant
	return u, nil
}

// eventType names an event in EventStoreDB by its payload message,
// e.g. "BillSourceInvited" ("Event" when it has none). Only operators see it:
// the adapter decodes the protobuf envelope, never the type.
func eventType(ev *billingv1.Event) string {
	m := ev.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")); fd != nil {
		return string(fd.Message().Name())
	}
	return "Event"
}

// eventMetadata is the JSON metadata stored beside each event, for
// EventStoreDB's tools. Keys do not start with '$' (KurrentDB keeps those for
// its own properties in a multi-stream append, where metadata is string
// values only), so the server's $by_correlation_id projection, which reads
// "$correlationId", does not index the ledger's events. It is not part of the
// hash chain and not read back.
type eventMetadata struct {
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	LedgerEventID string `json:"ledgerEventId,omitempty"`
	Stream        string `json:"stream"`
	StreamVersion uint64 `json:"streamVersion,string"` // a string: KurrentDB's multi-stream append takes string metadata values only
}

// encodeEvent turns a sealed event into what EventStoreDB stores: the
// protobuf envelope as binary data, with a derived id, its payload's name as
// event type, and JSON metadata.
func encodeEvent(ev *billingv1.Event) (kurrentdb.EventData, error) {
	id, err := eventID(ev.GetHash())
	if err != nil {
		return kurrentdb.EventData{}, err
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return kurrentdb.EventData{}, fmt.Errorf("esdb: encode event: %w", err)
	}
	meta, err := json.Marshal(eventMetadata{
		CorrelationID: ev.GetCorrelationId(), CausationID: ev.GetCausationId(), LedgerEventID: ev.GetEventId(),
		Stream: ev.GetStream(), StreamVersion: ev.GetStreamVersion(),
	})
	if err != nil {
		return kurrentdb.EventData{}, fmt.Errorf("esdb: encode metadata: %w", err)
	}
	return kurrentdb.EventData{EventID: id, EventType: eventType(ev), ContentType: kurrentdb.ContentTypeBinary, Data: data, Metadata: meta}, nil
}

// decodeEvent reads back an event EventStoreDB keeps on ledger stream stream
// at revision: the envelope must name that stream and the version of that
// revision, or the event is not the ledger's (ErrForeignEvent).
func decodeEvent(data []byte, stream string, revision uint64, position uint64) (eventstore.Record, error) {
	ev := new(billingv1.Event)
	if err := proto.Unmarshal(data, ev); err != nil {
		return eventstore.Record{}, fmt.Errorf("%w: %s at revision %d does not decode: %v", ErrForeignEvent, stream, revision, err)
	}
	if ev.GetStream() != stream || ev.GetStreamVersion() != versionOf(revision) {
		return eventstore.Record{}, fmt.Errorf("%w: %s at revision %d holds an event of %s version %d",
			ErrForeignEvent, stream, revision, ev.GetStream(), ev.GetStreamVersion())
	}
	return eventstore.Record{Event: ev, Position: position}, nil
}

// tokenPattern matches one token of a ledger stream name (eventstore.ValidateStream).
const tokenPattern = `[A-Za-z0-9_-]+`

// serverFilter is the filter EventStoreDB applies to $all for a ledger subject
// filter, within names' namespace, and the matcher the adapter applies again
// to what arrives.
type serverFilter struct {
	// filter is the ledger's subject filter ("" = every ledger stream).
	filter string
	// sub is the EventStoreDB stream-name filter: a prefix when the subject
	// filter is a literal prefix followed by ">", else a regular expression.
	sub *kurrentdb.SubscriptionFilter
}

// newServerFilter translates a subject filter (see eventstore.ValidateFilter;
// "" or ">" = everything) into an EventStoreDB stream-name filter:
//
//   - "billing.org.>" becomes the prefix "billing.org." (every stream below
//     it, since ledger stream names have no empty tokens);
//   - otherwise a regular expression anchored at both ends: a literal token
//     is quoted, "*" becomes one token of a ledger stream name
//     ("[A-Za-z0-9_-]+"), a trailing ">" one or more such tokens after a dot;
//   - "" and ">" become the namespace prefix when there is one, else the
//     expression of a valid ledger stream name, so that EventStoreDB's own
//     streams ("$...") are left out.
//
// The expressions use only anchors, quoted literals, character classes,
// groups and "+": the same meaning in .NET's regular expressions (the
// server's) as in Go's (the tests'). The adapter still checks each event it
// receives with eventstore.MatchFilter, so a difference could only cost
// bandwidth, never deliver a wrong event.
func newServerFilter(n names, filter string) (serverFilter, error) {
	if filter == ">" {
		filter = ""
	}
	if filter != "" {
		if err := eventstore.ValidateFilter(filter); err != nil {
			return serverFilter{}, err
		}
	}
	f := serverFilter{filter: filter, sub: &kurrentdb.SubscriptionFilter{Type: kurrentdb.StreamFilterType}}
	toks := strings.Split(filter, ".")
	switch {
	case filter == "" && n.prefix != "":
		f.sub.Prefixes = []string{n.prefix}
	case filter == "":
		f.sub.Regex = "^" + tokenPattern + `(\.` + tokenPattern + ")*$"
	case toks[len(toks)-1] == ">" && !strings.Contains(filter, "*"):
		f.sub.Prefixes = []string{n.prefix + strings.TrimSuffix(filter, ">")}
	default:
		var b strings.Builder
		b.WriteString("^")
		b.WriteString(regexp.QuoteMeta(n.prefix))
		for i, tok := range toks {
			switch {
			case tok == ">":
				b.WriteString(`(\.` + tokenPattern + ")+")
				continue
			case i > 0:
				b.WriteString(`\.`)
			}
			if tok == "*" {
				b.WriteString(tokenPattern)
			} else {
				b.WriteString(regexp.QuoteMeta(tok))
			}
		}
		b.WriteString("$")
		f.sub.Regex = b.String()
	}
	return f, nil
}

// match reports whether EventStoreDB stream id holds a ledger stream of the
// namespace that the filter selects, and its ledger name.
func (f serverFilter) match(n names, id string) (string, bool) {
	stream, ok := n.ledger(id)
	if !ok || !eventstore.MatchFilter(f.filter, stream) {
		return "", false
	}
	return stream, true
}

// hasWildcard reports whether a subject filter names a family of streams
// rather than one stream.
func hasWildcard(filter string) bool {
	for _, tok := range strings.Split(filter, ".") {
		if tok == "*" || tok == ">" {
			return true
		}
	}
	return false
}

// undeclaredGuard returns ErrWildcardGuard for the first guard whose filter
// has a wildcard and is not a declared family, or nil. Call it after
// eventstore.CheckAppend, so invalid input gets the port's own errors first.
func undeclaredGuard(appends []eventstore.StreamAppend, families []string) error {
	for _, a := range appends {
		if g := a.Guard; g != nil && hasWildcard(g.Filter) && !slices.Contains(families, g.Filter) {
			return fmt.Errorf("%w (filter %q on %s)", ErrWildcardGuard, g.Filter, a.Stream)
		}
	}
	return nil
}
