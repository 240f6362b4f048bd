package main

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readNewc parses a newc archive the way the kernel's initramfs unpacker
// does, checking magic and alignment.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at %d: not 4-byte aligned", off)
		}
		if len(b) < off+110 {
			t.Fatalf("archive ends at %d without a trailer", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("header at %d: magic %q", off, h[:6])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header at %d field %d: %v", off, i, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		if b[off+110+namesize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off = align4(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{name: name, mode: uint32(mode), data: string(b[off : off+size])})
		off = align4(off + size)
	}
}

func TestCPIO(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *cpioWriter)
		want  []cpioEntry
	}{
		{name: "empty", write: func(*cpioWriter) {}},
		{
			name: "dirs and files of every padding",
			write: func(c *cpioWriter) {
				c.Dir("dev", 0o755)
				c.File("/init", 0o755, []byte("x"))
				c.File("a/bb", 0o644, []byte("12"))
				c.File("ccc", 0o600, []byte("123"))
				c.File("dddd", 0o644, []byte("1234"))
				c.File("e", 0o644, nil)
			},
			want: []cpioEntry{
				{"dev", cpioDir | 0o755, ""},
				{"init", cpioReg | 0o755, "x"},
				{"a/bb", cpioReg | 0o644, "12"},
				{"ccc", cpioReg | 0o600, "123"},
				{"dddd", cpioReg | 0o644, "1234"},
				{"e", cpioReg | 0o644, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := newCPIO(&buf)
			tt.write(c)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			got := readNewc(t, buf.Bytes())
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v want %v", got, tt.want)
			}
		})
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, fmt.Errorf("disk full")
	}
	return len(p), nil
}

func TestCPIOWriteError(t *testing.T) {
	c := newCPIO(&failWriter{n: 200})
	c.File("init", 0o755, make([]byte, 1000))
	if err := c.Close(); err == nil {
		t.Fatal("got no error from a failing writer, want one")
	}
}
