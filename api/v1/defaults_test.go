package v1

import "testing"

// A lone port without a name is named "http" when it speaks HTTP and
// "port" when it is tcp or udp (its DNS SRV name is _port._tcp or
// _port._udp); among several ports, none is named for you.
func TestALonePortIsNamed(t *testing.T) {
	for _, tc := range []struct{ ports, want string }{
		{"[{port: 8080}]", "http"},
		{"[{port: 8080, protocol: http}]", "http"},
		{"[{port: 5432, protocol: tcp}]", "port"},
		{"[{port: 53, protocol: udp}]", "port"},
		{"[{port: 5432, protocol: tcp}, {name: admin, port: 8080}]", ""},
	} {
		o, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x\nports: " + tc.ports + "\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.ports, err)
			continue
		}
		if got := o.(*App).Spec.Ports[0].Name; got != tc.want {
			t.Errorf("%s: the first port is named %q; want %q", tc.ports, got, tc.want)
		}
	}
}

// maxUnavailable defaults to 0, or to 1 when maxSurge is 0: a rollout
// that may neither add nor take away an instance could never move.
func TestMaxUnavailableDefault(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		want     IntOrPercent
	}{
		{"{}", IntOrPercent{Value: 0}},
		{"{maxSurge: 1}", IntOrPercent{Value: 0}},
		{"{maxSurge: 0}", IntOrPercent{Value: 1}},
		{"{maxSurge: 0%}", IntOrPercent{Value: 1}},
		{"{maxSurge: 0, maxUnavailable: 2}", IntOrPercent{Value: 2}},
	} {
		o, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x\nstrategy: " + tc.strategy + "\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.strategy, err)
			continue
		}
		if got := *o.(*App).Spec.Strategy.MaxUnavailable; got != tc.want {
			t.Errorf("strategy %s: maxUnavailable %+v; want %+v", tc.strategy, got, tc.want)
		}
	}
}
