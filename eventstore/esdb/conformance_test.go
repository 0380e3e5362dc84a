package esdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
)

// TestConformance runs the whole conformance suite against the KurrentDB
// (25.1 or newer) server at EVENTSTORE_URL, each check in a namespace of its
// own, with the suite's guard families declared. Nothing is skipped: an
// older server fails the checks that append to several streams, with
// ErrMultiStreamAppend.
func TestConformance(t *testing.T) {
	url := os.Getenv("EVENTSTORE_URL")
	if url == "" {
		t.Skip("EVENTSTORE_URL is not set, so there is no KurrentDB to test against (TestConformanceOnFakeServer ran the suite " +
			"through the real client against an in-memory fake instead). Start one with " +
			"`docker compose --profile eventstoredb up -d kurrentdb` and run " +
			"`EVENTSTORE_URL='kurrentdb://localhost:2113?tls=false' go test ./eventstore/esdb` (see the README)")
	}
	run := newNamespace(t)
	conformance.Run(t, func(t *testing.T) eventstore.Store {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := Open(ctx, Config{URL: url, Namespace: run + "-" + path.Base(t.Name()), GuardFamilies: conformance.GuardFamilies})
		if err != nil {
			t.Fatalf("open KurrentDB at %s: %v", url, err)
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
