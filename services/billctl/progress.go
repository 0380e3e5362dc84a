package main

import (
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a byte progress bar on stderr, shown only when stderr is a
// terminal: never in tests, pipes or CI logs. A nil *progress does nothing, so
// callers need no checks.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress returns a bar over total bytes (-1 = unknown, a spinner), or nil
// when stderr is not a terminal.
func (a *app) newProgress(description string, total int64) *progress {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

// set moves the bar to n bytes done.
func (p *progress) set(n int64) {
	if p != nil {
		_ = p.bar.Set64(n)
	}
}

// clear erases the bar before a line is printed on stderr; the next set
// draws it again below that line.
func (p *progress) clear() {
	if p != nil {
		_ = p.bar.Clear()
	}
}

// finish removes the bar.
func (p *progress) finish() {
	if p != nil {
		_ = p.bar.Finish()
	}
}

// fileSize is the size of a regular file, or -1 (stdin, a pipe).
func fileSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return -1
	}
	return st.Size()
}
