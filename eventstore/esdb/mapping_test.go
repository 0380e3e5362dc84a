package esdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func TestNames(t *testing.T) {
	t.Parallel()
	plain, err := newNames("")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := newNames("run-42_a")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"a:b", "a.b", "a b", "ø", strings.Repeat("x", 65)} {
		if _, err := newNames(bad); err == nil {
			t.Errorf("namespace %q accepted", bad)
		}
	}
	cases := []struct {
		name   string
		n      names
		stream string
		server string
	}{
		{"plain", plain, "billing.org.111111111111", "billing.org.111111111111"},
		{"namespaced", ns, "billing.usage.2026-09.07", "run-42_a:billing.usage.2026-09.07"},
	}
	for _, tc := range cases {
		if got := tc.n.server(tc.stream); got != tc.server {
			t.Errorf("%s: server(%q) = %q, want %q", tc.name, tc.stream, got, tc.server)
		}
		if got, ok := tc.n.ledger(tc.server); !ok || got != tc.stream {
			t.Errorf("%s: ledger(%q) = %q, %v; want %q", tc.name, tc.server, got, ok, tc.stream)
		}
	}
	// EventStoreDB's own streams, other namespaces and invalid names are not ledger streams.
	for _, c := range []struct {
		n  names
		id string
	}{
		{plain, "$all"}, {plain, "$$billing.org.1"}, {plain, "$et-AccountAdded"}, {plain, "$ce-billing.org"},
		{plain, "run-42_a:billing.org.1"}, {plain, "billing..org"}, {plain, ""},
		{ns, "billing.org.1"}, {ns, "other:billing.org.1"}, {ns, "run-42_a:"}, {ns, "run-42_a:$x"},
	} {
		if s, ok := c.n.ledger(c.id); ok {
			t.Errorf("ledger(%q) with prefix %q = %q, want not a ledger stream", c.id, c.n.prefix, s)
		}
	}
}

func TestVersionMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		version uint64
		want    kurrentdb.StreamState
	}{
		{0, kurrentdb.NoStream{}},
		{1, kurrentdb.Revision(0)},
		{2, kurrentdb.Revision(1)},
		{1000, kurrentdb.Revision(999)},
	}
	for _, tc := range cases {
		if got := expectedRevision(tc.version); got != tc.want {
			t.Errorf("expectedRevision(%d) = %#v, want %#v", tc.version, got, tc.want)
		}
		if tc.version > 0 && versionOf(tc.want.(kurrentdb.StreamRevision).Value) != tc.version {
			t.Errorf("versionOf(revision of version %d) = %d", tc.version, versionOf(tc.want.(kurrentdb.StreamRevision).Value))
		}
	}
}

func TestPositionOf(t *testing.T) {
	t.Parallel()
	for _, p := range []uint64{1, 4096, math.MaxUint64 - 1} {
		if got, err := positionOf(p); err != nil || got != p {
			t.Errorf("positionOf(%d) = %d, %v", p, got, err)
		}
	}
	for _, p := range []uint64{0, math.MaxUint64} {
		if _, err := positionOf(p); !errors.Is(err, ErrNoPosition) {
			t.Errorf("positionOf(%d): %v, want ErrNoPosition", p, err)
		}
	}
}

// sealed returns an event sealed at stream/version after prev.
func sealed(t *testing.T, id, stream string, version uint64, prev []byte) *billingv1.Event {
	t.Helper()
	ev := &billingv1.Event{
		EventId: id, RecordedAt: timestamppb.New(time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)), Actor: "test",
		CorrelationId: "corr-" + id, CausationId: "cause-" + id,
		Payload: &billingv1.Event_AccountAdded{AccountAdded: &billingv1.AccountAdded{ManagementAccountId: "111111111111", AccountId: "222222222222"}},
	}
	if err := eventstore.Seal(ev, stream, version, prev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestEventID(t *testing.T) {
	t.Parallel()
	const stream = "billing.org.111111111111"
	a := sealed(t, "e-1", stream, 1, nil)
	b := sealed(t, "e-1", stream, 2, a.GetHash()) // same content, next version
	c := sealed(t, "e-2", stream, 1, nil)         // other content, same version
	ida, err := eventID(a.GetHash())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := eventID(a.GetHash()); again != ida {
		t.Fatalf("eventID not deterministic: %s, %s", ida, again)
	}
	if ida.Version() != 8 || ida.Variant().String() != "RFC4122" {
		t.Fatalf("eventID %s: version %d variant %s, want 8 and RFC 4122/9562", ida, ida.Version(), ida.Variant())
	}
	for _, other := range []*billingv1.Event{b, c} {
		if id, _ := eventID(other.GetHash()); id == ida {
			t.Fatalf("events %s@%d and %s@%d share the id %s", a.GetEventId(), 1, other.GetEventId(), other.GetStreamVersion(), id)
		}
	}
	if _, err := eventID([]byte{1, 2, 3}); err == nil {
		t.Fatal("eventID of an unsealed event: no error")
	}
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	const stream = "billing.org.111111111111"
	first := sealed(t, "e-1", stream, 1, nil)
	ev := sealed(t, "e-2", stream, 2, first.GetHash())
	data, err := encodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	wantID, _ := eventID(ev.GetHash())
	if data.EventID != wantID || data.EventType != "AccountAdded" || data.ContentType != kurrentdb.ContentTypeBinary {
		t.Fatalf("EventData id %s type %q content %d; want %s, AccountAdded, binary", data.EventID, data.EventType, data.ContentType, wantID)
	}
	var meta map[string]any
	if err := json.Unmarshal(data.Metadata, &meta); err != nil {
		t.Fatalf("metadata %s: %v", data.Metadata, err)
	}
	for k, v := range map[string]any{"correlationId": "corr-e-2", "causationId": "cause-e-2", "ledgerEventId": "e-2", "stream": stream, "streamVersion": "2"} {
		if meta[k] != v {
			t.Fatalf("metadata %s = %v, want %v (all: %s)", k, meta[k], v, data.Metadata)
		}
	}
	if got := eventType(&billingv1.Event{}); got != "Event" {
		t.Fatalf("eventType without payload = %q", got)
	}

	// Revision 1 of the stream is version 2: the event comes back whole, with its position.
	rec, err := decodeEvent(data.Data, stream, 1, 9876)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Position != 9876 || !proto.Equal(rec.Event, ev) {
		t.Fatalf("decoded %v at %d, want %v at 9876", rec.Event, rec.Position, ev)
	}
	if err := eventstore.VerifyChain(stream, []eventstore.Record{{Event: first}, rec}); err != nil {
		t.Fatalf("decoded event breaks the chain: %v", err)
	}
	// Kept elsewhere than it says, or not an envelope at all: not the ledger's.
	for _, bad := range []struct {
		name     string
		data     []byte
		stream   string
		revision uint64
	}{
		{"other stream", data.Data, "billing.org.999999999999", 1},
		{"other revision", data.Data, stream, 0},
		{"not protobuf", []byte{0xff, 0xff, 0xff}, stream, 1},
	} {
		if _, err := decodeEvent(bad.data, bad.stream, bad.revision, 1); !errors.Is(err, ErrForeignEvent) {
			t.Errorf("%s: %v, want ErrForeignEvent", bad.name, err)
		}
	}
}

func TestServerFilter(t *testing.T) {
	t.Parallel()
	plain, _ := newNames("")
	ns, _ := newNames("ns1")
	cases := []struct {
		n      names
		filter string
		prefix string
		regex  string
	}{
		{plain, "", "", `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`},
		{plain, ">", "", `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`},
		{ns, "", "ns1:", ""},
		{plain, "billing.org.>", "billing.org.", ""},
		{ns, "billing.usage.2026-09.>", "ns1:billing.usage.2026-09.", ""},
		{plain, "billing.usage.*.07", "", `^billing\.usage\.[A-Za-z0-9_-]+\.07$`},
		{ns, "billing.usage.*.07", "", `^ns1:billing\.usage\.[A-Za-z0-9_-]+\.07$`},
		{plain, "billing.org.111111111111", "", `^billing\.org\.111111111111$`},
		{plain, "billing.*.>", "", `^billing\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`},
		{plain, "*", "", `^[A-Za-z0-9_-]+$`},
	}
	for _, tc := range cases {
		f, err := newServerFilter(tc.n, tc.filter)
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		if f.sub.Type != kurrentdb.StreamFilterType {
			t.Errorf("%q: filter on %v, want stream names", tc.filter, f.sub.Type)
		}
		gotPrefix := strings.Join(f.sub.Prefixes, "|")
		if gotPrefix != tc.prefix || f.sub.Regex != tc.regex {
			t.Errorf("%q (namespace %q): prefix %q regex %q; want %q and %q", tc.filter, tc.n.prefix, gotPrefix, f.sub.Regex, tc.prefix, tc.regex)
		}
	}
	for _, bad := range []string{"billing..org", "billing.>.org", "billing.or*"} {
		if _, err := newServerFilter(plain, bad); !errors.Is(err, eventstore.ErrInvalidFilter) {
			t.Errorf("newServerFilter(%q): %v, want ErrInvalidFilter", bad, err)
		}
	}
}

// TestServerFilterMatchesMatchFilter checks, for many filters and stream
// names, that what the server's filter selects (a prefix, or the expression
// compiled by Go's regexp, whose syntax subset means the same in .NET) is
// what the adapter accepts: a ledger stream of its namespace that
// eventstore.MatchFilter matches. An expression selects exactly that; a
// prefix may select names that are no ledger stream, never fewer.
func TestServerFilterMatchesMatchFilter(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(8, 4))
	tokens := []string{"billing", "org", "usage", "2026-09", "2026-10", "07", "08", "rt-1", "x_y", "1"}
	randomName := func() string {
		parts := make([]string, 1+rng.IntN(5))
		for i := range parts {
			parts[i] = tokens[rng.IntN(len(tokens))]
		}
		return strings.Join(parts, ".")
	}
	randomFilter := func() string {
		parts := strings.Split(randomName(), ".")
		for i := range parts {
			if rng.IntN(4) == 0 {
				parts[i] = "*"
			}
		}
		if rng.IntN(3) == 0 {
			parts = append(parts, ">")
		}
		return strings.Join(parts, ".")
	}
	for _, namespace := range []string{"", "ns1"} {
		n, _ := newNames(namespace)
		filters := []string{"", ">", "billing.>", "billing.usage.*.07", "billing.usage.2026-09.>", "*", "*.*", "billing.*.>"}
		for range 200 {
			filters = append(filters, randomFilter())
		}
		for _, filter := range filters {
			f, err := newServerFilter(n, filter)
			if err != nil {
				t.Fatalf("%q: %v", filter, err)
			}
			var re *regexp.Regexp
			if f.sub.Regex != "" {
				re = regexp.MustCompile(f.sub.Regex)
			}
			server := func(id string) bool {
				if re != nil {
					return re.MatchString(id)
				}
				for _, p := range f.sub.Prefixes {
					if strings.HasPrefix(id, p) {
						return true
					}
				}
				return false
			}
			ids := []string{"$all", "$$billing.org.1", "$et-AccountAdded", "other:billing.org.1", "ns1:$x", "billing.org.", "ns1:billing..org"}
			for range 300 {
				ids = append(ids, randomName(), "ns1:"+randomName(), "other:"+randomName())
			}
			for _, id := range ids {
				_, want := f.match(n, id)
				got := server(id)
				_, ledger := n.ledger(id)
				// A prefix may also select names that are no ledger stream
				// (EventStoreDB has none such, and the adapter drops them);
				// an expression is exact.
				if got != want && (re != nil || ledger || want) {
					t.Fatalf("namespace %q filter %q (prefix %v regex %q) on %q: server %v, adapter %v",
						namespace, filter, f.sub.Prefixes, f.sub.Regex, id, got, want)
				}
			}
		}
	}
}

func TestUndeclaredGuard(t *testing.T) {
	t.Parallel()
	evs := []*billingv1.Event{{EventId: "e"}}
	one := eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: evs}
	guarded := func(filter string) eventstore.StreamAppend {
		return eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: evs, Guard: &eventstore.Guard{Filter: filter, LastPosition: 7}}
	}
	families := []string{"billing.usage.*.07"}
	cases := []struct {
		name    string
		appends []eventstore.StreamAppend
		want    error
	}{
		{"one stream", []eventstore.StreamAppend{one}, nil},
		{"guard on the stream itself", []eventstore.StreamAppend{guarded("billing.usage.2026-09.07")}, nil},
		{"guard on a declared family", []eventstore.StreamAppend{one, guarded("billing.usage.*.07")}, nil},
		{"guard on another family", []eventstore.StreamAppend{guarded("billing.usage.2026-09.>")}, ErrWildcardGuard},
		{"guard on everything", []eventstore.StreamAppend{guarded(">")}, ErrWildcardGuard},
	}
	for _, tc := range cases {
		if err := eventstore.CheckAppend(tc.appends); err != nil {
			t.Fatalf("%s: the test's appends are invalid: %v", tc.name, err)
		}
		err := undeclaredGuard(tc.appends, families)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v does not wrap errors.ErrUnsupported", tc.name, err)
		}
	}
	for filter, want := range map[string]bool{"billing.org.1": false, "billing.*.1": true, "billing.>": true, ">": true, "*": true} {
		if hasWildcard(filter) != want {
			t.Errorf("hasWildcard(%q) = %v", filter, !want)
		}
	}
}

func TestFamilies(t *testing.T) {
	t.Parallel()
	got, err := checkFamilies([]string{"billing.usage.*.07", "billing.usage.*.00", "billing.usage.*.07"})
	if err != nil || !slices.Equal(got, []string{"billing.usage.*.00", "billing.usage.*.07"}) {
		t.Fatalf("checkFamilies = %v, %v; want the two families sorted", got, err)
	}
	for _, bad := range []string{"billing.org.1", "billing..x", ""} {
		if _, err := checkFamilies([]string{bad}); err == nil {
			t.Errorf("checkFamilies(%q) accepted", bad)
		}
	}

	n, _ := newNames("ns")
	g := n.guardStream("billing.usage.*.07")
	if g != "ledger-guard:ns:billing.usage.*.07" {
		t.Fatalf("guard stream %q", g)
	}
	if f, ok := n.family(g); !ok || f != "billing.usage.*.07" {
		t.Fatalf("family(%q) = %q, %v", g, f, ok)
	}
	if _, ok := n.ledger(g); ok {
		t.Fatalf("the guard stream %q passes for a ledger stream", g)
	}
	other, _ := newNames("other")
	if _, ok := other.family(g); ok {
		t.Fatalf("another namespace takes %q for its guard stream", g)
	}
	if _, ok := n.family("ns:billing.usage.2026-09.07"); ok {
		t.Fatal("a ledger stream passes for a guard stream")
	}
	for _, filter := range []string{"", ">", "billing.>", "billing.usage.*.07", "ledger-guard:ns"} {
		f, err := newServerFilter(n, filter)
		if err != nil {
			continue
		}
		if _, ok := f.match(n, g); ok {
			t.Errorf("filter %q delivers the guard stream", filter)
		}
	}

	// One mark per declared family the append writes to, with each stream's new version.
	evs := func(k int) []*billingv1.Event { return make([]*billingv1.Event, k) }
	marks := marksOf([]eventstore.StreamAppend{
		{Stream: "billing.org.111111111111", ExpectedVersion: 4, Events: evs(1)},
		{Stream: "billing.usage.2026-09.07", ExpectedVersion: 2, Events: evs(3)},
		{Stream: "billing.usage.2026-10.07", Events: evs(1)},
		{Stream: "billing.usage.2026-09.08", ExpectedVersion: 9, Events: evs(1)},
	}, []string{"billing.usage.*.00", "billing.usage.*.07", "billing.usage.*.08"})
	want := []guardMark{
		{Family: "billing.usage.*.07", Streams: []markedStream{{"billing.usage.2026-09.07", 5}, {"billing.usage.2026-10.07", 1}}},
		{Family: "billing.usage.*.08", Streams: []markedStream{{"billing.usage.2026-09.08", 10}}},
	}
	if fmt.Sprint(marks) != fmt.Sprint(want) {
		t.Fatalf("marks %v, want %v", marks, want)
	}
	data, err := encodeMark(marks[0])
	if err != nil {
		t.Fatal(err)
	}
	if data.EventType != guardEventType || data.ContentType != kurrentdb.ContentTypeJson || data.EventID.Version() != 7 {
		t.Fatalf("guard event type %q content %d id %s", data.EventType, data.ContentType, data.EventID)
	}
	back, err := decodeMark(data.Data, "billing.usage.*.07")
	if err != nil || fmt.Sprint(back) != fmt.Sprint(marks[0]) {
		t.Fatalf("decodeMark = %v, %v; want %v", back, err, marks[0])
	}
	for _, bad := range []string{`{`, `{"family":"billing.usage.*.08","streams":[{"stream":"billing.usage.2026-09.08","version":1}]}`,
		`{"family":"billing.usage.*.07","streams":[]}`, `{"family":"billing.usage.*.07","streams":[{"stream":"billing.org.1","version":1}]}`,
		`{"family":"billing.usage.*.07","streams":[{"stream":"billing.usage.2026-09.07","version":0}]}`} {
		if _, err := decodeMark([]byte(bad), "billing.usage.*.07"); !errors.Is(err, ErrForeignEvent) {
			t.Errorf("decodeMark(%s) = %v, want ErrForeignEvent", bad, err)
		}
	}
}
