package esdb

// Guard families: how the adapter makes an append conditional on a whole
// family of streams (eventstore.Guard with a wildcard filter), which
// EventStoreDB cannot check by itself. See the package comment, "Guards over
// a family of streams".

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/billtransfer/ledger/eventstore"
)

// guardStreamPrefix starts the EventStoreDB name of every guard stream. The
// ':' keeps guard streams apart from ledger streams (whose names cannot hold
// one) and from the namespace's prefix.
const guardStreamPrefix = "ledger-guard:"

// guardEventType is the event type of a guard stream's events.
const guardEventType = "FamilyAppended"

// guardStream is the EventStoreDB stream that marks every append to the
// family of streams matching filter, e.g. "ledger-guard:ns:billing.usage.*.07".
func (n names) guardStream(family string) string { return guardStreamPrefix + n.prefix + family }

// family is the family whose guard stream EventStoreDB stream id is, and
// whether it is one of this namespace's guard streams.
func (n names) family(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, guardStreamPrefix+n.prefix)
	return rest, ok && rest != ""
}

// checkFamilies validates Config.GuardFamilies: each a valid subject filter
// with a wildcard ("*" or ">"), at most 64 of them; it returns them sorted
// without repeats.
func checkFamilies(families []string) ([]string, error) {
	if len(families) > 64 {
		return nil, fmt.Errorf("esdb: %d guard families, at most 64", len(families))
	}
	out := slices.Clone(families)
	for _, f := range out {
		if err := eventstore.ValidateFilter(f); err != nil {
			return nil, fmt.Errorf("esdb: guard family: %w", err)
		}
		if !hasWildcard(f) {
			return nil, fmt.Errorf("esdb: guard family %q names one stream; a family filter has a wildcard (a guard on one stream needs no family)", f)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// guardMark is the content of a guard event: the streams of the family that
// one append wrote, each with the version it reached. The family's newest
// position is the newest position among them (an append is atomic, so no
// other append of the family lies between them and the mark).
type guardMark struct {
	Family  string         `json:"family"`
	Streams []markedStream `json:"streams"`
}

// markedStream is one stream of a guardMark.
type markedStream struct {
	Stream  string `json:"stream"`
	Version uint64 `json:"version"`
}

// marksOf returns the guard mark of every declared family an append writes
// to, in family order (empty when it writes to none).
func marksOf(appends []eventstore.StreamAppend, families []string) []guardMark {
	var out []guardMark
	for _, f := range families {
		m := guardMark{Family: f}
		for _, a := range appends {
			if eventstore.MatchFilter(f, a.Stream) {
				m.Streams = append(m.Streams, markedStream{Stream: a.Stream, Version: a.ExpectedVersion + uint64(len(a.Events))})
			}
		}
		if len(m.Streams) > 0 {
			out = append(out, m)
		}
	}
	return out
}

// encodeMark is the guard event of a mark: JSON data, a fresh (version 7)
// event id.
func encodeMark(m guardMark) (kurrentdb.EventData, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return kurrentdb.EventData{}, fmt.Errorf("esdb: encode guard mark: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return kurrentdb.EventData{}, fmt.Errorf("esdb: guard event id: %w", err)
	}
	return kurrentdb.EventData{EventID: id, EventType: guardEventType, ContentType: kurrentdb.ContentTypeJson, Data: data}, nil
}

// decodeMark reads a guard event of family: it must name the family and
// at least one of its streams.
func decodeMark(data []byte, family string) (guardMark, error) {
	var m guardMark
	if err := json.Unmarshal(data, &m); err != nil {
		return guardMark{}, fmt.Errorf("%w: guard stream of %s: %v", ErrForeignEvent, family, err)
	}
	if m.Family != family || len(m.Streams) == 0 {
		return guardMark{}, fmt.Errorf("%w: guard stream of %s holds a mark of %q with %d streams", ErrForeignEvent, family, m.Family, len(m.Streams))
	}
	for _, st := range m.Streams {
		if eventstore.ValidateStream(st.Stream) != nil || !eventstore.MatchFilter(family, st.Stream) || st.Version == 0 {
			return guardMark{}, fmt.Errorf("%w: guard stream of %s marks %q version %d", ErrForeignEvent, family, st.Stream, st.Version)
		}
	}
	return m, nil
}
