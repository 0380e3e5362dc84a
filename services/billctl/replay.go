package main

import "fmt"

// replayCmd is `billctl replay --month M [--as-of T] [--verify]` (DESIGN R2):
// rebuild a month's read models from the events into a scratch store, print a
// digest and totals per read model, and with --verify compare them with the
// live tables (QueryService.MonthDigest), exiting non-zero on any difference.
//
// Stub: the lead implements it (issue 3).
type replayCmd struct {
	Month  string `required:"" help:"Month to rebuild, YYYY-MM." placeholder:"YYYY-MM"`
	AsOf   string `name:"as-of" help:"Only events recorded at or before this time (RFC 3339)." placeholder:"T"`
	Verify bool   `help:"Compare with the live read models; exit status 1 on any difference."`
}

// Run says that replay is not implemented yet and exits with status 2.
func (c *replayCmd) Run(a *app) error {
	fmt.Fprintln(a.stderr, "replay is implemented by the lead (issue 3)")
	return exitStatus(exitUsage)
}
