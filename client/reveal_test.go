package client

import (
	"encoding/json"
	"testing"
)

// decodeRevealed reads both answers: the base64 one, and the text one of
// a server from before it (where a key may be named "data").
func TestDecodeRevealed(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{`{"data":{"k":"/wCA"}}`, map[string]string{"k": "\xff\x00\x80"}},
		{`{"data":{}}`, map[string]string{}},
		{`{"k":"v","data":"text"}`, map[string]string{"k": "v", "data": "text"}},
		{`{"data":"only a key named data"}`, map[string]string{"data": "only a key named data"}},
		{`{}`, map[string]string{}},
	} {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.in), &raw); err != nil {
			t.Fatal(err)
		}
		got, err := decodeRevealed(raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %q, want %q", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if string(got[k]) != v {
				t.Fatalf("%s: got %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}
