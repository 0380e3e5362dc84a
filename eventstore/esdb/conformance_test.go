package esdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
	"github.com/billtransfer/ledger/eventstore/memstore"
)

// need is what a conformance check uses that EventStoreDB does not do natively.
type need struct {
	// multiStream: an Append of several streams (ErrMultiStreamAppend).
	multiStream bool
	// wildcardGuard: a Guard over a family of streams (Config.InProcessGuards).
	wildcardGuard bool
}

// needs lists, per conformance check, what it needs (doc.go has the same
// table); TestConformanceNeeds proves it exact.
var needs = map[string]need{
	"MultiStreamAtomic":          {multiStream: true},
	"LargestAppend":              {multiStream: true},
	"ReadAllResume":              {multiStream: true},
	"Filter":                     {multiStream: true},
	"Subscribe":                  {multiStream: true},
	"HashChain":                  {multiStream: true},
	"GuardAppends":               {multiStream: true, wildcardGuard: true},
	"GuardConflictWritesNothing": {multiStream: true, wildcardGuard: true},
	"GuardCoversSiblings":        {wildcardGuard: true},
	"GuardConcurrentWriters":     {wildcardGuard: true},
	"LastPositionMatching":       {multiStream: true},
	"GuardValidation":            {wildcardGuard: true},
}

// skipUnsupported skips the conformance check t when it needs what the
// adapter cannot do (with inProcessGuards as configured), saying why.
func skipUnsupported(t *testing.T, inProcessGuards bool) {
	t.Helper()
	n := needs[path.Base(t.Name())]
	switch {
	case n.multiStream:
		t.Skip("needs an atomic append to several streams, which EventStoreDB cannot do (ErrMultiStreamAppend; see the package comment)")
	case n.wildcardGuard && !inProcessGuards:
		t.Skip("needs a guard over a family of streams, which EventStoreDB cannot check without Config.InProcessGuards (ErrWildcardGuard)")
	}
}

// TestConformance runs the conformance suite against the EventStoreDB (or
// KurrentDB) server at EVENTSTORE_URL, each check in a namespace of its own,
// with in-process guards (the suite writes from this one process). The checks
// that need an atomic append to several streams are skipped with the reason.
func TestConformance(t *testing.T) {
	url := os.Getenv("EVENTSTORE_URL")
	if url == "" {
		t.Skip("EVENTSTORE_URL is not set, so there is no EventStoreDB to test against. Start one with " +
			"`docker compose --profile eventstoredb up -d eventstoredb` and run " +
			"`EVENTSTORE_URL='esdb://localhost:2113?tls=false' go test ./eventstore/esdb` (see the README)")
	}
	run := newNamespace(t)
	conformance.Run(t, func(t *testing.T) eventstore.Store {
		skipUnsupported(t, true)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := Open(ctx, Config{URL: url, Namespace: run + "-" + path.Base(t.Name()), InProcessGuards: true})
		if err != nil {
			t.Fatalf("open EventStoreDB at %s: %v", url, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// newNamespace returns a random namespace prefix, so runs against one server
// do not see each other's streams.
func newNamespace(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "conf" + hex.EncodeToString(b[:])
}

// featureStore is the in-memory store, recording which features of the port
// each conformance check uses, and, when limited, refusing what this adapter
// refuses with the adapter's own errors (unsupported).
type featureStore struct {
	*memstore.Store
	check           string
	limited         bool
	inProcessGuards bool
	rec             *recorder
}

// recorder collects the features used per check.
type recorder struct {
	mu   sync.Mutex
	used map[string]need
}

func (r *recorder) note(check string, n need) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.used[check]
	u.multiStream = u.multiStream || n.multiStream
	u.wildcardGuard = u.wildcardGuard || n.wildcardGuard
	r.used[check] = u
}

// Append records, then refuses (when limited) or appends.
func (s *featureStore) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	if err := eventstore.CheckAppend(appends); err == nil && s.rec != nil {
		// Only appends that pass the port's validation reach the adapter's
		// own limits, so only those count.
		n := need{multiStream: len(appends) > 1}
		for _, a := range appends {
			n.wildcardGuard = n.wildcardGuard || (a.Guard != nil && hasWildcard(a.Guard.Filter))
		}
		s.rec.note(s.check, n)
	}
	if s.limited {
		if err := eventstore.CheckAppend(appends); err != nil {
			return nil, err
		}
		if err := unsupported(appends, s.inProcessGuards); err != nil {
			return nil, err
		}
	}
	return s.Store.Append(ctx, appends...)
}

// TestConformanceNeeds runs the conformance suite on the in-memory store and
// records, per check, whether it appends to several streams at once or uses a
// guard over a family of streams; the result must be the needs table (and so
// the table in doc.go), so the checks TestConformance skips are exactly those
// that need what EventStoreDB cannot do.
func TestConformanceNeeds(t *testing.T) {
	rec := &recorder{used: map[string]need{}}
	var checks []string
	var mu sync.Mutex
	t.Run("suite", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) eventstore.Store {
			mu.Lock()
			checks = append(checks, path.Base(t.Name()))
			mu.Unlock()
			return &featureStore{Store: memstore.New(), check: path.Base(t.Name()), rec: rec}
		})
	})
	if t.Failed() {
		return
	}
	slices.Sort(checks)
	for name := range needs {
		if !slices.Contains(checks, name) {
			t.Errorf("the needs table names %q, which is not a conformance check", name)
		}
	}
	for _, name := range checks {
		if got, want := rec.used[name], needs[name]; got != want {
			t.Errorf("check %s uses multi-stream appends %v and wildcard guards %v; the needs table says %v and %v",
				name, got.multiStream, got.wildcardGuard, want.multiStream, want.wildcardGuard)
		}
	}
}

// TestConformanceWithLimits runs the conformance suite on an in-memory store
// that refuses what this adapter refuses, with its errors, skipping the same
// checks as TestConformance: every check that is not skipped passes within
// the limits (with and without in-process guards), so the skips hide nothing
// else.
func TestConformanceWithLimits(t *testing.T) {
	for _, inProc := range []bool{true, false} {
		name := "InProcessGuards"
		if !inProc {
			name = "NoWildcardGuards"
		}
		t.Run(name, func(t *testing.T) {
			conformance.Run(t, func(t *testing.T) eventstore.Store {
				skipUnsupported(t, inProc)
				return &featureStore{Store: memstore.New(), limited: true, inProcessGuards: inProc}
			})
		})
	}
}
