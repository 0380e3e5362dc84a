package ingest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func TestParseLinesKeepsLineNumbersAndMalformedPayloads(t *testing.T) {
	payload := "{\"usage_id\":\"u-1\"}\n\n  \n{oops\n{\"usage_id\":\"u-2\",\"bogus\":1}\n{\"usage_id\":\"u-3\"}"
	items, lines := ParseLines([]byte(payload), "test")
	if len(items) != 4 || lines[0] != 1 || lines[1] != 4 || lines[2] != 5 || lines[3] != 6 {
		t.Fatalf("items %d lines %v", len(items), lines)
	}
	if items[0].Record.GetUsageId() != "u-1" || items[1].Record != nil || string(items[1].Raw) != "{oops" ||
		!strings.HasPrefix(items[1].MalformedReason, "line 4:") || items[2].Record != nil || items[3].Record.GetUsageId() != "u-3" {
		t.Fatalf("items %+v", items)
	}
	if items[1].Origin != "test line 4" {
		t.Fatalf("origin %q", items[1].Origin)
	}
}

// TestBothNATSPathsIngestExactlyOnce drives the request-reply and the durable
// paths on a real embedded NATS server into a real usage writer.
func TestBothNATSPathsIngestExactlyOnce(t *testing.T) {
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store := memstore.New()
	clock := fixedClock{time.Date(2026, 9, 10, 0, 0, 0, 0, time.UTC)}
	p := commands.New(store, clock, commands.Options{})
	if _, err := p.Execute(context.Background(), "t", &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{
		RegisterOrganization: &billingv1.RegisterOrganization{ManagementAccountId: "222222222222", Name: "S"}}}); err != nil {
		t.Fatal(err)
	}
	dir := commands.NewDirectory(store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = dir.Run(ctx) }()
	<-dir.Ready()
	w := commands.NewUsageWriter(store, clock, dir, commands.UsageWriterOptions{})
	srv := &Server{NC: nc, Writer: w, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Verifier: testVerifier(t)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	rec := func(id, cost string) string {
		return `{"usage_id":"` + id + `","account_id":"222222222222","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","quantity":"1","billed_cost":"` + cost + `","currency":"USD"}`
	}
	payload := rec("u-1", "0.80") + "\n" + "{not json\n" + rec("u-1", "0.80") + "\n" + rec("u-1", "0.81") + "\n" + rec("u-2", "0.096")
	var reply *nats.Msg
	for i := 0; i < 50; i++ { // the responder subscribes asynchronously
		if reply, err = nc.RequestMsg(withToken(BatchSubject, []byte(payload), ingestToken), 5*time.Second); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	res := &billingv1.IngestBatchResponse{}
	if err := protojson.Unmarshal(reply.Data, res); err != nil {
		t.Fatalf("reply %s: %v", reply.Data, err)
	}
	got := []string{}
	for _, r := range res.GetResults() {
		got = append(got, r.GetStatus()+":"+r.GetReason()+":"+string(rune('0'+r.GetIndex())))
	}
	want := []string{"ACCEPTED::1", "REJECTED:MALFORMED:2", "DUPLICATE::3", "REJECTED:USAGE_ID_CONFLICT:4", "ACCEPTED::5"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("results %v, want %v", got, want)
	}

	// Durable path: publisher acks, then the consumer ingests; u-2 again is a duplicate.
	js, _ := njs.New(nc)
	for _, body := range []string{rec("u-3", "1.5"), rec("u-2", "0.096")} {
		if _, err := js.PublishMsg(ctx, signed([]byte(body), ingestToken)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids := map[string]int{}
		_ = store.ReadAll(ctx, 0, "billing.usage.>", func(r eventstore.Record) error {
			for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
				ids[b.GetRecord().GetUsageId()]++
			}
			return nil
		})
		if ids["u-3"] == 1 {
			if len(ids) != 3 || ids["u-1"] != 1 || ids["u-2"] != 1 {
				t.Fatalf("booked %v", ids)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("durable record not ingested: %v", ids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
