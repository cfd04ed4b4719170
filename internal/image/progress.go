package image

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar is a one-line progress bar for long transfers, redrawn in place on
// a terminal:
//
//	pushing team/app:v1  [=============>        ]  61% 12.3 MB/20.1 MB  8.4 MB/s
//
// Its Update method fits the progress callback of Push. On anything but
// a terminal it draws nothing while running and prints one summary line
// at Finish, so logs and pipes stay clean. Safe for concurrent use.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	terminal bool
	width    int // of the bar itself, in cells
	start    time.Time
	drawn    time.Time
	done     int64
	total    int64
	now      func() time.Time
}

// redrawEvery limits redraws: enough to look live, few enough not to
// cost anything.
const redrawEvery = 100 * time.Millisecond

// NewBar makes a bar labelled label that draws on w.
func NewBar(w io.Writer, label string) *Bar {
	b := &Bar{w: w, label: label, width: 30, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b.terminal = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			// Leave room for the label and the figures.
			b.width = max(10, min(40, cols-len(label)-45))
		}
	}
	b.start = b.now()
	return b
}

// Update records progress: done of total bytes. A total of zero or less
// means unknown.
func (b *Bar) Update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done, b.total = done, total
	if !b.terminal {
		return
	}
	if now := b.now(); now.Sub(b.drawn) >= redrawEvery || (total > 0 && done >= total) {
		b.drawn = now
		fmt.Fprint(b.w, "\r"+b.line()+"\x1b[K")
	}
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.terminal {
		fmt.Fprint(b.w, "\r"+b.line()+"\x1b[K\n")
		return
	}
	fmt.Fprintln(b.w, b.line())
}

// line renders the bar and its figures.
func (b *Bar) line() string {
	elapsed := b.now().Sub(b.start)
	rate := ""
	if s := elapsed.Seconds(); s > 0 {
		rate = HumanBytes(int64(float64(b.done)/s)) + "/s"
	}
	if b.total <= 0 {
		return fmt.Sprintf("%s  %s  %s", b.label, HumanBytes(b.done), rate)
	}
	frac := min(1, float64(b.done)/float64(b.total))
	bar := b.width
	if !b.terminal {
		bar = 0
	}
	var sb strings.Builder
	sb.WriteString(b.label)
	if bar > 0 {
		filled := int(frac * float64(bar))
		sb.WriteString("  [")
		sb.WriteString(strings.Repeat("=", filled))
		if filled < bar {
			sb.WriteString(">")
			sb.WriteString(strings.Repeat(" ", bar-filled-1))
		}
		sb.WriteString("]")
	}
	fmt.Fprintf(&sb, " %3.0f%% %s/%s  %s", frac*100, HumanBytes(b.done), HumanBytes(b.total), rate)
	return sb.String()
}

// HumanBytes renders a size in decimal units, as registries and docker
// report them.
func HumanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
