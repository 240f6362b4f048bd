package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// bucket is one cumulative bucket of a Prometheus histogram: count
// observations were at most le.
type bucket struct {
	le    float64 // +Inf for the last
	count float64
}

// parseHistogram reads the buckets of histogram name from Prometheus text
// exposition: the lines `name_bucket{...le="X"...} N`. It needs no more
// of the format than that; the +Inf bucket must be there.
func parseHistogram(text []byte, name string) ([]bucket, error) {
	var bs []bucket
	sc := bufio.NewScanner(bytes.NewReader(text))
	prefix := name + "_bucket{"
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			return nil, fmt.Errorf("histogram %s: no closing brace in %q", name, line)
		}
		le, ok := label(line[len(prefix):end], "le")
		if !ok {
			return nil, fmt.Errorf("histogram %s: no le label in %q", name, line)
		}
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return nil, fmt.Errorf("histogram %s: le %q: %w", name, le, err)
		}
		fields := strings.Fields(line[end+1:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("histogram %s: no value in %q", name, line)
		}
		n, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("histogram %s: value %q: %w", name, fields[0], err)
		}
		bs = append(bs, bucket{le: bound, count: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("histogram %s: %w", name, err)
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("histogram %s: no buckets", name)
	}
	slices.SortFunc(bs, func(a, b bucket) int { return compareFloat(a.le, b.le) })
	if !math.IsInf(bs[len(bs)-1].le, 1) {
		return nil, fmt.Errorf("histogram %s: no +Inf bucket", name)
	}
	return bs, nil
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// label returns the value of key in a label list such as
// `a="x",le="0.5"`. Values here hold no quotes or commas.
func label(labels, key string) (string, bool) {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == key {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// histogramDelta is after minus before, bucket by bucket: the
// observations made between two scrapes.
func histogramDelta(after, before []bucket) ([]bucket, error) {
	if len(after) != len(before) {
		return nil, fmt.Errorf("histograms of %d and %d buckets", len(after), len(before))
	}
	d := make([]bucket, len(after))
	for i := range after {
		if after[i].le != before[i].le {
			return nil, fmt.Errorf("bucket %d: le %v and %v", i, after[i].le, before[i].le)
		}
		if after[i].count < before[i].count {
			return nil, fmt.Errorf("bucket le=%v went down from %v to %v", after[i].le, before[i].count, after[i].count)
		}
		d[i] = bucket{le: after[i].le, count: after[i].count - before[i].count}
	}
	return d, nil
}

var errEmptyHistogram = errors.New("no observations")

// quantileBucket returns the bounds of the bucket that holds the q-th
// quantile (0 < q <= 1) by nearest rank: the value lies in (lower, upper].
// A histogram knows no more precisely than that.
func quantileBucket(bs []bucket, q float64) (lower, upper float64, err error) {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0, 0, errEmptyHistogram
	}
	rank := math.Max(1, math.Ceil(q*bs[len(bs)-1].count))
	for i, b := range bs {
		if b.count >= rank {
			if i > 0 {
				lower = bs[i-1].le
			}
			return lower, b.le, nil
		}
	}
	return 0, 0, errEmptyHistogram // not reached: the last bucket holds all
}
