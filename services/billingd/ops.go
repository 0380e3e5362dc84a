package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Operations (issue #8 item 6): projector lag as metrics and in GET /readyz,
// and command latency by command and outcome.

// lagOf returns how many store positions a checkpoint is behind the store's
// last position (an upper bound on the unapplied events: positions of other
// streams count too).
func lagOf(last, checkpoint uint64) uint64 {
	if checkpoint < last {
		return last - checkpoint
	}
	return 0
}

// projectorCollector exports billing_projector_checkpoint and
// billing_projector_lag_positions for the projections the process reports on
// (statusSource), read at scrape time: the set changes as leases move.
type projectorCollector struct {
	store      eventstore.Store
	source     statusSource
	checkpoint *prometheus.Desc
	lag        *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c projectorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.checkpoint
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c projectorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := c.source(ctx)
	if err != nil {
		return
	}
	last, lastErr := c.store.LastPosition(ctx)
	for _, p := range list {
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(p.Checkpoint), p.Name)
		if lastErr == nil {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lagOf(last, p.Checkpoint)), p.Name)
		}
	}
}

// registerProjectorMetrics adds billing_projector_checkpoint and
// billing_projector_lag_positions per projection the process runs (or, in a
// query process, reads the checkpoint of).
func (m *metrics) registerProjectorMetrics(store eventstore.Store, source statusSource) {
	m.registry.MustRegister(projectorCollector{
		store:  store,
		source: source,
		checkpoint: prometheus.NewDesc("billing_projector_checkpoint",
			"Store position the projection's read model reflects.", []string{"projection"}, nil),
		lag: prometheus.NewDesc("billing_projector_lag_positions",
			"Store positions the projection is behind the store's last position.", []string{"projection"}, nil),
	})
}

// readyz answers 200 when billingd is ready and every projection it reports
// on (those it runs, or in a query process every projection's checkpoint in
// the read model) is at most maxLag positions behind the store, else 503; the
// body lists each one's checkpoint, lag and whether it runs here.
func readyz(store eventstore.Store, source statusSource, ready func() bool, maxLag uint64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		type proj struct {
			Name       string `json:"projection"`
			Checkpoint uint64 `json:"checkpoint"`
			Lag        uint64 `json:"lag_positions"`
			RunsHere   bool   `json:"runs_here"`
		}
		body := struct {
			Ready        bool   `json:"ready"`
			LastPosition uint64 `json:"last_position"`
			MaxLag       uint64 `json:"max_lag_positions"`
			Projectors   []proj `json:"projectors"`
			Error        string `json:"error,omitempty"`
		}{Ready: ready(), MaxLag: maxLag, Projectors: []proj{}}
		last, err := store.LastPosition(ctx)
		if err != nil {
			body.Ready, body.Error = false, "event store: "+err.Error()
		}
		body.LastPosition = last
		list, err := source(ctx)
		if err != nil {
			body.Ready, body.Error = false, "read model: "+err.Error()
		}
		for _, s := range list {
			p := proj{Name: s.Name, Checkpoint: s.Checkpoint, Lag: lagOf(last, s.Checkpoint), RunsHere: s.RunsHere}
			if p.Lag > maxLag {
				body.Ready = false
			}
			body.Projectors = append(body.Projectors, p)
		}
		w.Header().Set("Content-Type", "application/json")
		if !body.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	}
}

// timedExecutor records each command's latency by command and outcome code.
type timedExecutor struct {
	next commands.Executor
	hist *prometheus.HistogramVec
}

func (m *metrics) timed(next commands.Executor) commands.Executor {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "billing_command_duration_seconds",
		Help:    "Command latency from request to appended events (or rejection), by command and outcome (OK, a rejection code, or ERROR).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"command", "outcome"})
	m.registry.MustRegister(h)
	return timedExecutor{next: next, hist: h}
}

// Execute implements commands.Executor.
func (t timedExecutor) Execute(ctx context.Context, actor string, req *billingv1.ExecuteRequest) (*billingv1.CommandResult, error) {
	start := time.Now()
	res, err := t.next.Execute(ctx, actor, req)
	_, name, _ := commands.Command(req)
	outcome := "OK"
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			outcome = string(de.Code)
		} else {
			outcome = "ERROR"
		}
	}
	t.hist.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
	return res, err
}
