package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is a snapshot of CPU time: the whole machine's busy time, billingd's
// and this process's. Figures carry the difference over their interval, so a
// reader can tell a slow figure from a busy machine (the "other" share is CPU
// that neither billingd nor the benchmark used) and compare CPU per record,
// which contention distorts much less than throughput.
type cpuSample struct {
	at       time.Time
	busy     float64 // seconds, all CPUs, non-idle
	billingd float64 // seconds, utime+stime
	self     float64 // seconds, utime+stime
}

// procCPU is utime+stime of pid ("self") in seconds.
func procCPU(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	// After the command: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

// machineBusy is the non-idle CPU time of every CPU, in seconds.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest, guest_nice are already in user, nice
			break
		}
		busy += n
	}
	return busy / clockTicks
}

func sampleCPU(billingdPid string) cpuSample {
	s := cpuSample{at: time.Now(), busy: machineBusy(), self: procCPU("self")}
	if billingdPid != "" {
		s.billingd = procCPU(billingdPid)
	}
	return s
}

// cpuSince describes the CPU used since s, per record when records > 0.
func cpuSince(s cpuSample, billingdPid string, records int) obj {
	e := sampleCPU(billingdPid)
	wall := e.at.Sub(s.at).Seconds()
	b, me, busy := e.billingd-s.billingd, e.self-s.self, e.busy-s.busy
	other := max(0, busy-b-me)
	o := obj{
		{"billingd_s", round(b, 2)}, {"benchmark_s", round(me, 2)}, {"other_processes_s", round(other, 2)},
		{"machine_busy_pct", round(100*busy/(wall*float64(numCPU())), 1)},
	}
	if records > 0 {
		o = append(o, kv{"billingd_us_per_record", round(b*1e6/float64(records), 1)})
	}
	return o
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func numCPU() int { return runtime.NumCPU() }
