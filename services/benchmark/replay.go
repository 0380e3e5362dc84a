package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/projections"
)

// childResult is what a replay child prints.
type childResult struct {
	Seconds float64 `json:"seconds"`
	Events  uint64  `json:"events"`
	Records uint64  `json:"records"`
	Bytes   uint64  `json:"bytes"`
	HWMKB   int64   `json:"hwm_kb"`
	RSSKB   int64   `json:"rss_kb"`
}

// runChild is `benchmark --child replay|rawread`: one read of a month in a
// fresh process, so that the process's peak RSS is the read's own.
func runChild(ctx context.Context, cfg config) error {
	nc, err := nats.Connect(cfg.natsURL, nats.Name("benchmark-"+cfg.child))
	if err != nil {
		return err
	}
	defer nc.Close()
	var res childResult
	switch cfg.child {
	case "replay":
		res, err = replayOnce(ctx, nc, cfg.month, uint64(cfg.expect))
	case "rawread":
		res, err = rawRead(ctx, nc, cfg.month)
	default:
		return fmt.Errorf("unknown --child %q", cfg.child)
	}
	if err != nil {
		return err
	}
	r, err := readRSS("self")
	if err != nil {
		return err
	}
	res.HWMKB, res.RSSKB = r.hwm, r.now
	return json.NewEncoder(os.Stdout).Encode(res)
}

// replayOnce runs projections.ReplayMonthWith over month and checks the record count.
func replayOnce(ctx context.Context, nc *nats.Conn, month string, expect uint64) (childResult, error) {
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		return childResult{}, err
	}
	var events uint64
	start := time.Now()
	d, err := projections.ReplayMonthWith(ctx, store, month, projections.ReplayOptions{
		Progress: func(e, _ uint64) { events = e },
	})
	elapsed := time.Since(start)
	if err != nil {
		return childResult{}, err
	}
	n, _, err := digestRecords(d)
	if err != nil {
		return childResult{}, err
	}
	if expect != 0 && n != expect {
		return childResult{}, fmt.Errorf("replay of %s counted %d records, want %d", month, n, expect)
	}
	return childResult{Seconds: elapsed.Seconds(), Events: events, Records: n}, nil
}

// rawRead reads the month's stored events with an ordered consumer (the kind
// ReadAll uses, same pull size) without decoding them.
func rawRead(ctx context.Context, nc *nats.Conn, month string) (childResult, error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return childResult{}, err
	}
	start := time.Now()
	st, err := js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		return childResult{}, err
	}
	cons, err := st.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{domain.UsageMonthFilter(month)},
		DeliverPolicy:  natsjs.DeliverAllPolicy,
	})
	if err != nil {
		return childResult{}, err
	}
	pending := cons.CachedInfo().NumPending
	var res childResult
	if pending > 0 {
		it, err := cons.Messages(natsjs.PullMaxMessages(1000))
		if err != nil {
			return childResult{}, err
		}
		for res.Events < pending {
			msg, err := it.Next(natsjs.NextContext(ctx))
			if err != nil {
				it.Stop()
				return childResult{}, err
			}
			res.Events++
			res.Bytes += uint64(len(msg.Data()))
		}
		it.Stop()
	}
	res.Seconds = time.Since(start).Seconds()
	_ = js.DeleteConsumer(context.WithoutCancel(ctx), jetstream.DefaultStreamName, cons.CachedInfo().Name)
	return res, nil
}

// runChildProc runs this program as a child and returns its result.
func runChildProc(ctx context.Context, kind, natsURL, month string, expect int) (childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return childResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "--child", kind, "--nats-url", natsURL, "--month", month, "--expect", strconv.Itoa(expect))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return childResult{}, fmt.Errorf("%s child: %w", kind, err)
	}
	var r childResult
	if err := json.Unmarshal(out, &r); err != nil {
		return childResult{}, fmt.Errorf("%s child: %w: %s", kind, err, out)
	}
	return r, nil
}

// bestOf runs a child n times and keeps the fastest run, with the highest peak RSS.
func bestOf(ctx context.Context, n int, kind, natsURL, month string, expect int) (childResult, error) {
	var best childResult
	for i := range n {
		r, err := runChildProc(ctx, kind, natsURL, month, expect)
		if err != nil {
			return childResult{}, err
		}
		hwm := max(best.HWMKB, r.HWMKB)
		if i == 0 || r.Seconds < best.Seconds {
			best = r
		}
		best.HWMKB = hwm
	}
	return best, nil
}
