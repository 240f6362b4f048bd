package clamav

import (
	"bytes"
	"regexp"
	"testing"
)

var fuzzNDBErr = regexp.MustCompile(`^fuzz\.ndb:[1-9][0-9]*: `)

func FuzzParseNDB(f *testing.F) {
	f.Add([]byte("Eicar.Body:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e44415244\n"))
	f.Add([]byte("# c\n\nA:1:EP+0,16:5589e5??(83|84)ec{4}c3*4142{-10}4344:51\r\n"))
	f.Add([]byte("B:0:EOF-100:41[1-3]4243(B)!(4445|4647)(L)(4?|5859(5a|5b))\n"))
	f.Add([]byte("C:6:S0+4:4142{2-}4344{130}4546{0-0}4748\nD:9:SE1,5:?14243\n"))
	f.Add([]byte("E:3:*:zz\nF:0:*:4142(43|\n"))
	f.Add([]byte("G::$1$:4142(43|)44\nH:1:VI:4142{}4344{-}4546\nI:0:4294967296,:41424344{ +2}4546{5-3}4748::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var sigs []*bodySig
		err := parseNDB("fuzz.ndb", bytes.NewReader(data), func(r ndbResult) {
			if r.sig == nil {
				return
			}
			s := r.sig
			if s.name == "" || len(s.pat.parts) == 0 || len(s.pat.gaps) != len(s.pat.parts)-1 {
				t.Fatalf("got malformed signature %+v", s)
			}
			for _, p := range s.pat.parts {
				if p.longestRun() < 2 || p.minLen > p.maxLen {
					t.Fatalf("got a part without an anchor or with bad lengths: %+v", p)
				}
			}
			sigs = append(sigs, s)
		})
		if err != nil {
			if !fuzzNDBErr.MatchString(err.Error()) {
				t.Fatalf("got error %q want it to start with fuzz.ndb:LINE: ", err)
			}
			return
		}
		if len(sigs) == 0 {
			return
		}
		// Whatever parses must compile and scan without panicking.
		m := compile(sigs)
		for _, in := range [][]byte{data, bytes.Repeat([]byte("AB"), 64)} {
			st := m.start(classOf(in), int64(len(in)), bytes.NewReader(in))
			if st != nil {
				st.scan(in, 0, 0, int64(len(in)))
				st.release()
			}
		}
	})
}
