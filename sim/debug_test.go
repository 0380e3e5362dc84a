package sim

import (
	"context"
	"fmt"
	"strings"
)

// debugDump renders the rows a query returns, one line each: with SIM_DEBUG
// set, a pro forma difference shows the projection's usage aggregates and
// billing groups, and a usage answer difference the events of the record's
// partition.
func (s *sim) debugDump(query string, args ...any) string {
	rows, err := s.sys.db.SQL().QueryContext(context.Background(), query, args...)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		_ = rows.Scan(ptrs...)
		out = append(out, fmt.Sprint(vals...))
	}
	return strings.Join(cols, " ") + "\n" + strings.Join(out, "\n")
}
