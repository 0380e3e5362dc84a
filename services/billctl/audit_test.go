package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	ledgerjs "github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func auditTestEvent(name string) *billingv1.Event {
	return &billingv1.Event{
		EventId: name,
		Actor:   "test",
		Payload: &billingv1.Event_OrganizationRegistered{OrganizationRegistered: &billingv1.OrganizationRegistered{
			ManagementAccountId: "111111111111", Name: name,
		}},
	}
}

func TestAuditVerify(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	store, err := ledgerjs.Open(ctx, nc, ledgerjs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	streams := []string{"billing.org.111111111111", "billing.transfer.rt-1"}
	for _, st := range streams {
		if _, err := store.Append(ctx, eventstore.StreamAppend{Stream: st, Events: []*billingv1.Event{
			auditTestEvent(st + "-1"), auditTestEvent(st + "-2"),
		}}); err != nil {
			t.Fatal(err)
		}
	}

	code, stdout, stderr := runCLI(t, "", "audit", "verify", "--nats-url", url)
	if code != 0 || stdout != "verified 2 streams, 4 events: every hash chain intact\n" {
		t.Fatalf("intact: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// Forge version 3 of the transfer stream past the adapter: altered content
	// under the hash of other content.
	forged := auditTestEvent("forged")
	recs, err := store.ReadStream(ctx, streams[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := eventstore.Seal(forged, streams[1], 3, recs[1].Event.GetHash()); err != nil {
		t.Fatal(err)
	}
	forged.GetOrganizationRegistered().Name = "Mallory Co"
	data, err := proto.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := nc.Request(streams[1], data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ack.Data), `"error"`) {
		t.Fatalf("forge: %s", ack.Data)
	}

	code, stdout, stderr = runCLI(t, "", "audit", "verify", "--nats-url", url)
	want := "BROKEN: stream billing.transfer.rt-1 at version 3: hash does not match the event's content\n"
	if code != 1 || stdout != want {
		t.Fatalf("forged: exit %d, stdout %q, stderr %q; want exit 1, %q", code, stdout, stderr, want)
	}

	// A filter that leaves the broken stream out passes.
	code, stdout, _ = runCLI(t, "", "audit", "verify", "--nats-url", url, "--filter", "billing.org.>")
	if code != 0 || !strings.HasPrefix(stdout, "verified 1 streams, 2 events") {
		t.Fatalf("filtered: exit %d, stdout %q", code, stdout)
	}

	code, stdout, stderr = runCLI(t, "", "-o", "json", "audit", "verify", "--nats-url", url)
	var out struct {
		Streams uint64 `json:"streams"`
		Events  uint64 `json:"events"`
		Intact  bool   `json:"intact"`
		Breaks  []struct {
			Stream  string `json:"stream"`
			Version uint64 `json:"version"`
			Reason  string `json:"reason"`
		} `json:"breaks"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("json: %v: %q (stderr %q)", err, stdout, stderr)
	}
	if code != 1 || out.Intact || out.Streams != 2 || out.Events != 5 ||
		len(out.Breaks) != 1 || out.Breaks[0].Stream != streams[1] || out.Breaks[0].Version != 3 {
		t.Fatalf("json: exit %d, %s", code, stdout)
	}
}
