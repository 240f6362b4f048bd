package clamav

import (
	"math"
	"testing"
)

// The values glibc gives; atoi's are those of (int)strtol on x86-64.
func TestCNumbers(t *testing.T) {
	atoi := []struct {
		in   string
		want int32
	}{
		{"", 0}, {"x", 0}, {"42", 42}, {" \t42", 42}, {"+42", 42}, {"-1", -1}, {"5x", 5},
		{"2147483648", math.MinInt32}, {"4294967295", -1}, {"4294967296", 0}, {"4294967426", 130},
		{"99999999999999999999", -1}, {"-99999999999999999999", 0}, {"9223372036854775807", -1},
	}
	for _, tt := range atoi {
		if got := cAtoi(tt.in); got != tt.want {
			t.Errorf("cAtoi(%q) = %d want %d", tt.in, got, tt.want)
		}
	}
	strtoul := []struct {
		in, rest string
		want     uint64
	}{
		{"", "", 0}, {"x", "x", 0}, {"+", "+", 0}, {"130", "", 130}, {" +130", "", 130}, {"130 ", " ", 130},
		{"-1", "", math.MaxUint64}, {"99999999999999999999", "", math.MaxUint64}, {"18446744073709551615", "", math.MaxUint64},
	}
	for _, tt := range strtoul {
		if got, rest := cStrtoul(tt.in); got != tt.want || rest != tt.rest {
			t.Errorf("cStrtoul(%q) = %d, %q want %d, %q", tt.in, got, rest, tt.want, tt.rest)
		}
	}
	if v, rest, ok := cScanU(" 31$"); v != 31 || rest != "$" || !ok {
		t.Errorf("cScanU(\" 31$\") = %d, %q, %v", v, rest, ok)
	}
	if v, _, ok := cScanU("4294967297"); v != 1 || !ok {
		t.Errorf("cScanU(\"4294967297\") = %d, %v want 1", v, ok)
	}
	if _, _, ok := cScanU("$"); ok {
		t.Error("cScanU(\"$\") found a number")
	}
}
