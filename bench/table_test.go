package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	us := func(ns ...int) []time.Duration {
		ds := make([]time.Duration, len(ns))
		for i, n := range ns {
			ds[i] = time.Duration(n) * time.Microsecond
		}
		return ds
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", us(7), 99, 7 * time.Microsecond},
		{"median of odd count", us(1, 2, 3), 50, 2 * time.Microsecond},
		{"median of even count is the lower middle", us(1, 2, 3, 4), 50, 2 * time.Microsecond},
		{"p99 of 100 values", us(hundred...), 99, 99 * time.Microsecond},
		{"p100 is the maximum", us(hundred...), 100, 100 * time.Microsecond},
		{"p99 of 10 values is the maximum", us(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Microsecond},
		{"tiny p is the minimum", us(5, 6), 0.1, 5 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v): got %v want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestP50P99SortsACopy(t *testing.T) {
	ds := []time.Duration{300 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond}
	if got, want := p50p99(ds), "20.0 µs / 300 µs"; got != want {
		t.Errorf("p50p99: got %q want %q", got, want)
	}
	if ds[0] != 300*time.Microsecond {
		t.Errorf("p50p99 reordered its argument: %v", ds)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"group zero", group(0), "0"},
		{"group three digits", group(999), "999"},
		{"group thousands", group(350000), "350,000"},
		{"group millions", group(1234567), "1,234,567"},
		{"group negative", group(-1234), "-1,234"},
		{"micros below 100", micros(12345 * time.Nanosecond), "12.3 µs"},
		{"micros above 100", micros(1234567 * time.Nanosecond), "1235 µs"},
		{"ratio", ratio(1.024), "1.02×"},
		{"mib", mib(23 << 20), "23.0 MiB"},
		{"millis", millis(12340 * time.Microsecond), "12.3 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q want %q", tt.got, tt.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, []row{
		{figure: "latency p99", aim: "≤ 200 µs", measured: "50.0 µs", ref: "~1 ms", met: aimMet},
		{figure: "rate", aim: "≥ 350,000", measured: "1,000", met: aimMissed},
		{figure: "a | b", measured: "error: two\nlines"},
	})
	want := `| figure | aim | measured | clamonacc here |
|---|---|---|---|
| latency p99 | ≤ 200 µs | 50.0 µs ✓ | ~1 ms |
| rate | ≥ 350,000 | 1,000 ✗ | – |
| a \| b | – | error: two … | – |
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name string
		got  verdict
		want verdict
	}{
		{"at most, below", atMost(1, 2), aimMet},
		{"at most, equal", atMost(2, 2), aimMet},
		{"at most, above", atMost(3, 2), aimMissed},
		{"at least, above", atLeast(3, 2), aimMet},
		{"at least, below", atLeast(1, 2), aimMissed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParsePlaced(t *testing.T) {
	tests := []struct {
		name        string
		log         string
		wantDirs    int
		wantElapsed time.Duration
		wantErr     bool
	}{
		{
			name: "nanoseconds, as hclog writes a Duration",
			log: `{"@level":"info","@message":"databases loaded"}
{"@level":"info","@message":"watches placed","dirs":10001,"elapsed":28500000,"errors":0}
`,
			wantDirs: 10001, wantElapsed: 28500 * time.Microsecond,
		},
		{
			name:     "duration string",
			log:      `{"@message":"watches placed","dirs":3,"elapsed":"1.5ms"}`,
			wantDirs: 3, wantElapsed: 1500 * time.Microsecond,
		},
		{name: "no such line", log: "not json\n{\"@message\":\"vigil ready\"}\n", wantErr: true},
		{name: "elapsed not understood", log: `{"@message":"watches placed","dirs":3,"elapsed":true}`, wantErr: true},
		{
			name:    "another message is not it",
			log:     `{"@message":"cross-check sources placed","dirs":7,"elapsed":"2ms"}`,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs, el, err := parsePlaced([]byte(tt.log), "watches placed")
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if dirs != tt.wantDirs || el != tt.wantElapsed {
				t.Errorf("got %d dirs in %v want %d in %v", dirs, el, tt.wantDirs, tt.wantElapsed)
			}
		})
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := []byte("Name:\tvigil\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\n")
	tests := []struct {
		field string
		want  int64
	}{
		{"VmRSS", 20 << 20},
		{"VmHWM", 40 << 20},
		{"VmSwap", -1},
	}
	for _, tt := range tests {
		if got := parseStatusKiB(status, tt.field); got != tt.want {
			t.Errorf("%s: got %d want %d", tt.field, got, tt.want)
		}
	}
}

func TestChoose(t *testing.T) {
	names := func(ss []section) string {
		var n []string
		for _, s := range ss {
			n = append(n, s.name)
		}
		return strings.Join(n, ",")
	}
	tests := []struct {
		name    string
		only    string
		want    string
		wantErr bool
	}{
		{"all", "", "clamonacc,latency,watch,engine,memory,race,storm,engine-body,clamd,outside,mkdir,write", false},
		{"one", "engine", "engine", false},
		{"two in the order given", "memory, watch", "memory,watch", false},
		{"unknown", "nope", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := choose(sections, tt.only)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if names(got) != tt.want {
				t.Errorf("got %q want %q", names(got), tt.want)
			}
		})
	}
}
