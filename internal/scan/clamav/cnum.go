package clamav

import "math"

// libclamav reads the numbers of a database line with C's library: a field
// passes cli_isnumber (digits only, the empty string included) and then
// atoi into a 32-bit field, or goes to strtoul or sscanf("%u"). These
// follow glibc, so that a line loads, and means, what it does there.

// cIsNumber is libclamav's cli_isnumber: true for "" too.
func cIsNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func cSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// cSign skips what C's number functions skip before the digits: white
// space and a sign. i is where the digits may start.
func cSign(s string) (i int, neg bool) {
	for i < len(s) && cSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	return i, neg
}

// cStrtoul is strtoul(s, &end, 10) on a 64-bit system: leading white
// space, a sign, digits; past the range it saturates, and '-' negates
// modulo 2^64. rest is what follows the number, all of s (end == s) when
// there are no digits.
func cStrtoul(s string) (v uint64, rest string) {
	i, neg := cSign(s)
	start, over := i, false
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			over = true
		}
		v = v*10 + d
	}
	if i == start {
		return 0, s
	}
	if over {
		return math.MaxUint64, s[i:]
	}
	if neg {
		v = -v
	}
	return v, s[i:]
}

// cAtoi is atoi, (int)strtol(s, NULL, 10): what strtol saturates to
// (2^63-1 and -2^63) keeps its low 32 bits, as the cast does, so that
// 4294967296 is 0 and 4294967295 is -1. libclamav stores most results in
// uint32 fields: uint32(cAtoi(s)).
func cAtoi(s string) int32 {
	i, neg := cSign(s)
	var v uint64 // the magnitude, saturated at 2^63
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if v > (1<<63)/10 {
			v = 1 << 63
			continue
		}
		v = min(v*10+uint64(s[i]-'0'), 1<<63)
	}
	switch {
	case neg:
		return int32(uint32(-v)) // -2^63's low bits are 0
	case v > math.MaxInt64:
		return -1 // 2^63-1's low bits
	}
	return int32(uint32(v))
}

// cScanU is sscanf's %u: white space, then strtoul's number stored in an
// unsigned int. ok is false when there are no digits.
func cScanU(s string) (v uint32, rest string, ok bool) {
	n, rest := cStrtoul(s)
	if len(rest) == len(s) {
		return 0, s, false
	}
	return uint32(n), rest, true
}
