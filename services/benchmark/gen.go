package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Accounts are 12-digit ids 200000000000+i; organization k is accounts
// [k*orgSize, (k+1)*orgSize), its first account the management account.
const orgSize = 100

func accountID(i int) string { return fmt.Sprintf("%012d", 200_000_000_000+i) }

var services = []string{"AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS", "AmazonCloudFront"}

// generator makes ~200-byte usage records (JSON, proto field names) with
// unique usage ids and exact decimal amounts; it keeps the exact sum of
// billed_cost in micro-units, to check the read model against.
type generator struct {
	rng      *rand.Rand
	accounts []string
	month    time.Time
	hours    int // hours in the month
}

func newGenerator(seed uint64, accounts int, month string) *generator {
	m, err := time.Parse("2006-01", month)
	if err != nil {
		panic(err)
	}
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), month: m}
	for i := range accounts {
		g.accounts = append(g.accounts, accountID(i))
	}
	g.hours = int(m.AddDate(0, 1, 0).Sub(m).Hours())
	return g
}

// record appends one JSON record to b and returns it with its billed cost in
// micro-units.
func (g *generator) record(b []byte, id string) ([]byte, int64) {
	hour := g.rng.IntN(g.hours)
	start := g.month.Add(time.Duration(hour) * time.Hour)
	svc := g.rng.IntN(len(services))
	qtyMilli := g.rng.Int64N(100_000)
	costMicro := g.rng.Int64N(10_000_000)
	b = append(b, `{"usage_id":"`...)
	b = append(b, id...)
	b = append(b, `","account_id":"`...)
	b = append(b, g.accounts[g.rng.IntN(len(g.accounts))]...)
	b = append(b, `","charge_period_start":"`...)
	b = start.AppendFormat(b, time.RFC3339)
	b = append(b, `","charge_period_end":"`...)
	b = start.Add(time.Hour).AppendFormat(b, time.RFC3339)
	b = append(b, `","service":"`...)
	b = append(b, services[svc]...)
	b = append(b, `","quantity":"`...)
	b = appendFixed(b, qtyMilli, 3)
	b = append(b, `","billed_cost":"`...)
	b = appendFixed(b, costMicro, 6)
	b = append(b, `","currency":"USD"}`...)
	return b, costMicro
}

// appendFixed appends v/10^d as a plain decimal with d fraction digits.
func appendFixed(b []byte, v int64, d int) []byte {
	p := int64(1)
	for range d {
		p *= 10
	}
	b = strconv.AppendInt(b, v/p, 10)
	b = append(b, '.')
	frac := strconv.FormatInt(v%p, 10)
	for i := len(frac); i < d; i++ {
		b = append(b, '0')
	}
	return append(b, frac...)
}

// workload is the generated records of one ingest run.
type workload struct {
	month   string
	lines   [][]byte // one record per element, no newline
	batches [][]byte // JSON Lines payloads of up to batch records
	micros  int64    // exact sum of billed_cost, micro-units
	bytes   int
}

// generate makes n records of month with ids prefix-0, prefix-1, ….
func generate(seed uint64, accounts int, month, prefix string, n, batch int) *workload {
	g := newGenerator(seed, accounts, month)
	w := &workload{month: month, lines: make([][]byte, 0, n)}
	buf := make([]byte, 0, 256*n)
	for i := range n {
		start := len(buf)
		var c int64
		buf, c = g.record(buf, prefix+"-"+strconv.Itoa(i))
		w.lines = append(w.lines, buf[start:len(buf):len(buf)])
		w.micros += c
		w.bytes += len(buf) - start
	}
	for i := 0; i < n; i += batch {
		var p []byte
		for _, l := range w.lines[i:min(i+batch, n)] {
			p = append(p, l...)
			p = append(p, '\n')
		}
		w.batches = append(w.batches, p)
	}
	return w
}

// microsString renders micro-units as the read model's canonical decimal
// (no trailing zeros of the fraction).
func microsString(v int64) string {
	s := string(appendFixed(nil, v, 6))
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}
