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

// checkpointer is what a projection runner tells about its progress.
type checkpointer interface{ Checkpoint() uint64 }

// namedRunner is a projection runner with its name.
type namedRunner struct {
	name string
	r    checkpointer
}

// lagOf returns how many store positions a runner is behind the store's last
// position (an upper bound on its unapplied events: positions of other streams
// count too).
func lagOf(last uint64, r checkpointer) uint64 {
	if cp := r.Checkpoint(); cp < last {
		return last - cp
	}
	return 0
}

// registerProjectorMetrics adds billing_projector_checkpoint and
// billing_projector_lag_positions per projection, read at scrape time.
func (m *metrics) registerProjectorMetrics(store eventstore.Store, runners []namedRunner) {
	for _, nr := range runners {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "billing_projector_checkpoint", Help: "Store position the projection's read model reflects.",
			ConstLabels: prometheus.Labels{"projection": nr.name},
		}, func() float64 { return float64(nr.r.Checkpoint()) }))
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "billing_projector_lag_positions", Help: "Store positions the projection is behind the store's last position.",
			ConstLabels: prometheus.Labels{"projection": nr.name},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			last, err := store.LastPosition(ctx)
			if err != nil {
				return -1
			}
			return float64(lagOf(last, nr.r))
		}))
	}
}

// readyz answers 200 when billingd is ready and every projector is at most
// maxLag positions behind the store, else 503; the body lists each projector's
// checkpoint and lag.
func readyz(store eventstore.Store, runners []namedRunner, ready func() bool, maxLag uint64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		type proj struct {
			Name       string `json:"projection"`
			Checkpoint uint64 `json:"checkpoint"`
			Lag        uint64 `json:"lag_positions"`
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
		for _, nr := range runners {
			p := proj{Name: nr.name, Checkpoint: nr.r.Checkpoint(), Lag: lagOf(last, nr.r)}
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
