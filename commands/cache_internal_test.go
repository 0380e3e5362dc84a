package commands

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func cacheRecs(stream string, n int) []eventstore.Record {
	out := make([]eventstore.Record, n)
	for i := range out {
		out[i] = eventstore.Record{Position: uint64(i + 1), Event: &billingv1.Event{Stream: stream, StreamVersion: uint64(i + 1), EventId: fmt.Sprintf("e-%04d", i)}}
	}
	return out
}

// TestStreamCacheStaysWithinItsBytes: the cache holds at most its limit of
// encoded events: it grows a stream by its tail, starts afresh when the
// limit would be passed, and never keeps a stream larger than the limit.
func TestStreamCacheStaysWithinItsBytes(t *testing.T) {
	one := proto.Size(cacheRecs("billing.org.1", 1)[0].Event)
	c := newStreamCache(10 * one)
	c.put("billing.org.1", cacheRecs("billing.org.1", 4))
	c.put("billing.org.2", cacheRecs("billing.org.2", 4))
	if c.total != 8*one || len(c.get("billing.org.1")) != 4 {
		t.Fatalf("total %d (want %d), org 1 holds %d", c.total, 8*one, len(c.get("billing.org.1")))
	}
	c.put("billing.org.1", cacheRecs("billing.org.1", 3)) // a shorter prefix changes nothing
	if len(c.get("billing.org.1")) != 4 || c.total != 8*one {
		t.Fatalf("a shorter prefix replaced the cached one: %d events, total %d", len(c.get("billing.org.1")), c.total)
	}
	c.put("billing.org.1", cacheRecs("billing.org.1", 6)) // 10 in all: still fits
	if c.total != 10*one || len(c.get("billing.org.2")) != 4 {
		t.Fatalf("total %d, want %d with both streams", c.total, 10*one)
	}
	c.put("billing.org.2", cacheRecs("billing.org.2", 5)) // 11: start afresh with this stream alone
	if c.total != 5*one || c.get("billing.org.1") != nil || len(c.get("billing.org.2")) != 5 {
		t.Fatalf("after passing the limit: total %d, org 1 %d, org 2 %d", c.total, len(c.get("billing.org.1")), len(c.get("billing.org.2")))
	}
	c.put("billing.org.3", cacheRecs("billing.org.3", 11)) // larger than the whole cache: not kept
	if c.get("billing.org.3") != nil || c.total != 5*one {
		t.Fatalf("a stream larger than the cache was kept: total %d", c.total)
	}
	c.put("billing.org.2", cacheRecs("billing.org.2", 12)) // a kept stream outgrowing the cache leaves it
	if c.get("billing.org.2") != nil || c.total != 0 {
		t.Fatalf("a stream that outgrew the cache stayed: total %d", c.total)
	}
}
