// Command benchjson turns `go test -bench` output on stdin into one JSON line per
// benchmark figure on stdout (the format of `make bench`), so the event store
// micro-benchmarks sit beside the end-to-end figures. Lines that are not
// benchmark results are dropped.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var resultLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

func main() {
	prefix := flag.String("prefix", "eventstore/", "prefix of every figure name")
	flag.Parse()
	sc := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		m := resultLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		fig := map[string]any{"figure": *prefix + strings.TrimPrefix(m[1], "Benchmark"), "iterations": atoi(m[3])}
		fields := strings.Fields(m[4])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			unit := fields[i+1]
			fig[unit] = v
			if strings.HasSuffix(unit, "/s") {
				fig["value"], fig["unit"] = v, unit
			}
		}
		if _, ok := fig["value"]; !ok {
			fig["value"], fig["unit"] = fig["ns/op"], "ns/op"
		}
		if err := out.Encode(fig); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
