package main

import (
	"maps"
	"strings"
	"testing"
)

// `gantry agent --label` took "zone" (no '=') as zone="" and a bad key as
// it was, which the server stored and no apply could write back; a
// node-restricted key made the node fail to register after it joined.
// They are checked before the node joins.
func TestParseNodeLabels(t *testing.T) {
	for _, tc := range []struct {
		flags   []string
		want    map[string]string
		wantErr string
	}{
		{flags: nil, want: map[string]string{}},
		{flags: []string{"zone=a", "disk=", "example.com/tier=gold"}, want: map[string]string{"zone": "a", "disk": "", "example.com/tier": "gold"}},
		{flags: []string{"zone"}, wantErr: "give KEY=VALUE"},
		{flags: []string{"bad key=x"}, wantErr: "invalid label key"},
		{flags: []string{"zone=not ok"}, wantErr: "invalid label value"},
		{flags: []string{"node-restriction.gantry.dev/trusted=yes"}, wantErr: "set by a cluster admin"},
	} {
		got, err := parseNodeLabels(tc.flags)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseNodeLabels(%q) = %v, %v; want an error with %q", tc.flags, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("parseNodeLabels(%q) = %v, %v; want %v", tc.flags, got, err, tc.want)
		}
	}
}
