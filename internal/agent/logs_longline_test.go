package agent

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/logfile"
)

// A line longer than logfile.MaxLineSize is stored as several records
// marked partial; the agent streamed each piece as a line of its own and
// dropped the mark, so `gantry logs` printed one long line as several,
// and `--tail 1` only its last piece.
func TestLogsOfALongLineComeWhole(t *testing.T) {
	a := &Agent{cfg: Config{DataDir: t.TempDir()}, workers: map[string]*worker{}}
	w, err := logfile.Create(a.LogPath("default", "web-a"), logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("y", 2*logfile.MaxLineSize+5)
	if _, err := w.Copy(logfile.Stdout, strings.NewReader("before\n"+long+"\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/instances/default/web-a/logs?tail=1", nil))
	var lines []LogLine
	sc := bufio.NewScanner(rec.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0].Line != long {
		t.Fatalf("tail=1 streamed %d line(s), the first of %d bytes; want the whole %d-byte line", len(lines), len(lines[0].Line), len(long))
	}
}
