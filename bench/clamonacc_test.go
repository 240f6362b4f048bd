package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestInPselect(t *testing.T) {
	tests := []struct {
		name string
		line string
		want bool
	}{
		{"blocked in pselect6", fmt.Sprintf("%d 0x6 0x7ffd2a0 0x0 0x0 0x0 0x0 0x7ffd2a0 0x7f88b1e\n", unix.SYS_PSELECT6), true},
		{"blocked in futex", fmt.Sprintf("%d 0x563a18305168 0x80 0x0 0x0 0x0 0x0 0x7f 0x7f\n", unix.SYS_FUTEX), false},
		{"running", "running\n", false},
		{"blocked outside a system call", "-1 0x7ffd2a0 0x7f88b1e\n", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inPselect([]byte(tt.line)); got != tt.want {
				t.Errorf("inPselect(%q): got %v want %v", tt.line, got, tt.want)
			}
		})
	}
}

func TestCountMarks(t *testing.T) {
	header := "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nfanotify flags:34 event-flags:8000\n"
	mark := "fanotify ino:%d sdev:27 mflags:0 mask:8030000 ignored_mask:0 fhandle-bytes:c fhandle-type:1 f_handle:cd2181c00400000000000000\n"
	tests := []struct {
		name   string
		fdinfo string
		want   int
	}{
		{"no marks", header, 0},
		{"inode marks", header + fmt.Sprintf(mark, 4) + fmt.Sprintf(mark, 3) + fmt.Sprintf(mark, 2), 3},
		{"mount and filesystem marks", header + "fanotify mnt_id:1f mflags:0 mask:10000 ignored_mask:0\nfanotify sdev:27 mflags:0 mask:10000 ignored_mask:0\n", 2},
		{"the group's flags line is no mark", "fanotify flags:34 event-flags:8000\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countMarks([]byte(tt.fdinfo)); got != tt.want {
				t.Errorf("countMarks: got %d want %d", got, tt.want)
			}
		})
	}
}

func TestParseStatusInt(t *testing.T) {
	status := "Name:\tclamonacc-ddd\nVmRSS:\t   36864 kB\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t\t56\n"
	tests := []struct {
		name  string
		field string
		want  int64
	}{
		{"voluntary", "voluntary_ctxt_switches", 1234},
		{"nonvoluntary, two tabs", "nonvoluntary_ctxt_switches", 56},
		{"absent", "Threads", -1},
		{"not a count", "VmRSS", -1},
		{"prefix of a field is not the field", "voluntary", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseStatusInt([]byte(status), tt.field); got != tt.want {
				t.Errorf("parseStatusInt(%q): got %d want %d", tt.field, got, tt.want)
			}
		})
	}
}

func TestNearestWatch(t *testing.T) {
	p := &peer{watch: map[int]peerWatch{
		50000:  {dirs: 50001, elapsed: time.Second},
		100000: {dirs: 100001, elapsed: 2 * time.Second},
	}}
	tests := []struct {
		name string
		n    int
		want int
	}{
		{"same size", 100000, 100000},
		{"smaller tree", 2000, 50000},
		{"nearer the larger", 90000, 100000},
		{"tie goes to the smaller", 75000, 50000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, at, ok := p.nearestWatch(tt.n)
			if !ok || at != tt.want || w != p.watch[tt.want] {
				t.Errorf("nearestWatch(%d): got %d, %v, %v want %d", tt.n, at, w, ok, tt.want)
			}
		})
	}
	if _, _, ok := (&peer{}).nearestWatch(50000); ok {
		t.Errorf("nearestWatch with no figure: got ok want not ok")
	}
}

func TestPeerRefs(t *testing.T) {
	measured := &env{peer: &peer{
		watch: map[int]peerWatch{50000: {dirs: 50001, elapsed: 1250 * time.Millisecond}},
		race: map[string]map[string]raceResult{
			"mkdir -p": {"tmpfs": {misses: 180}, "ext4": {misses: 120}},
		},
		trials: 200,
		rss:    30 << 20, peak: 31 << 20, clamdRSS: 18 << 20,
	}}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"watch, no peer", (&env{}).watchPeerRef(50000), watchRef},
		{"watch, peer without figures", (&env{peer: &peer{}}).watchPeerRef(50000), watchRef},
		{"watch, measured", measured.watchPeerRef(2000), "measured here: 40,000/s at 50,000; design: " + watchRef},
		{"race, no peer", (&env{}).racePeerRef("mkdir -p"), raceRef["mkdir -p"]},
		{"race, scenario not measured", measured.racePeerRef("mv"), raceRef["mv"]},
		{"race, measured", measured.racePeerRef("mkdir -p"),
			"measured here: tmpfs 180 / 200 (90.0%), ext4 120 / 200 (60.0%); design: " + raceRef["mkdir -p"]},
		{"memory, no peer", (&env{}).memoryPeerRef(), memoryRef},
		{"memory, measured", measured.memoryPeerRef(), "measured here: 30.0 MiB at 50,000 (clamd 18.0 MiB more); design: " + memoryRef},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q want %q", tt.got, tt.want)
			}
		})
	}
}

func TestWatchRatios(t *testing.T) {
	e := &env{peer: &peer{watch: map[int]peerWatch{50000: {dirs: 50000, elapsed: time.Second}}}}
	tests := []struct {
		name  string
		rates map[int]float64
		want  []string // measured, a row each
		same  bool     // the rows compare the same tree
	}{
		{"same tree", map[int]float64{10000: 1e6, 50000: 500000}, []string{"10.00×"}, true},
		{"--quick: vigil's largest tree against clamonacc's", map[int]float64{2000: 100000, 5000: 250000}, []string{"5.00×"}, false},
		{"vigil measured nothing", map[int]float64{}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := e.watchRatios("watch.Place", tt.rates)
			if len(rows) != len(tt.want) {
				t.Fatalf("got %d rows want %d: %v", len(rows), len(tt.want), rows)
			}
			for i, r := range rows {
				if r.measured != tt.want[i] {
					t.Errorf("row %d: got %q want %q", i, r.measured, tt.want[i])
				}
				if got := !strings.Contains(r.figure, "not the same tree"); got != tt.same {
					t.Errorf("row %d %q: same tree %v want %v", i, r.figure, got, tt.same)
				}
			}
		})
	}
	if rows := (&env{}).watchRatios("watch.Place", map[int]float64{50000: 1}); rows != nil {
		t.Errorf("no peer: got %v want no rows", rows)
	}
}

func TestMissRatio(t *testing.T) {
	tests := []struct {
		name                                   string
		misses, trials, peerMisses, peerTrials int
		want                                   string
	}{
		{"none missed by vigil", 0, 10000, 176, 200, "0.00×"},
		{"rates, not counts", 5000, 10000, 100, 200, "1.00×"},
		{"clamonacc missed none", 3, 10000, 0, 200, "– (clamonacc missed none)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := missRatio(tt.misses, tt.trials, tt.peerMisses, tt.peerTrials); got != tt.want {
				t.Errorf("missRatio: got %q want %q", got, tt.want)
			}
		})
	}
}

func TestMemoryRatio(t *testing.T) {
	e := &env{peer: &peer{rss: 40 << 20, clamdRSS: 40 << 20}}
	tests := []struct {
		name  string
		sizes []int
		rss   []int64
		want  string
	}{
		{"measured at 50,000", []int{10000, 50000, 100000}, []int64{10 << 20, 20 << 20, 30 << 20}, "0.50× (0.25×)"},
		{"--quick", []int{2000, 5000}, []int64{10 << 20, 11 << 20}, "skipped: vigil not measured at 50,000 directories in --quick"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := make([]placement, len(tt.rss))
			for i, r := range tt.rss {
				ps[i].rss = r
			}
			rows := e.memoryRatio(tt.sizes, ps)
			if len(rows) != 1 || rows[0].measured != tt.want {
				t.Errorf("got %v want one row measuring %q", rows, tt.want)
			}
		})
	}
}
