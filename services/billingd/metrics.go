package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are billingd's Prometheus series, served on GET /metrics.
type metrics struct {
	registry *prometheus.Registry
	usage    *prometheus.CounterVec
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: reg,
		usage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billing_usage_records_total",
			Help: "Usage records ingested, by outcome (ACCEPTED, DUPLICATE, REJECTED) and dead-letter reason (U4).",
		}, []string{"status", "reason"}),
	}
	reg.MustRegister(m.usage)
	return m
}

// usageOutcome counts one record's outcome.
func (m *metrics) usageOutcome(status, reason string) { m.usage.WithLabelValues(status, reason).Inc() }

// handler serves the registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
