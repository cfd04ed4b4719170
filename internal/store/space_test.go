package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A store that fills its quota refuses writes with a message that says so
// (503, not a bare etcd error); a maintenance round leaves the alarm while
// the data still fills the quota, and once objects are deleted, reclaims
// the space and accepts writes again, keeping what was stored.
func TestKeepSpaceReclaimsAFullStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const quota = 8 << 20
	e, err := StartEmbedded(ctx, EmbedConfig{Dir: t.TempDir(), QuotaBytes: quota})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := New(e.Client, "")

	kept := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "kept"}}
	if err := s.Create(ctx, kept); err != nil {
		t.Fatal(err)
	}
	gone := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "gone"}}
	if err := s.Create(ctx, gone); err != nil {
		t.Fatal(err)
	}

	// A round on a store far from its quota does nothing.
	r, err := e.spaceRound(ctx)
	if err != nil || r.Alarmed || r.Defragged || r.Compacted {
		t.Fatalf("round on an empty store: %+v, %v; want nothing done", r, err)
	}

	// fill writes until etcd raises its NOSPACE alarm, under new keys.
	value := strings.Repeat("x", 512<<10)
	n := 0
	fill := func() {
		t.Helper()
		for ; n < 400; n++ {
			_, err := e.Client.Put(ctx, fmt.Sprintf("/fill/%03d", n), value)
			switch {
			case err == nil:
			case noSpace(err):
				n++
				return
			default:
				t.Fatalf("put %d: %v", n, err)
			}
		}
		t.Fatal("the store never reached its quota")
	}
	fill()
	err = s.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "late"}})
	if !errors.Is(err, v1.ErrUnavailable) || !strings.Contains(err.Error(), "the store is full") {
		t.Fatalf("create in a full store: %v; want ErrUnavailable saying the store is full", err)
	}

	// Nothing deleted: compaction and defragmentation free only what
	// bbolt had not reused; the alarm stays unless that brought the data
	// under 80 % of the quota. (etcd raises the alarm on the file's size,
	// which grows in steps, so how full the data is then varies: after a
	// round that disarmed, the store is filled again, until a round
	// finds it too full to disarm.)
	for attempt := 0; ; attempt++ {
		r, err = e.spaceRound(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Alarmed || !r.Compacted || !r.Defragged || r.Disarmed != mayDisarm(r.InUseBytes, quota) {
			t.Fatalf("round on a full store: %+v; want alarmed, compacted, defragmented, disarmed only under 80 %%", r)
		}
		if alarmed(ctx, t, e.Client) == r.Disarmed {
			t.Fatalf("the NOSPACE alarm after a round that says disarmed=%v", r.Disarmed)
		}
		if !r.Disarmed {
			break
		}
		if attempt == 5 {
			t.Fatal("every round found room to disarm")
		}
		fill()
	}

	// Deletes work under the alarm; the next round reclaims and disarms.
	if _, err := s.Delete(ctx, KindFor[*v1.Namespace](), "", "gone", gone.Metadata.Revision); err != nil {
		t.Fatalf("store delete under the alarm: %v", err)
	}
	if _, err := e.Client.Delete(ctx, "/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete under the alarm: %v", err)
	}
	r, err = e.spaceRound(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Disarmed || r.InUseBytes >= quota/2 {
		t.Fatalf("round after the deletes: %+v; want disarmed with most space free", r)
	}
	if alarmed(ctx, t, e.Client) {
		t.Fatal("the NOSPACE alarm is still raised")
	}
	if err := s.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "late"}}); err != nil {
		t.Fatalf("create after reclaiming: %v", err)
	}
	got, err := s.Get(ctx, KindFor[*v1.Namespace](), "", "kept")
	if err != nil || got.GetMeta().UID != kept.Metadata.UID {
		t.Fatalf("the object stored before the store filled: %v, %v", got, err)
	}
}

func TestMayDisarm(t *testing.T) {
	for _, tc := range []struct {
		inUse, quota int64
		want         bool
	}{
		{0, 100, true}, {79, 100, true}, {80, 100, false}, {200, 100, false},
		{6 << 20, 8 << 20, true}, {7 << 20, 8 << 20, false},
	} {
		if got := mayDisarm(tc.inUse, tc.quota); got != tc.want {
			t.Errorf("mayDisarm(%d, %d) = %v, want %v", tc.inUse, tc.quota, got, tc.want)
		}
	}
}

// Without the alarm, a round defragments only a file that is at least
// half the quota and at least half free pages.
func TestKeepSpaceDefragmentsAMostlyFreeFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const quota = 8 << 20
	e, err := StartEmbedded(ctx, EmbedConfig{Dir: t.TempDir(), QuotaBytes: quota})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	value := strings.Repeat("y", 512<<10)
	for i := 0; i < 10; i++ { // 5 MiB: past half the quota, under all of it
		if _, err := e.Client.Put(ctx, fmt.Sprintf("/big/%d", i), value); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	r, err := e.spaceRound(ctx)
	if err != nil || r.Defragged {
		t.Fatalf("round with the file full of live data: %+v, %v; want no defragmentation", r, err)
	}
	resp, err := e.Client.Delete(ctx, "/big/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// etcd reports the space in use as of its backend's last commit
	// (every 100 ms): a round right after the compaction may still see
	// it full, and the next round (30 s later in a server) does the
	// work. Rounds are asked for here until one sees it, for a while.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, err = e.spaceRound(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Defragged || time.Now().After(deadline) {
			break
		}
	}
	if !r.Defragged || r.FreedBytes <= 0 || r.Alarmed {
		t.Fatalf("round with the file mostly free: %+v; want defragmented and smaller", r)
	}
}

func alarmed(ctx context.Context, t *testing.T, cli *clientv3.Client) bool {
	t.Helper()
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range resp.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			return true
		}
	}
	return false
}

// CompactHistory leaves nothing before the current revision: a read at
// an earlier revision is refused as compacted, the current values stay.
func TestCompactHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := New(e.Client, "")
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "team"}}
	if err := s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	first := ns.Metadata.Revision
	ns.Metadata.Labels = map[string]string{"v": "2"}
	if err := s.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	rev, err := s.CompactHistory(ctx)
	if err != nil || rev < ns.Metadata.Revision {
		t.Fatalf("CompactHistory: %d, %v; want at least revision %d", rev, err, ns.Metadata.Revision)
	}
	if _, _, err := s.List(ctx, KindFor[*v1.Namespace](), ListOptions{Revision: first}); !errors.Is(err, v1.ErrResyncRequired) {
		t.Fatalf("list at revision %d after compaction: %v; want it compacted away", first, err)
	}
	got, err := s.Get(ctx, KindFor[*v1.Namespace](), "", "team")
	if err != nil || got.GetMeta().Labels["v"] != "2" {
		t.Fatalf("current value after compaction: %v, %v", got, err)
	}
	if _, err := s.CompactHistory(ctx); err != nil {
		t.Fatalf("a second compaction at the same revision: %v", err)
	}
}
