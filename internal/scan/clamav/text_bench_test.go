package clamav

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkNormalise measures the text normalisation on text and on
// random data, which libclamav mostly takes for UTF-16 text.
func BenchmarkNormalise(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	words := strings.Fields("The quick brown fox jumps over a lazy dog function return var if else for while class import from <div> </div> http://example.com/ index.html 0x00 error warning")
	var text []byte
	for len(text) < 1<<20 {
		text = append(text, words[r.IntN(len(words))]...)
		text = append(text, " \n"[r.IntN(2)])
	}
	for _, in := range []struct {
		name string
		data []byte
	}{{"text", text}, {"random", random}} {
		b.Run(in.name, func(b *testing.B) {
			dst := make([]byte, 0, len(in.data))
			b.SetBytes(int64(len(in.data)))
			for b.Loop() {
				space := false
				dst = normalise(dst[:0], in.data, &space)
			}
		})
	}
}
