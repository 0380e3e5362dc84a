package main

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore/jetstream"
)

// TestX1_ShippedSellersOfRecordAreLoadedOnceAsEvents checks that the first start
// records the shipped sellers of record as ordinary events and a restart adds none.
func TestX1_ShippedSellersOfRecordAreLoadedOnceAsEvents(t *testing.T) {
	dir := t.TempDir()
	count := func(s *Server) map[string]int {
		nc, err := nats.Connect(s.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		store, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, c := range []string{"US", "DE", "FR", "GB", "JP", "IN", "BR", "CA", "AU", "KR", "ZA"} {
			recs, err := store.ReadStream(context.Background(), domain.SellerOfRecordStream(c))
			if err != nil {
				t.Fatal(err)
			}
			out[c] = len(recs)
			if c == "JP" && len(recs) == 1 {
				if got := recs[0].Event.GetSellerOfRecordSet().GetSeller(); got != "Amazon Web Services Japan G.K." {
					t.Errorf("JP seller %q", got)
				}
			}
		}
		return out
	}
	s, cancel := start(t, dir, nil)
	first := count(s)
	stop(t, s, cancel)
	s, cancel = start(t, dir, nil)
	defer stop(t, s, cancel)
	second := count(s)
	for c, n := range first {
		if n != 1 || second[c] != 1 {
			t.Errorf("%s: %d events after the first start, %d after the second; want 1 and 1", c, n, second[c])
		}
	}
}
