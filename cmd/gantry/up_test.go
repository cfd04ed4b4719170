package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/dns"
)

func TestForwardFromFlag(t *testing.T) {
	withCluster := func(c string) []netip.Prefix {
		return append(slices.Clone(dns.DefaultForwardFrom), netip.MustParsePrefix(c))
	}
	for _, tc := range []struct {
		flag    []string
		cluster string
		want    []netip.Prefix
		err     string
	}{
		{nil, "10.77.0.0/16", dns.DefaultForwardFrom, ""},
		{nil, "198.18.0.0/15", withCluster("198.18.0.0/15"), ""},
		{nil, "198.18.3.1/15", withCluster("198.18.0.0/15"), ""},
		{nil, "not-a-net", nil, "--cluster-cidr"},
		{[]string{"none"}, "10.77.0.0/16", []netip.Prefix{}, ""},
		{[]string{"203.0.113.7/24", " 2001:db8::1 "}, "10.77.0.0/16",
			[]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::1/128")}, ""},
		{[]string{"10.0.0.0/8", "none"}, "10.77.0.0/16", nil, `"none" is not a network`},
		{[]string{"example.com"}, "10.77.0.0/16", nil, `"example.com" is not a network`},
	} {
		got, err := forwardFrom(tc.flag, tc.cluster)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q, %s: err %v, want one saying %q", tc.flag, tc.cluster, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("%q, %s: %v, %v; want %v", tc.flag, tc.cluster, got, err, tc.want)
		}
	}
}
