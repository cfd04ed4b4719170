package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// parseLogfmt splits one line of slog's text handler into its key=value
// attributes. Quoted values are unquoted; a malformed tail is dropped.
func parseLogfmt(line string) map[string]string {
	out := map[string]string{}
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			break
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				break
			}
			v, err := strconv.Unquote(s[:end+1])
			if err != nil {
				break
			}
			val, s = v, s[end+1:]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val, s = s[:sp], s[sp+1:]
		} else {
			val, s = s, ""
		}
		out[key] = val
		s = strings.TrimLeft(s, " ")
	}
	return out
}

// logTimings are the durations the components log at debug level about
// one instance.
type logTimings struct {
	network time.Duration // network.Setup ("instance attached")
	bind    time.Duration // scheduler placement and bind write ("instance bound")
}

// readLogTimings collects, per instance key (namespace/name), what gantry
// up logged at debug level. The network logs the container ID
// (namespace_name); it is mapped back to the key.
func readLogTimings(path string) (map[string]logTimings, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]logTimings{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="instance attached"`) && !strings.Contains(line, `msg="instance bound"`) {
			continue
		}
		kv := parseLogfmt(line)
		took, err := time.ParseDuration(kv["took"])
		if err != nil {
			continue
		}
		switch kv["msg"] {
		case "instance attached":
			key := strings.Replace(kv["instance"], "_", "/", 1)
			t := out[key]
			t.network = took
			out[key] = t
		case "instance bound":
			t := out[kv["instance"]]
			t.bind = took
			out[kv["instance"]] = t
		}
	}
	return out, sc.Err()
}
