package commands_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
)

// TestSeal_AClosedMonthIsSealedExportedAndVerifiedOffline (issue #6): the
// sealer signs the heads of every stream the close wrote; the export verifies
// with nothing but its bytes, and fails after any single byte changes.
func TestSeal_AClosedMonthIsSealedExportedAndVerifiedOffline(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		p := commands.New(store, clock, commands.Options{})
		closeWorld(t, p, clock, true)
		clock.Set("2026-09-20T00:00:00Z")
		ingest(t, usageWorld(t, store, clock), septemberUsage()...)
		clock.Set("2026-10-02T09:30:00Z")
		must(t, p, closeMonth(payerP, "2026-09"))

		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		sealer := commands.NewSealer(store, clock, key, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sealer.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			recs, err := store.ReadStream(context.Background(), domain.SealStream(payerP, "2026-09"))
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 1 {
				s := recs[0].Event.GetMonthSealed()
				// Month stream, 16 usage partitions, receivable.
				if len(s.GetStreams()) != 1+domain.UsagePartitions+1 || s.GetKeyId() != eventstore.SealKeyID(key.Public().(ed25519.PublicKey)) {
					t.Fatalf("seal names %d streams with key %s", len(s.GetStreams()), s.GetKeyId())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the month was not sealed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done

		var buf bytes.Buffer
		sum, err := eventstore.ExportMonth(context.Background(), store, "2026-09", "", &buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Seals) != 1 || sum.Streams != 1+1+domain.UsagePartitions+1 {
			t.Fatalf("export: %+v", sum)
		}
		got, err := eventstore.VerifyExport(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("intact export: %v", err)
		}
		if got.Events != sum.Events || got.Seals[0].Root != sum.Seals[0].Root {
			t.Fatalf("verified %+v, exported %+v", got, sum)
		}
		// Change one byte at a time, at many places: each change must be caught.
		data := buf.Bytes()
		for i := 0; i < len(data); i += max(1, len(data)/200) {
			bad := bytes.Clone(data)
			bad[i] ^= 0x01
			if _, err := eventstore.VerifyExport(bytes.NewReader(bad)); err == nil {
				t.Fatalf("byte %d of %d changed, and the export still verifies", i, len(data))
			}
		}
		// A seal re-signed by another key verifies only as that key's: the key id changes.
		_, other, _ := ed25519.GenerateKey(nil)
		if eventstore.SealKeyID(other.Public().(ed25519.PublicKey)) == got.Seals[0].KeyID {
			t.Fatal("two keys with one id")
		}
	})
}
