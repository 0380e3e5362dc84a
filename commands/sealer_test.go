package commands_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
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

// closeEvent is a close's event as an older writer (or a test) would append
// it: an id, a time and an actor around payload.
func closeEvent(at time.Time, payload proto.Message) *billingv1.Event {
	e := domain.NewEvent(payload)
	e.EventId, e.RecordedAt, e.Actor = uuid.Must(uuid.NewV7()).String(), timestamppb.New(at), "test"
	return e
}

// TestSeal_CoversTheLastPostingOfACloseWrittenEitherWay (issue #6, X5): the
// seal of a close covers the receivable up to the posting that completes the
// close's invoices, whether its MonthClosed counts them (invoice_count, as
// closes are written now, the invoices in one InvoicesIssued) or lists their
// ids (as closes were written before, one InvoiceIssued per invoice). Each
// close here posts its three invoices in three InvoicesPosted events, and a
// later posting of October follows on the receivable, which the seal must not
// cover. A close whose count is more than was posted is not sealed.
func TestSeal_CoversTheLastPostingOfACloseWrittenEitherWay(t *testing.T) {
	cases := []struct {
		name     string
		payer    string
		counted  bool // the current form
		postings int  // of the three invoices, one per InvoicesPosted
		wantErr  string
	}{
		{"ids listed, one InvoiceIssued per invoice", "711111111111", false, 3, ""},
		{"invoices counted, one InvoicesIssued", "722222222222", true, 3, ""},
		{"invoices counted, a posting missing", "733333333333", true, 2, "(2 of 3 found)"},
	}
	closedAt := time.Date(2026, 10, 2, 9, 30, 0, 0, time.UTC)
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		ctx := context.Background()
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var invs []*billingv1.Invoice
				for i := range 3 {
					invs = append(invs, &billingv1.Invoice{InvoiceId: fmt.Sprintf("INV-202609-%s-%010d", c.payer, i), PayerAccountId: c.payer,
						Month: "2026-09", SourceAccountId: fmt.Sprintf("5%011d", i+1), Seller: sellerUS, Currency: "USD", Total: "1.11"})
				}
				mc := &billingv1.MonthClosed{PayerAccountId: c.payer, Month: "2026-09", InvoiceDate: "2026-10-02"}
				var month []*billingv1.Event
				if c.counted {
					mc.InvoiceCount = 3
					month = []*billingv1.Event{closeEvent(closedAt, mc), closeEvent(closedAt, &billingv1.InvoicesIssued{Invoices: invs})}
				} else {
					month = []*billingv1.Event{nil}
					for _, inv := range invs {
						mc.InvoiceIds = append(mc.InvoiceIds, inv.GetInvoiceId())
						month = append(month, closeEvent(closedAt, &billingv1.InvoiceIssued{Invoice: inv}))
					}
					month[0] = closeEvent(closedAt, mc)
				}
				if domain.ClosedInvoiceCount(mc) != 3 {
					t.Fatalf("MonthClosed %v counts %d invoices", mc, domain.ClosedInvoiceCount(mc))
				}
				appends := []eventstore.StreamAppend{{Stream: domain.MonthStream(c.payer, "2026-09"), Events: month}}
				for pp := uint32(0); pp < domain.UsagePartitions; pp++ {
					stream := domain.UsageStream("2026-09", pp)
					recs, err := store.ReadStream(ctx, stream)
					if err != nil {
						t.Fatal(err)
					}
					appends = append(appends, eventstore.StreamAppend{Stream: stream, ExpectedVersion: uint64(len(recs)),
						Events: []*billingv1.Event{closeEvent(closedAt, &billingv1.UsageMonthClosed{PayerAccountId: c.payer, Month: "2026-09"})}})
				}
				posting := func(month string, inv *billingv1.Invoice) *billingv1.Event {
					return closeEvent(closedAt, &billingv1.InvoicesPosted{PayerAccountId: c.payer, Month: month, Invoices: []*billingv1.InvoiceSummary{{
						InvoiceId: inv.GetInvoiceId(), Month: month, SourceAccountId: inv.GetSourceAccountId(), Seller: sellerUS, Currency: "USD", Total: "1.11"}}})
				}
				rs := domain.ReceivableStream(c.payer)
				recv := eventstore.StreamAppend{Stream: rs}
				for _, inv := range invs[:c.postings] {
					recv.Events = append(recv.Events, posting("2026-09", inv))
				}
				recs, err := store.Append(ctx, append(appends, recv)...)
				if err != nil {
					t.Fatal(err)
				}
				october := &billingv1.Invoice{InvoiceId: "INV-202610-" + c.payer + "-0000000000", SourceAccountId: "500000000001"}
				if _, err := store.Append(ctx, eventstore.StreamAppend{Stream: rs, ExpectedVersion: uint64(c.postings),
					Events: []*billingv1.Event{posting("2026-10", october)}}); err != nil {
					t.Fatal(err)
				}

				seal, err := commands.NewSealer(store, newClock(), key, nil).Seal(ctx, recs[0])
				if c.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), c.wantErr) {
						t.Fatalf("seal: %v, want an error naming %q", err, c.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				heads := map[string]*billingv1.SealedStream{}
				for _, s := range seal.GetStreams() {
					heads[s.GetStream()] = s
				}
				lastPosting := recs[len(recs)-1].Event
				if h := heads[rs]; lastPosting.GetInvoicesPosted() == nil || h.GetVersion() != 3 || !bytes.Equal(h.GetHash(), lastPosting.GetHash()) {
					t.Fatalf("receivable sealed at version %d, want 3 (the close's last posting, not October's)", h.GetVersion())
				}
				if h := heads[domain.MonthStream(c.payer, "2026-09")]; len(heads) != 1+domain.UsagePartitions+1 || h.GetVersion() != uint64(len(month)) {
					t.Fatalf("seal names %d streams, the month stream at version %d; want %d streams and version %d",
						len(heads), h.GetVersion(), 1+domain.UsagePartitions+1, len(month))
				}
			})
		}
	})
}
